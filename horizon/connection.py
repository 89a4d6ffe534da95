"""Redis connections: the client for the configured URL, or for the embedded server's URL file.

With no ``redis.url`` the embedded redis-server (started by ``horizon up``) writes its URL to
``<redis.embedded.dir>/redis.url``; other processes on the host read it from there.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
import redis.connection

if TYPE_CHECKING:
    from horizon.config import Settings

URL_FILE = "redis.url"


class NoRedisError(RuntimeError):
    """No Redis URL is configured and no embedded server is running."""


class WritesRefused(redis.ConnectionError):
    """Redis answers but refuses writes for now, and wrote nothing of the refused call: it is out of
    memory (``maxmemory`` reached with ``noeviction``), cannot persist (``MISCONF``), is a read-only
    replica (``READONLY``, during a failover), lacks the replicas ``min-replicas-to-write`` asks
    for, or is busy running a script past its time limit. A ConnectionError, like redis-py's
    BusyLoadingError: callers that wait out a Redis restart wait this out too (a worker keeps the
    jobs it ran and acknowledges them later, the API answers 503, the supervision loops log it once)."""

    def __init__(self, reason: str, reply: str) -> None:
        super().__init__(f"redis refuses writes: {reason}: {reply}")
        self.reason, self.reply = reason, reply  # e.g. "out of memory (maxmemory reached)", Redis's text


# Redis's error codes for the refusals above, as a command's reply starts with them or as a script
# error quotes them (Redis 6.2: "Error running script ...: @user_script: 50: -OOM command not allowed ...").
_REFUSAL = re.compile(r"(?:^|: -)(OOM|MISCONF|READONLY|NOREPLICAS|BUSY|MASTERDOWN) ")
_REFUSAL_CLASSES = {
    redis.exceptions.OutOfMemoryError: "OOM",
    redis.exceptions.ReadOnlyError: "READONLY",
    redis.exceptions.MasterDownError: "MASTERDOWN",
}
# What a caller answers "retry shortly" to, by class: Redis away or hanging, or refusing writes
# (script calls raise WritesRefused; direct commands redis-py's own classes; as_refusal sees the rest).
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, *_REFUSAL_CLASSES)
_REFUSAL_REASONS = {
    "OOM": "out of memory (maxmemory reached)",
    "MISCONF": "cannot persist to disk",
    "READONLY": "a read-only replica",
    "NOREPLICAS": "not enough replicas",
    "BUSY": "busy running a script",
    "MASTERDOWN": "its master is down",
}


def as_refusal(exc: BaseException) -> WritesRefused | None:
    """``exc`` as a :class:`WritesRefused` when it is one of Redis's temporary refusals, else None."""
    if isinstance(exc, WritesRefused):
        return exc
    if not isinstance(exc, redis.ResponseError):
        return None
    text = str(exc)
    code = next((c for cls, c in _REFUSAL_CLASSES.items() if isinstance(exc, cls)), None)
    if code is None:
        match = _REFUSAL.search(text)
        if match is None:
            return None
        code = match.group(1)
        text = text[match.start(1):]
    return WritesRefused(_REFUSAL_REASONS[code], text)


def embedded_url_file(settings: Settings) -> Path:
    return Path(settings.redis.embedded.dir) / URL_FILE


def write_embedded_url(settings: Settings, url: str) -> None:
    path = embedded_url_file(settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(url + "\n")
    os.replace(tmp, path)


def remove_embedded_url(settings: Settings) -> None:
    embedded_url_file(settings).unlink(missing_ok=True)


def redis_url(settings: Settings) -> str:
    """The URL to connect to: ``redis.url``, else the running embedded server's."""
    if settings.redis.url:
        return settings.redis.url
    path = embedded_url_file(settings)
    try:
        return path.read_text().strip()
    except OSError:
        raise NoRedisError(
            f"no redis.url is configured and no embedded redis is running ({path} is missing); "
            "start `horizon up` or set HORIZON_REDIS_URL"
        ) from None


@cache
def _client_identity() -> dict[str, object]:
    """How connections name themselves in CLIENT LIST (``redis-py(horizon_v<version>)``), worked
    out once per process: redis-py otherwise reads its package metadata for every new connection."""
    try:
        from importlib.metadata import version

        ours = version("horizon-redis-queue")
    except Exception:
        ours = "0"
    try:
        from redis.driver_info import DriverInfo
    except ImportError:  # redis-py before DriverInfo
        return {"lib_version": redis.__version__}
    return {"driver_info": DriverInfo(lib_version=redis.__version__).add_upstream_driver("horizon", ours)}


def connect(settings: Settings, *, url: str | None = None, **options: object) -> redis.Redis:
    """A new client (decoded responses, hiredis parser when installed). Its connections, and the
    scripts' own connections made from its pool's options, open on the node that serves the
    prefix's slot when ``redis.url`` names a Redis Cluster node (:mod:`horizon.cluster`); the
    embedded server is never one."""
    for key, value in _client_identity().items():
        options.setdefault(key, value)
    options.setdefault("decode_responses", True)
    options.setdefault("health_check_interval", 30)
    # longer than any blocking wait (worker.IDLE_WAIT), short enough to notice a dead server
    options.setdefault("socket_timeout", 30)
    if url is None and settings.redis.url:
        url = settings.redis.url
    if url is not None:
        from horizon.cluster import connection_options  # imports this module

        for key, value in connection_options(url, settings.prefix).items():
            options.setdefault(key, value)
    else:  # the embedded server: its port may change each time `horizon up` starts it
        options.setdefault("connection_class", EmbeddedConnection)
        options.setdefault("url_file", str(embedded_url_file(settings)))
    return redis.Redis.from_url(url or redis_url(settings), **options)


class EmbeddedConnection(redis.connection.Connection):
    """A connection to the embedded redis-server, which listens on a new port each time `horizon up`
    starts it (``port: 0``): each socket it opens goes where the URL file says then, so an
    application, a web server or a worker started on its own follows a restarted server without
    being restarted (its next call, or redis-py's retry of it, reconnects there)."""

    def __init__(self, *args: Any, url_file: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url_file = url_file

    def _connect(self) -> Any:
        try:
            address = redis.connection.parse_url(Path(self.url_file).read_text().strip())
        except (OSError, ValueError):  # not running now: try the last address (refused: retried)
            address = {}
        self.host, self.port = address.get("host", self.host), int(address.get("port", self.port))
        return super()._connect()


CONTROL_TIMEOUT = 2.0  # seconds: the supervision loops' Redis calls are short, and a pass must stay short


def connect_control(settings: Settings) -> redis.Redis:
    """A client for the supervision loops: connect and read time out after CONTROL_TIMEOUT, with no
    retries (the loop runs again within a second; see ``context.control``) but the one every
    horizon client makes of a command a cluster node answered MOVED (``cluster.moved_retry``). A
    connection Redis closed when it restarted is replaced by the pool before it is used."""
    from horizon.cluster import moved_retry

    return connect(settings, socket_timeout=CONTROL_TIMEOUT, socket_connect_timeout=CONTROL_TIMEOUT,
                   retry=moved_retry())
