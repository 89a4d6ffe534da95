"""What the processes horizon starts do when their parent dies, and which command a job runs.

Kernel settings (Linux ``prctl`` through ctypes; elsewhere they report False and change nothing):
a child's parent-death signal (:func:`death_signal_hook` for ``subprocess.Popen``), a process's
kernel name, and the "child subreaper" attribute a supervisor takes so that what its dead workers
leave running is re-parented to it rather than to init (``supervisor.leftovers``).

A job that runs a command in a process group of its own (the ``cli`` job type) names that group
with :func:`running_group` while it runs: a supervised worker passes it on to its supervisor
(``supervisor.process.SharedState``), which stops the group itself when the worker dies outright
(SIGKILL, the OOM killer) and so cannot. Only the innermost group is passed on (one per job; jobs
run one at a time in a worker's main thread).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
from collections.abc import Callable, Iterator

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36

_groups: list[int] = []  # the process groups jobs run commands in now, innermost last
_report: Callable[[int], None] | None = None


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library (loaded once: a process forked later inherits it, so a child never runs the
    ``ldconfig`` that find_library may start); None where it cannot be loaded."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def prctl(option: int, value: int | bytes) -> bool:
    """``prctl(option, value, 0, 0, 0)`` on this process; whether it succeeded (False off Linux)."""
    libc = _libc()
    try:
        return libc is not None and libc.prctl(option, value, 0, 0, 0) == 0
    except AttributeError:  # no prctl in this C library
        return False


def set_child_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux 3.4+): a descendant whose
    parent dies is re-parented to it, not to init, and it must reap them. Not inherited by fork."""
    return prctl(PR_SET_CHILD_SUBREAPER, 1)


def death_signal_hook(signum: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` asking the kernel to send the child ``signum``
    when its parent dies (Linux; None elsewhere). The kernel sends it when the *thread* that forked
    the child ends: start the child from a thread that outlives it (as a job waiting for its
    command does). A parent that died before the setting took effect makes the child exit 1."""
    libc = _libc()  # loaded here, in the parent: the child only calls it
    if not sys.platform.startswith("linux") or libc is None or not hasattr(libc, "prctl"):
        return None
    call = libc.prctl
    parent = os.getpid()

    def hook() -> None:
        call(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return hook


def report_groups(callback: Callable[[int], None] | None) -> None:
    """Call ``callback(pgid)`` each time the process group a job runs a command in changes (0:
    none). A supervised worker sets this once, before it runs any job."""
    global _report
    _report = callback
    _publish()


@contextlib.contextmanager
def running_group(pgid: int) -> Iterator[None]:
    """While the block runs, child ``pgid`` of this process (leading its process group) runs a
    job's command. Leave the block only once the child is reaped and its group stopped: the
    supervisor of a worker that dies meanwhile stops that group (SIGTERM, then SIGKILL)."""
    _groups.append(pgid)
    _publish()
    try:
        yield
    finally:
        _groups.remove(pgid)  # a pid names one live child at a time
        _publish()


def _publish() -> None:
    if _report is not None:
        _report(_groups[-1] if _groups else 0)
