"""Signal handlers that only enqueue: the loop drains the queue (gunicorn's arbiter, STYLE.md)."""

from __future__ import annotations

import collections
import os
import select
import signal
from types import FrameType

NAMES = {
    signal.SIGTERM: "terminate",
    signal.SIGINT: "terminate",
    signal.SIGUSR2: "pause",
    signal.SIGCONT: "continue",
    signal.SIGHUP: "restart",
    signal.SIGUSR1: "restart",
    signal.SIGCHLD: "child",
}


class SignalQueue:
    """Records signals as verbs; ``wait(timeout)`` sleeps until one arrives (self-pipe wake-up)."""

    def __init__(self, signals: dict[signal.Signals, str] | None = None) -> None:
        self.names = dict(NAMES if signals is None else signals)
        self.pending: collections.deque[str] = collections.deque()
        self.reader, self.writer = os.pipe()
        os.set_blocking(self.reader, False)
        os.set_blocking(self.writer, False)

    def install(self) -> None:
        for signum in self.names:
            signal.signal(signum, self._handle)
        signal.set_wakeup_fd(self.writer, warn_on_full_buffer=False)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append(self.names[signal.Signals(signum)])

    def wait(self, timeout: float) -> None:
        """Block until a signal arrives or ``timeout`` seconds pass."""
        if self.pending:
            return
        try:
            ready, _, _ = select.select([self.reader], [], [], max(timeout, 0))
        except InterruptedError:
            return
        if ready:
            try:
                while os.read(self.reader, 4096):
                    pass
            except BlockingIOError:
                pass

    def drain(self) -> list[str]:
        verbs = []
        while self.pending:
            verbs.append(self.pending.popleft())
        return verbs

    def close(self) -> None:
        """Forget the handlers and the pipe (a forked child calls this first)."""
        signal.set_wakeup_fd(-1)
        for signum in self.names:
            signal.signal(signum, signal.SIG_DFL)
        for fd in (self.reader, self.writer):
            try:
                os.close(fd)
            except OSError:
                pass
