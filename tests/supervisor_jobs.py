"""Jobs used by the supervisor tests (a memory leak); each records its pid in Redis."""

from __future__ import annotations

import os
import time

from horizon import job
from tests.sample_jobs import _r

_leak: list[bytearray] = []


@job(name="tests.leak")
def leak(key: str, mb: int) -> None:
    """Keep ``mb`` MB of touched memory for the rest of the worker's life (0.4 s per job)."""
    time.sleep(0.4)  # the worker measures itself at most once a second
    _leak.append(bytearray(os.urandom(1024)) * (mb * 1024))
    _r().rpush(key, os.getpid())


def _import_gate() -> None:
    """With HORIZON_TEST_IMPORT_GATE=<path>: note each import in <path>.entered, then wait (30 s at
    most) for <path>.open to exist. A test holds a starting master inside its imports this way."""
    gate = os.environ.get("HORIZON_TEST_IMPORT_GATE")
    if not gate:
        return
    with open(gate + ".entered", "a") as marks:
        marks.write(f"{os.getpid()}\n")
    deadline = time.monotonic() + 30
    while not os.path.exists(gate + ".open") and time.monotonic() < deadline:
        time.sleep(0.01)  # polls the test's go-ahead


_import_gate()


@job(name="tests.gate")
def gate(path: str) -> None:
    """Create <path>.started, then wait (30 s at most) for <path>.go; touches no Redis."""
    with open(path + ".started", "w"):
        pass
    deadline = time.monotonic() + 30
    while not os.path.exists(path + ".go") and time.monotonic() < deadline:
        time.sleep(0.01)  # polls the test's go-ahead


@job(name="tests.ignores_alarm")
def ignores_alarm(key: str, seconds: float) -> None:
    """Takes over SIGALRM (as some timeout libraries do) and runs on past its timeout: only the
    supervisor's kill can stop it. Records each start and end with its pid."""
    import signal

    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    _r().rpush(key, f"start:{os.getpid()}")
    time.sleep(seconds)
    _r().rpush(key, f"end:{os.getpid()}")
