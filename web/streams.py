"""Slots for long-lived connections: each event stream (SSE) and JSON-RPC websocket holds a server
thread for as long as it lasts (gunicorn ``gthread``: ``THREADS`` per worker process).

Without a bound, a dozen dashboard tabs took every thread of a process, and API requests that
process had accepted waited behind the streams for minutes (a stream lasts up to its lifetime,
300 s). So a process admits at most ``HORIZON_MAX_STREAMS`` of them (default ``MAX_STREAMS``,
leaving ``RESERVED_THREADS`` free for requests): one more event stream is answered 503 with
``Retry-After`` (the dashboard polls meanwhile and tries again), one more websocket is closed with
1013 "try again later".
"""

from __future__ import annotations

import threading

from flask import current_app

THREADS = 16  # per gunicorn worker process (web/server.py)
RESERVED_THREADS = 4  # kept free of long-lived connections, for API requests
MAX_STREAMS = THREADS - RESERVED_THREADS
RETRY_AFTER = 5  # seconds a refused stream is told to wait


class StreamSlots:
    """A counter of the long-lived connections a process serves, bounded by the app's limit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.used = 0

    def acquire(self, limit: int) -> bool:
        with self._lock:
            if self.used >= limit:
                return False
            self.used += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.used = max(self.used - 1, 0)


def slots() -> StreamSlots:
    return current_app.extensions["horizon_streams"]


def limit() -> int:
    return int(current_app.config["HORIZON_MAX_STREAMS"])
