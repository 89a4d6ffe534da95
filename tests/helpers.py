"""Helpers shared by the test modules."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psutil

from bench.peers.proxy import RoundTripProxy

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "",
) -> T:
    """Poll `predicate` until it returns a truthy value and return it; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(message or f"condition not met within {timeout:g}s: {predicate!r}")
        time.sleep(interval)


def in_forked_child(check: Callable[[], bool]) -> int:
    """Run ``check`` in a forked child of this test process; its exit code: 0 when it returned
    True, 1 when False, 2 when it raised."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if check() else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)



class ReplyCuttingProxy(RoundTripProxy):
    """The benchmark's loopback proxy in front of Redis, able to lose a reply: after
    ``cut_next_reply()``, the next bytes Redis sends on any connection are dropped and that
    connection is cut, so the command ran on Redis but its caller never hears back (a network
    fault, not a mock)."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.cuts = 0
        self._cut = threading.Event()
        super().__init__(target_port, host)

    def cut_next_reply(self) -> None:
        self._cut.set()

    def relay(self, data: bytes, from_client: bool, state: dict) -> bool:
        if not from_client and self._cut.is_set():
            self._cut.clear()
            self.cuts += 1
            return False
        return super().relay(data, from_client, state)


def supervised_workers(master_pid: int) -> list[psutil.Process]:
    """The workers under a master: children of its supervisors (its own children); [] once it is gone."""
    try:
        return [w for sup in psutil.Process(master_pid).children() for w in sup.children()]
    except psutil.NoSuchProcess:
        return []


def ignores_signal(pid: int, signum: int) -> bool:
    """Whether process ``pid`` ignores ``signum`` by now (Linux: the SigIgn mask of /proc/<pid>/status).
    A test that signals a freshly forked child waits for this: one signalled sooner still dies."""
    try:
        with open(f"/proc/{pid}/status") as status:
            mask = next(line for line in status if line.startswith("SigIgn:")).split()[1]
    except (OSError, StopIteration):
        return False
    return bool(int(mask, 16) >> (signum - 1) & 1)
