"""Process entry points behind ``horizon start`` and ``horizon up`` (embedded Redis + master + web + demo)."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import random
import signal
import subprocess
import sys

from horizon.config import Settings
from horizon.context import Horizon
from supervisor.master import MasterSupervisor

log = logging.getLogger(__name__)

DEMO_INTERVAL = float(os.environ.get("HORIZON_DEMO_INTERVAL", "2"))
WEB_STOP_TIMEOUT = 10.0


def warn_about_redis(hz: Horizon) -> None:
    """Warn when an external Redis would evict keys or keeps no data on disk."""
    try:
        policy = hz.redis.config_get("maxmemory-policy").get("maxmemory-policy", "")
        aof = hz.redis.config_get("appendonly").get("appendonly", "")
        save = hz.redis.config_get("save").get("save", "")
    except Exception:  # CONFIG may be disabled on managed services
        return
    if policy and policy != "noeviction":
        log.warning("redis maxmemory-policy is %s: jobs may be evicted; use noeviction", policy)
    if aof != "yes" and not save:
        log.warning("redis has neither AOF nor RDB snapshots: jobs are lost on a restart")


def start_master(hz: Horizon, *, demo: bool = False, reexec: bool = False) -> int:
    """Run the master in this process until it is terminated; its exit code (reexec: HUP execs again)."""
    warn_about_redis(hz)
    master = MasterSupervisor(hz, reexec=reexec)
    if demo:
        master.maintenance.add("demo", DEMO_INTERVAL, dispatch_demo_jobs, locked=False)
    return master.run()


def dispatch_demo_jobs() -> None:
    """Dispatch a few jobs from ``demo_jobs`` so the dashboard shows life."""
    demo = importlib.import_module("demo_jobs")
    demo.dispatch_some(random.randint(1, 4))


def web_available() -> bool:
    try:
        return importlib.util.find_spec("web.app") is not None
    except ImportError:
        return False


def start_web(settings: Settings) -> subprocess.Popen | None:
    """``horizon web`` as a subprocess (same config and environment), or None when not available."""
    if not web_available():
        log.warning("the web package has no app yet; running without the dashboard")
        return None
    argv = [sys.executable, "-m", "horizon.cli", "web", "--env", settings.environment]
    if settings.path:
        argv += ["--config", settings.path]
    return subprocess.Popen(argv, process_group=0)  # out of the terminal's group: we stop it ourselves


def stop_web(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(WEB_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
