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
import threading
import time

from horizon.config import Settings
from horizon.context import Horizon
from horizon.embedded import EmbeddedRedis, EmbeddedRedisError
from supervisor import tuning
from supervisor.master import MasterSupervisor

log = logging.getLogger(__name__)

DEMO_INTERVAL = float(os.environ.get("HORIZON_DEMO_INTERVAL", "2"))
WEB_STOP_TIMEOUT = 10.0
WEB_WATCH_INTERVAL = 1.0


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


def start_master(hz: Horizon, *, demo: bool = False, reexec: bool = False, web: WebServer | None = None) -> int:
    """Run the master in this process until it is terminated; its exit code (reexec: HUP execs again).
    ``web``: a web server the master's maintenance starts again when it dies."""
    warn_about_redis(hz)
    master = MasterSupervisor(hz, reexec=reexec)
    if demo:
        master.maintenance.add("demo", DEMO_INTERVAL, dispatch_demo_jobs, locked=False)
    if web is not None:
        master.maintenance.add("web", WEB_WATCH_INTERVAL, web.watch, locked=False)
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


class WebServer:
    """``horizon web`` as a child of ``horizon up``, started again when it dies (after
    tuning.restart_cooldown, as the master's supervisors and the pools' workers)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.cooldown = 0.0
        self.restart_at: float | None = None
        self.stopped = False
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            self.proc, self.started_at = start_web(self.settings), time.monotonic()

    def watch(self) -> None:
        """Called every second by the master's maintenance: restart a web server that exited."""
        with self._lock:
            if self.stopped or self.proc is None or self.proc.poll() is None:
                return
            now = time.monotonic()
            if self.restart_at is None:
                self.cooldown = tuning.restart_cooldown(self.cooldown, now - self.started_at)
                self.restart_at = now + self.cooldown
                log.warning(
                    "web server (pid %s) exited with %s; starting it again in %.0fs",
                    self.proc.pid,
                    self.proc.returncode,
                    self.cooldown,
                )
            if now >= self.restart_at:
                self.restart_at = None
                self.proc, self.started_at = start_web(self.settings), now

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            stop_web(self.proc)


class RedisKeeper:
    """``horizon up``'s embedded Redis, started again when it dies (killed, crashed, OOM-killed):
    on the same port and data directory, so the URL file stays right and its AOF brings the data
    back, while the master, supervisors and workers wait for it as for any Redis restart. A thread
    of its own watches it: the server is tied to the thread that starts it (it gets SIGTERM when
    that thread ends), and this one lasts as long as ``horizon up``."""

    WATCH_INTERVAL = 1.0

    def __init__(self, server: EmbeddedRedis) -> None:
        self.server = server
        self.cooldown = 0.0
        self.started_at = time.monotonic()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="redis-keeper", daemon=True)

    def start(self) -> RedisKeeper:
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stopped.wait(self.WATCH_INTERVAL):
            process = self.server.process
            if process is None or process.poll() is None:
                continue
            now = time.monotonic()
            self.cooldown = tuning.restart_cooldown(self.cooldown, now - self.started_at)
            log.warning("embedded redis (pid %s) exited with %s; starting it again on port %s in %.0fs",
                        process.pid, process.returncode, self.server.port, self.cooldown)
            if self._stopped.wait(self.cooldown):
                return
            replacement = EmbeddedRedis(str(self.server.dir), self.server.port)
            try:
                replacement.start()
            except EmbeddedRedisError as exc:
                log.error("embedded redis could not start again (%s); trying again", exc)
                continue
            self.server, self.started_at = replacement, time.monotonic()
            log.warning("embedded redis running again (pid %s)", replacement.pid)

    def stop(self) -> None:
        """Stop watching, then stop the server (whichever runs now)."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(15)
        self.server.stop()


def stop_web(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(WEB_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
