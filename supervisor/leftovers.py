"""What a dead worker's job left running: the process group of its command, stopped by the supervisor.

A cli job runs its command in a process group of its own and stops that group itself on the
job's timeout or when its worker is told to stop. A worker killed outright (SIGKILL, the OOM
killer, its supervisor's hard stop) cannot: the command and all it started ran on, orphaned,
while the job was put back and ran again (two copies at once). So the supervisor does it:

- it is its descendants' "child subreaper" (``PR_SET_CHILD_SUBREAPER``): what a dead worker
  leaves is re-parented to it, not to init;
- each worker reports the group its running job's command leads (``horizon.lineage``, through
  its shared state); when a worker dies with one reported, :meth:`Leftovers.worker_died` sends
  the group SIGTERM, and :meth:`Leftovers.tend` SIGKILL once :data:`GRACE` has passed (the loop
  does not wait), as the job itself would have. The command, now the supervisor's child, is not
  reaped before that SIGKILL, so its pid (the group's id) cannot go to another process meanwhile.

Only that group is touched, and only when its leader is the supervisor's child (so the dead
worker's): never a live worker's command (its child, not ours), nor a process that left the group
(``setsid``: meant to outlive the job, README), nor anything else.

Being a subreaper, the supervisor must also reap whatever is re-parented to it (such a process
once its parent has exited, the stopped command and its children): :meth:`Leftovers.collect`
peeks at an exited child (``waitid`` with ``WNOWAIT``) and reaps it only when it is neither a
worker (the supervisor's reap reads their exit status) nor a command it keeps.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Collection

import psutil

from horizon import lineage
from horizon.builtin_jobs import KILL_AFTER

log = logging.getLogger(__name__)

GRACE = KILL_AFTER  # s between SIGTERM and SIGKILL, as a cli job's own stop
COLLECT_MAX = 256  # exited children reaped per pass at most
LISTED = 8  # processes of a group named in a log record


class Leftovers:
    """The groups of dead workers' commands being stopped (group id -> when SIGKILL is due)."""

    def __init__(self, grace: float = GRACE) -> None:
        self.grace = grace
        self.stopping: dict[int, float] = {}

    @classmethod
    def start(cls) -> Leftovers | None:
        """Make this process the subreaper of its descendants; None where the kernel cannot (then a
        dead worker's command is left running, as before)."""
        if lineage.set_child_subreaper():
            return cls()
        log.warning("cannot become a child subreaper (Linux only): the commands of workers killed "
                    "outright will be left running")
        return None

    def worker_died(self, worker: str, pgid: int, workers: Collection[int]) -> bool:
        """Worker ``worker`` died while its job's command led group ``pgid``: SIGTERM the group,
        SIGKILL due in :attr:`grace` s. Nothing when that command is not our child any more (the
        worker had reaped it, killing its group first) or is one of ``workers`` (a reused pid)."""
        if pgid <= 0 or pgid in workers or pgid in self.stopping or not _child(pgid) or _pgid(pgid) != pgid:
            return False
        log.warning("worker %s died while its job ran a command: stopping the command's process group %d "
                    "(%s): SIGTERM, SIGKILL in %g s", worker, pgid, _members(pgid) or "no process left", self.grace)
        _signal_group(pgid, signal.SIGTERM)
        self.stopping[pgid] = time.monotonic() + self.grace
        return True

    def tend(self, keep: Collection[int], now: float | None = None) -> None:
        """SIGKILL the groups whose grace is over, then reap exited children not in ``keep``."""
        now = time.monotonic() if now is None else now
        for pgid, due in list(self.stopping.items()):
            if now >= due:
                self._kill(pgid)
        self.collect(keep)

    def collect(self, keep: Collection[int]) -> int:
        """Reap exited children, stopping at the first one in ``keep`` (a worker, a command whose
        group is stopped or to be) or being stopped: it stays for its owner. How many were reaped."""
        reaped = 0
        while reaped < COLLECT_MAX:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:  # no child at all
                break
            if info is None or info.si_pid in keep or info.si_pid in self.stopping:
                break
            os.waitid(os.P_PID, info.si_pid, os.WEXITED | os.WNOHANG)
            reaped += 1
        return reaped

    def close(self) -> None:
        """The supervisor exits: SIGKILL at once the groups still being stopped, reap what exited."""
        for pgid in list(self.stopping):
            self._kill(pgid)
        self.collect(())

    def _kill(self, pgid: int) -> None:
        del self.stopping[pgid]
        left = _members(pgid, alive=True)
        _signal_group(pgid, signal.SIGKILL)
        if left:
            log.warning("process group %d outlived its SIGTERM: SIGKILL to %s", pgid, left)


def _child(pid: int) -> bool:
    """Whether ``pid`` is a child of this process (running, or exited and not yet reaped)."""
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return 0


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def _members(pgid: int, alive: bool = False) -> str:
    """The processes of group ``pgid`` as 'name pid, ...' (at most LISTED), for the log; only
    those not exited when ``alive``. A scan of all processes: only when a worker died."""
    found = []
    for proc in psutil.process_iter(["name", "status"]):
        try:
            if os.getpgid(proc.pid) != pgid or (alive and proc.info["status"] == psutil.STATUS_ZOMBIE):
                continue
        except OSError:
            continue
        found.append(f"{proc.info['name']} {proc.pid}")
    listed = ", ".join(found[:LISTED])
    return listed + (f" and {len(found) - LISTED} more" if len(found) > LISTED else "")
