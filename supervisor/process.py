"""One forked worker process and the few bytes of shared memory through which it reports its state."""

from __future__ import annotations

import mmap
import os
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from horizon import context, lineage
from horizon.config import Settings, SupervisorSettings
from horizon.jobs import MAX_TIMEOUT
from horizon.logs import set_process_name
from horizon.worker import Worker, WorkerOptions, WorkerState, kill_after
from supervisor import children, tuning

STATUSES = ("starting", "idle", "processing", "stopped")
# status index, jobs done, the running job's kill deadline (time.monotonic(), 0 none), length and bytes of its id
_LAYOUT = struct.Struct("<iqdB254s")
_UNKNOWN_JOB = 255  # the length byte of an id too long to hold: which job runs is unknown
_GROUP = struct.Struct("<i")  # after _LAYOUT: the process group the running job's command leads, 0 none


class SharedState:
    """A worker's status, job count and running job in an anonymous shared mapping (written by
    the child only). The running job's id tells the supervisor, when the worker dies, which of
    the jobs it held was running (that attempt counts a try) and which it never started; the
    process group its command leads (a cli job), which group to stop (supervisor.leftovers)."""

    def __init__(self) -> None:
        self.memory = mmap.mmap(-1, _LAYOUT.size + _GROUP.size)

    def write(self, state: WorkerState) -> None:
        index = STATUSES.index(state.status) if state.status in STATUSES else 0
        job = state.job.encode()
        length = len(job) if len(job) < _UNKNOWN_JOB else _UNKNOWN_JOB  # not an id horizon makes
        held = job if length < _UNKNOWN_JOB else b""
        _LAYOUT.pack_into(self.memory, 0, index, state.jobs, state.kill_at, length, held)

    def read(self) -> tuple[str, int, str | None]:
        """(status, jobs done, id of the job running: '' none, None unknown)."""
        index, jobs, _, length, job = _LAYOUT.unpack_from(self.memory, 0)
        running = None if length == _UNKNOWN_JOB else job[:length].decode()
        return STATUSES[index] if 0 <= index < len(STATUSES) else "starting", jobs, running

    def write_group(self, pgid: int) -> None:
        """The process group the running job's command leads, 0 when none (horizon.lineage)."""
        _GROUP.pack_into(self.memory, _LAYOUT.size, pgid)

    def group(self) -> int:
        return int(_GROUP.unpack_from(self.memory, _LAYOUT.size)[0])

    def kill_at(self) -> float:
        """When the running job must be over (time.monotonic()); 0 when none runs (see WorkerState)."""
        return float(_LAYOUT.unpack_from(self.memory, 0)[2])

    def close(self) -> None:
        self.memory.close()


class SharedDeadline:
    """One time.monotonic() instant in an anonymous shared mapping, 0 when none: what a
    supervisor tells its master (which made the mapping before forking it) about when its last
    worker will be gone once it stops (see Supervisor.publish_stop and MasterSupervisor.monitor)."""

    _FORMAT = struct.Struct("<d")

    def __init__(self) -> None:
        self.memory = mmap.mmap(-1, self._FORMAT.size)

    def write(self, at: float) -> None:
        self._FORMAT.pack_into(self.memory, 0, at)

    def read(self) -> float:
        return float(self._FORMAT.unpack_from(self.memory, 0)[0])


def longest_stop(settings: Settings) -> float:
    """The longest a worker told to stop may take (seconds): a job of the longest timeout a job may
    have (jobs.MAX_TIMEOUT) that started just then, its worker's kill past that timeout
    (worker.kill_after), then TERMINATE_GRACE to acknowledge it and exit. The hard bound of every
    wait for a stopping worker, whatever its shared memory says."""
    return MAX_TIMEOUT + kill_after(settings.timeout_grace, settings.reservation_margin) + tuning.TERMINATE_GRACE


@dataclass
class WorkerProcess:
    """A running worker as its supervisor sees it."""

    pid: int
    queues: list[str]
    shared: SharedState
    started_at: float = field(default_factory=time.time)
    stopping_since: float | None = None
    memory_mb: float = 0.0
    last_state: tuple[str, int, str | None] | None = None  # read when it exited, before the mapping closed
    last_group: int = 0  # the process group its job's command led when it exited (SharedState.group)
    overran: bool = False  # killed because its job outlived its kill-by time (see ProcessPool.monitor)
    # the latest kill-by time (time.monotonic()) of a job seen running since it was told to stop: it
    # may finish that job and acknowledge it (see ProcessPool.stop_deadline)
    job_kill_at: float = 0.0

    @property
    def queue(self) -> str:
        return ",".join(self.queues)

    def status(self) -> str:
        return "terminating" if self.stopping_since is not None else self.shared.read()[0]

    def jobs(self) -> int:
        return self.shared.read()[1]

    def terminate(self, now: float) -> None:
        if self.stopping_since is None:
            self.stopping_since = now
        children.signal_quietly(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        children.signal_quietly(self.pid, signal.SIGKILL)

    def measure(self) -> float:
        """USS in MB (memory private to the worker; copy-on-write pages shared with us do not count)."""
        try:
            self.memory_mb = round(psutil.Process(self.pid).memory_full_info().uss / 2**20, 1)
        except (psutil.Error, OSError):
            pass
        return self.memory_mb

    def record(self) -> dict:
        return {
            "pid": self.pid,
            "queue": self.queue,
            "status": self.status(),
            "started_at": round(self.started_at, 3),
            "jobs": self.jobs(),
            "memory": self.memory_mb,
        }


def worker_name(supervisor: str, pid: int) -> str:
    """A supervised worker's name: on its reservations (``worker``) and in its log records."""
    return f"{supervisor}:{pid}"


def spawn_worker(
    settings: Settings,
    supervisor: SupervisorSettings,
    queues: list[str],
    name: str,
    before: Callable[[], None] | None = None,
) -> WorkerProcess:
    """Fork a worker serving ``queues`` (priority order) with a fresh Redis connection."""
    shared = SharedState()
    parent = os.getpid()

    def run() -> int:
        hz = context.after_fork(settings)
        set_process_name(f"{name}:worker-{os.getpid()}")
        if supervisor.nice:
            os.nice(supervisor.nice)
        options = WorkerOptions(
            queues=queues,
            name=worker_name(name, os.getpid()),
            max_jobs=supervisor.max_jobs,
            max_time=supervisor.max_time,
            memory=supervisor.memory,
            prefetch=supervisor.prefetch,
            parent_pid=parent,
        )
        worker = Worker(hz, options, on_state=shared.write)
        lineage.report_groups(shared.write_group)  # if this worker dies, its supervisor stops that group
        worker.install_signals()
        for ignored in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(ignored, signal.SIG_IGN)
        children.release_signals()  # a TERM sent while this worker started is handled now
        return worker.run()

    pid = children.fork(run, before=before, comm=children.WORKER_COMM)
    return WorkerProcess(pid=pid, queues=list(queues), shared=shared)
