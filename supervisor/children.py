"""Forking children that start clean: default signals, reseeded random, death signal from the parent."""

from __future__ import annotations

import gc
import logging
import os
import random
import signal
import sys
from collections.abc import Callable

from horizon import lineage

log = logging.getLogger(__name__)

SUPERVISOR_COMM = "hz-supervisor"  # the kernel name (ps -o comm, top) of a forked supervisor...
WORKER_COMM = "hz-worker"  # ... and of a forked worker: `horizon purge` recognises them by it
EXIT_FAILED = 1

# The signals other processes send a child (terminate, pause, restart; SIGTERM is also its parent-
# death signal). fork() blocks them from just before the fork, and the child lets them in with
# release_signals() once its own handlers are installed. Otherwise one sent while the child starts
# would reach the handler it inherited from its parent (which records it in a copy of the parent's
# queue that nobody reads: a worker told to stop as it was forked ran on) or the default action.
FORWARDED = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2})


def set_parent_death_signal(signum: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``signum`` to this process when its parent dies (Linux)."""
    return lineage.prctl(lineage.PR_SET_PDEATHSIG, int(signum))


def set_kernel_name(name: str) -> bool:
    """Name this process in the kernel (``/proc/<pid>/comm``: ps, top; at most 15 bytes, Linux).
    Its command line stays that of the master it was forked from."""
    return lineage.prctl(lineage.PR_SET_NAME, name.encode()[:15])


def fork(run: Callable[[], int], *, before: Callable[[], None] | None = None, comm: str = "") -> int:
    """Fork; the child calls ``before`` (undo the parent's set-up) then ``run`` and exits with its code.
    The child starts with :data:`FORWARDED` blocked: ``run`` calls :func:`release_signals` once its
    handlers are in place. ``comm``: the child's kernel name (:func:`set_kernel_name`)."""
    parent = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    # the objects made so far move to the permanent generation: no collection in the child (or in
    # us) writes to them, so their pages stay shared copy-on-write (lower USS in every process)
    gc.freeze()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        pid = os.fork()
    finally:
        if os.getpid() == parent:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    if pid:
        return pid
    code = EXIT_FAILED
    try:
        if comm:
            set_kernel_name(comm)
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


def hold_signals() -> None:
    """Block :data:`FORWARDED` in this process until :func:`release_signals`: what an operator sends
    while a master starts (imports, connecting) waits for its handlers instead of killing it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)


def release_signals() -> None:
    """In a child made by :func:`fork`, once its own signal handlers are installed: let in the
    signals fork() blocked (one sent meanwhile is delivered now). Elsewhere it changes nothing."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)


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
