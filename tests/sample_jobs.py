"""Jobs used by the tests; each records what it did in Redis so tests can observe it."""

from __future__ import annotations

import os
import sys
import time

import redis

from horizon import job, progress

_clients: dict[str, redis.Redis] = {}


def _r() -> redis.Redis:
    url = os.environ["HORIZON_TEST_REDIS"]
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url, decode_responses=True)
    return _clients[url]


@job(name="tests.add")
def add(key: str, a: int, b: int) -> int:
    _r().rpush(key, a + b)
    return a + b


@job(name="tests.record", tags=lambda key, value=None: [f"key:{key}"])
def record(key: str, value: object = None) -> None:
    """Append this run's value and pid to a list (each execution leaves one entry)."""
    _r().rpush(key, f"{value}:{os.getpid()}")


@job(name="tests.fail")
def fail(key: str) -> None:
    _r().rpush(key, time.time())
    raise ValueError("boom: " + key)


@job(name="tests.sleep")
def sleep(key: str, seconds: float) -> None:
    _r().rpush(key, f"start:{os.getpid()}")
    time.sleep(seconds)
    _r().rpush(key, "end")


@job(name="tests.stamp")
def stamp(key: str, seconds: float = 0.0) -> None:
    """Record when this run started (unix time), then take ``seconds``."""
    _r().rpush(key, time.time())
    time.sleep(seconds)


@job(name="tests.depth")
def depth(key: str, value: object) -> None:
    """Record how deeply ``value`` nests lists (counted without recursion)."""
    n = 0
    while isinstance(value, list) and value:
        value, n = value[0], n + 1
    _r().rpush(key, n)


@job(name="tests.progress")
def report_progress(key: str) -> None:
    progress(0.5)
    _r().rpush(key, "half")


@job(name="tests.crash")
def crash(key: str) -> None:
    _r().rpush(key, os.getpid())
    os._exit(9)


@job(name="tests.exit")
def exit_(code: int) -> None:
    """Ends the way a script does: sys.exit(code) raises SystemExit."""
    sys.exit(code)


@job(name="tests.interrupt")
def interrupt() -> None:
    raise KeyboardInterrupt()


@job(name="tests.quit")
def quit_(key: str) -> None:
    """Ends its worker process with status 0, mid-job (os._exit skips every handler)."""
    _r().rpush(key, os.getpid())
    os._exit(0)


class Unprintable(Exception):
    """An exception whose str() and repr() raise (a job's objects may do anything)."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class _NoRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@job(name="tests.unprintable")
def unprintable() -> None:
    raise Unprintable()


@job(name="tests.huge_error")
def huge_error(size: int) -> None:
    raise ValueError("x" * size)


@job(name="tests.odd_result")
def odd_result(kind: str) -> object:
    """Returns what JSON cannot hold whole: an object whose repr() raises, or a long string."""
    return _NoRepr() if kind == "no-repr" else "y" * 100_000


@job(name="tests.noop")
def noop() -> None:
    return None


@job(name="tests.stubborn")
def stubborn(key: str, seconds: float) -> None:
    """Swallows its timeout and keeps running: the worker's hard timeout must stop it."""
    _r().rpush(key, "start")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except Exception:
            pass


@job(name="tests.take_signals")
def take_signals(how: str) -> None:
    """Takes over the worker's signals and returns: its own SIGALRM and SIGTERM handlers, or SIGALRM
    blocked (what some libraries do), left so for whatever runs next in this process."""
    import signal

    if how == "handlers":
        signal.signal(signal.SIGALRM, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: None)
    else:
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])


@job(name="tests.progress_value")
def progress_value(value: str) -> None:
    """Reports float(value) as progress (e.g. "nan")."""
    progress(float(value))


@job(name="tests.progress_many")
def progress_many(n: int) -> None:
    """Reports progress n times in a tight loop, ending at 1.0."""
    for i in range(1, n + 1):
        progress(i / n)
