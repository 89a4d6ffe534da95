"""The configured horizon of this process: settings, Redis client, scripts and job queue.

Application code calls ``horizon.configure(...)`` or lets the first dispatch find its settings
from ``HORIZON_CONFIG`` / ``./config.yaml`` / ``HORIZON_REDIS_URL``. Forked children call
:func:`reset` and get a fresh connection (never the parent's socket).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis

from horizon.config import Settings, load_config, settings_from_dict
from horizon.connection import connect, connect_control
from horizon.keys import Keys
from horizon.queue import JobQueue
from horizon.scripts import Scripts


class Horizon:
    """Settings plus the Redis client, keys, scripts and job queue built from them."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.given_client = client  # kept across forks (current()): the caller chose this Redis
        self.redis = client if client is not None else connect(settings)
        self.keys = Keys(settings.prefix)
        self.scripts = Scripts(self.redis, settings)
        self.queue = JobQueue(self)

    def close(self) -> None:
        self.scripts.close()
        self.redis.close()


_lock = threading.Lock()
_current: Horizon | None = None
_pid: int | None = None


def _new_lock_in_child() -> None:
    """A child forked while another thread held ``_lock`` would wait on it forever (that thread is
    not in the child): the child starts with a fresh one."""
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def configure(
    source: str | os.PathLike[str] | Mapping[str, Any] | Settings | None = None,
    *,
    env: str | None = None,
    client: redis.Redis | None = None,
) -> Horizon:
    """Configure this process from a config path, a settings mapping, Settings, or the defaults."""
    global _current, _pid
    if isinstance(source, Settings):
        settings = source
    elif isinstance(source, Mapping):
        settings = settings_from_dict(source, env=env or "production", environ=os.environ)
    else:
        settings = load_config(Path(source) if source is not None else None, env=env)
    built = Horizon(settings, client)  # outside the lock: the first build compiles the scripts
    with _lock:
        _current, _pid = built, os.getpid()
    return built


def current() -> Horizon:
    """The configured horizon; configured from the environment on first use and after a fork."""
    if _current is None or _pid != os.getpid():
        if _current is not None:
            return configure(_current.settings, client=_current.given_client)
        return configure()
    return _current


def after_fork(settings: Settings) -> Horizon:
    """In a forked child: keep the parent's horizon when it was configured with ``settings``.

    Its client's connection pool and the script connections notice the new pid and open fresh
    connections (never the parent's sockets); the objects themselves stay shared copy-on-write
    with the parent, which keeps each worker's own memory (USS) small. Otherwise configure anew.
    """
    global _pid
    with _lock:
        if _current is not None and _current.settings is settings:
            _pid = os.getpid()
            return _current
    reset()
    return configure(settings)


def reset() -> None:
    """Forget the configured connection (a forked child calls this, then ``configure``)."""
    global _current, _pid, _control
    _current, _pid, _control = None, None, None


_control: Horizon | None = None


def control(settings: Settings) -> Horizon:
    """The horizon the supervision loops use (master, supervisors): the same settings and Redis,
    through a client that gives up within ``CONTROL_TIMEOUT`` seconds (see ``connect_control``). A loop
    pass must stay short while Redis hangs or is unreachable, so that dead workers are still
    replaced and the systemd watchdog still pinged; the next pass tries again. Kept across forks
    like :func:`after_fork` (each process opens its own connections)."""
    global _control
    with _lock:
        if _control is None or _control.settings is not settings:
            _control = Horizon(settings, client=connect_control(settings))
        return _control
