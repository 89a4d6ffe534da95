"""Forking children that start clean: default signals, reseeded random, death signal from the parent."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import random
import signal
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
EXIT_FAILED = 1
_libc = None


def set_parent_death_signal(signum: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``signum`` to this process when its parent dies (Linux)."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return _libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def fork(run: Callable[[], int], *, before: Callable[[], None] | None = None) -> int:
    """Fork; the child calls ``before`` (undo the parent's set-up) then ``run`` and exits with its code."""
    parent = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    # the objects made so far move to the permanent generation: no collection in the child (or in
    # us) writes to them, so their pages stay shared copy-on-write (lower USS in every process)
    gc.freeze()
    pid = os.fork()
    if pid:
        return pid
    code = EXIT_FAILED
    try:
        if before is not None:
            before()
        set_parent_death_signal(signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(EXIT_FAILED)
        random.seed()
        code = run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_FAILED
    except BaseException:
        log.exception("child process failed")
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    return 0  # not reached


def reap(pid: int) -> int | None:
    """Exit code of child ``pid`` (-signal when killed) if it has exited, else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return 1  # already collected elsewhere: gone
    if done == 0:
        return None
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_quietly(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
