"""A process pool: the workers of one queue (or of all a supervisor's queues) scaled to a target count."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from supervisor import tuning
from supervisor.process import WorkerProcess

log = logging.getLogger(__name__)

Spawn = Callable[[list[str]], WorkerProcess]
Room = Callable[[], int]  # how many more workers may start now (the supervisor's max_processes)


class ProcessPool:
    """Owns its workers: ``scale(n)``, replaces the dead (see _died), kills stragglers.

    A worker told to stop (scale-down, pause, restart, terminate) finishes its running job: it is
    killed only once that job's own kill-by time (which the worker publishes, from the job's own
    timeout) is TERMINATE_GRACE behind, or, when no job was seen running, ``stop_timeout`` after
    it was told; never later than ``longest_stop`` after. ``room`` (the supervisor's) says how many
    more workers may start: a pool waits for a worker finishing its job elsewhere to exit.
    """

    def __init__(
        self,
        queues: list[str],
        spawn: Spawn,
        *,
        stop_timeout: float,
        longest_stop: float = math.inf,
        room: Room | None = None,
    ) -> None:
        self.queues = list(queues)
        self.spawn = spawn
        self.stop_timeout = stop_timeout  # a terminating worker running no job is killed this long after
        self.longest_stop = longest_stop  # ... and one running a job at most this long after
        self.room = room
        self.target = 0
        self.paused = False
        self.processes: list[WorkerProcess] = []
        self.terminating: list[WorkerProcess] = []
        self.cooldown = 0.0
        self.restart_at = 0.0

    @property
    def key(self) -> str:
        return ",".join(self.queues)

    def size(self) -> int:
        return len(self.processes)

    def running(self) -> int:
        return 0 if self.paused else self.target

    def all(self) -> list[WorkerProcess]:
        return self.processes + self.terminating

    # --- verbs ----------------------------------------------------------------------------
    def scale(self, target: int, now: float | None = None) -> None:
        self.target = max(0, int(target))
        self._fit(time.time() if now is None else now)

    def pause(self, now: float | None = None) -> None:
        self.paused = True
        self._fit(time.time() if now is None else now)

    def resume(self, now: float | None = None) -> None:
        self.paused = False
        self._fit(time.time() if now is None else now)

    def restart(self, now: float | None = None) -> None:
        """Replace every worker: each finishes its job and exits; fresh ones start at once."""
        now = time.time() if now is None else now
        self._stop(list(self.processes), now)
        self._fit(now)

    def terminate(self, now: float | None = None) -> None:
        self.target, self.paused = 0, True
        self._stop(list(self.processes), time.time() if now is None else now)

    def monitor(self, now: float | None = None) -> None:
        """Kill terminating workers past their stop deadline and start missing ones."""
        now = time.time() if now is None else now
        clock = time.monotonic()
        for proc in self.terminating:
            if now > self.stop_deadline(proc, now, clock):
                log.warning("worker %s, told to stop %.0f s ago, is still running; killing it",
                            proc.pid, now - (proc.stopping_since or now))
                proc.kill()
        for proc in (*self.processes, *self.terminating):
            kill_at = proc.shared.kill_at()
            if kill_at and clock > kill_at and not proc.overran:  # its hard timeout failed (SIGALRM taken over)
                proc.overran = True
                log.warning("worker %s: job %s ran past its timeout and hard timeout; killing the worker "
                            "before the job's reservation ends", proc.pid, proc.shared.read()[2])
                proc.kill()
        self._fit(now)

    def stop_deadline(self, proc: WorkerProcess, now: float, clock: float) -> float:
        """When (``now``'s clock) a worker told to stop is killed: ``stop_timeout`` after it was told,
        or TERMINATE_GRACE past the kill-by time of a job seen running since (``clock`` is
        time.monotonic() at ``now``), whichever is later; at most ``longest_stop`` after it was told.
        Past its kill-by time a job has overrun its own timeout: ``monitor`` kills its worker then."""
        since = now if proc.stopping_since is None else proc.stopping_since
        proc.job_kill_at = max(proc.job_kill_at, proc.shared.kill_at())
        deadline = since + self.stop_timeout
        if proc.job_kill_at:
            deadline = max(deadline, now + proc.job_kill_at - clock + tuning.TERMINATE_GRACE)
        return min(deadline, since + self.longest_stop)

    def last_stop(self, now: float, clock: float) -> float:
        """The latest stop deadline of the workers told to stop (``now``'s clock); 0 when none is."""
        return max((self.stop_deadline(proc, now, clock) for proc in self.terminating), default=0.0)

    def exited(self, pid: int, code: int, now: float | None = None) -> bool:
        """A child exited: forget it (and count toward the cooldown when it died young); ours?"""
        now = time.time() if now is None else now
        for group in (self.processes, self.terminating):
            for proc in group:
                if proc.pid == pid:
                    group.remove(proc)
                    proc.last_state = status, jobs, _ = proc.shared.read()
                    proc.last_group = proc.shared.group()
                    proc.shared.close()
                    if group is self.processes:
                        self._died(proc, code, now, took_jobs=status == "processing" or jobs > 0)
                    return True
        return False

    # --- internals ------------------------------------------------------------------------
    def _died(self, proc: WorkerProcess, code: int, now: float, *, took_jobs: bool) -> None:
        """Replace a dead worker at once, or after the cooldown while workers keep dying young
        before taking any job (a start-up failure). A worker that died running a job (a job that
        crashes its process, the OOM killer, a kill) is replaced at once: its job's tries bound
        that loop (each lost attempt counts, then the job fails with WorkerLost)."""
        if code == 0:  # recycled (max_jobs, max_time, memory): replace at once
            return
        lived = now - proc.started_at
        self.cooldown = 0.0 if took_jobs else tuning.restart_cooldown(self.cooldown, lived)
        if self.cooldown:
            self.restart_at = now + self.cooldown
            log.warning("worker %s (%s) died with %s %.1f s after it started, before taking a job; "
                        "replacing it in %.0f s", proc.pid, self.key, _describe(code), lived, self.cooldown)
        else:
            log.warning("worker %s (%s) died with %s; replacing it", proc.pid, self.key, _describe(code))

    def _fit(self, now: float) -> None:
        wanted = self.running()
        excess = len(self.processes) - wanted
        if excess > 0:
            self._stop(self._least_busy(excess), now)
        while len(self.processes) < wanted and now >= self.restart_at and self._has_room():
            self.processes.append(self.spawn(self.queues))

    def _has_room(self) -> bool:
        return self.room is None or self.room() > 0

    def _least_busy(self, count: int) -> list[WorkerProcess]:
        order = {"starting": 0, "idle": 1, "processing": 2}
        ranked = sorted(self.processes, key=lambda p: (order.get(p.status(), 0), -p.started_at))
        return ranked[:count]

    def _stop(self, procs: list[WorkerProcess], now: float) -> None:
        for proc in procs:
            if proc in self.processes:
                self.processes.remove(proc)
                self.terminating.append(proc)
            proc.terminate(now)


def _describe(code: int) -> str:
    if code < 0:
        return f"signal {-code}"
    return f"exit code {code}"
