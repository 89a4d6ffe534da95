"""The job queue: every job state change, each one Lua script call (one Redis round trip).

Workers reserve and finish jobs here; dispatch pushes through here; the CLI and the API retry,
release and record progress through here. Reads for the API live in the repositories.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from horizon.context import Horizon

PUSH_CHUNK = 500  # jobs per push script call in bulk dispatch

_compact = json.JSONEncoder(separators=(",", ":")).encode


@lru_cache(maxsize=1024, typed=True)
def _list_json(values: tuple) -> str:
    """Compact JSON of a tags or backoff list (the same few lists recur in every dispatch)."""
    return _compact(list(values))


class JobNotFound(LookupError):
    """No job with that id."""


class JobConflict(RuntimeError):
    """The job is not in a state that allows the operation."""


def new_job_ids(n: int) -> list[str]:
    """``n`` random (version 4) UUID strings, from one read of the system's random source."""
    raw = bytearray(os.urandom(16 * n))
    ids = []
    for i in range(0, 16 * n, 16):
        raw[i + 6] = (raw[i + 6] & 0x0F) | 0x40  # version 4
        raw[i + 8] = (raw[i + 8] & 0x3F) | 0x80  # RFC 4122 variant
        h = raw[i : i + 16].hex()
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


# Ids for single dispatches, drawn ahead in one read of the random source (a system call per id
# costs a single dispatch more than building it). A forked child forgets the parent's: never the same id twice.
_ID_POOL = 64
_spare_ids: list[str] = []
os.register_at_fork(after_in_child=_spare_ids.clear)


def next_job_id() -> str:
    """One new random (version 4) UUID string."""
    while True:
        try:
            return _spare_ids.pop()
        except IndexError:  # used up (or another thread took the last one)
            _spare_ids.extend(new_job_ids(_ID_POOL))


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """A job to push: everything the push script writes."""

    name: str
    queue: str
    payload: str
    tags: Sequence[str] = ()
    tries: int = 1
    timeout: float = 60
    backoff: Sequence[float] = (0,)
    available_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def argv(self) -> list[Any]:
        return [
            self.id,
            self.name,
            self.queue,
            self.payload,
            _list_json(tuple(self.tags)),
            self.tries,
            self.timeout,
            _list_json(tuple(self.backoff)),
            "" if self.available_at is None else repr(float(self.available_at)),
            _compact(self.extra) if self.extra else "",
        ]


@dataclass(frozen=True)
class Reserved:
    """A job a worker holds: enough to run it without reading the hash again."""

    id: str
    queue: str
    name: str
    payload: str
    attempts: int
    tries: int
    timeout: float
    backoff_json: str  # decoded on use (the hot path never needs them): backoff, tags
    tags_json: str

    @property
    def backoff(self) -> list[float]:
        return json.loads(self.backoff_json or "[]")

    @property
    def tags(self) -> list[str]:
        return json.loads(self.tags_json or "[]")

    @classmethod
    def from_reply(cls, reply: Sequence[Any]) -> Reserved | None:
        if not reply or not reply[0]:
            return None
        id_, queue, name, payload, attempts, tries, timeout, backoff, tags = reply[:9]
        return cls(id_, queue, name, payload, int(attempts), int(tries), float(timeout), backoff, tags)

    @classmethod
    def list_from_reply(cls, reply: Sequence[Any]) -> list[Reserved]:
        """Every job of a reply holding 9 fields per job (empty for a ``{'', next_due}`` reply)."""
        if not reply or not reply[0]:
            return []
        return [cls.from_reply(reply[i : i + 9]) for i in range(0, len(reply) - 8, 9)]  # type: ignore[misc]


def _next_due(reply: Sequence[Any]) -> float | None:
    if len(reply) >= 2 and not reply[0] and reply[1]:
        return float(reply[1])
    return None


class JobQueue:
    """Lua-backed job operations for one configured horizon."""

    def __init__(self, hz: Horizon) -> None:
        self.redis = hz.redis
        self.keys = hz.keys
        self.scripts = hz.scripts

    # --- dispatch -------------------------------------------------------------------------
    def push(self, specs: Iterable[JobSpec]) -> list[str]:
        """Push jobs: one script call per chunk of PUSH_CHUNK, pipelined in one round trip."""
        specs = list(specs)
        if len(specs) == 1:
            self.scripts.call("push", 1, *specs[0].argv())
            return [specs[0].id]
        chunks = (specs[start : start + PUSH_CHUNK] for start in range(0, len(specs), PUSH_CHUNK))
        # each chunk is written as soon as it is built: Redis pushes one while the next is built
        self.scripts.call_each("push", ([len(chunk), *(a for spec in chunk for a in spec.argv())] for chunk in chunks))
        return [spec.id for spec in specs]

    def push_like(self, template: Sequence[Any], body: str) -> str:
        """Push one job with a new id and payload ``body``, every other field as in ``template``
        (the ``argv()`` of a spec with the same name, queue and options); returns its id."""
        job_id = next_job_id()
        self.scripts.call("push", 1, job_id, template[1], template[2], body, *template[4:])
        return job_id

    def push_many_like(self, template: Sequence[Any], bodies: Sequence[str]) -> list[str]:
        """Push one job per payload in ``bodies``, each as :meth:`push_like` does, pipelined in
        chunks of PUSH_CHUNK; returns their ids in order."""
        ids = new_job_ids(len(bodies))
        name, queue, tail = template[1], template[2], tuple(template[4:])

        def chunks() -> Iterable[list[Any]]:  # each written as soon as it is built
            for start in range(0, len(ids), PUSH_CHUNK):
                part = ids[start : start + PUSH_CHUNK]
                args: list[Any] = [len(part)]
                for job_id, body in zip(part, bodies[start : start + PUSH_CHUNK], strict=True):
                    args += (job_id, name, queue, body, *tail)
                yield args

        self.scripts.call_each("push", chunks())
        return ids

    def push_once(self, spec: JobSpec, lock_task: str, owner: str, lock_ms: int) -> bool:
        """Push ``spec`` unless the lock ``lock_task`` is taken; lock and push are one atomic step."""
        return bool(self.scripts.call("push_once", lock_task, owner, lock_ms, *spec.argv()))

    # --- worker hot path --------------------------------------------------------------------
    def reserve(
        self, queues: Sequence[str], woken_by: str = "", worker: str = ""
    ) -> tuple[Reserved | None, float | None]:
        """The next job of ``queues`` (priority order), or (None, when something is next due).
        ``worker`` names the reserving worker on the job (see :meth:`recover_worker`)."""
        jobs, due = self.reserve_many(queues, 1, woken_by, worker)
        return (jobs[0] if jobs else None), due

    def reserve_many(
        self, queues: Sequence[str], count: int, woken_by: str = "", worker: str = ""
    ) -> tuple[list[Reserved], float | None]:
        """Up to ``count`` jobs (more than one only from a queue of short jobs), or ([], next due)."""
        reply = self.scripts.call("reserve", woken_by, count, worker, *queues)
        return Reserved.list_from_reply(reply), _next_due(reply)

    def finish(
        self,
        job: Reserved,
        outcome: str,
        runtime_ms: float,
        detail: str = "",
        next_from: Sequence[str] | None = None,
        worker: str = "",
    ) -> tuple[str, Reserved | None, float | None]:
        """Record an attempt's outcome and reserve the next job in the same round trip.

        ``outcome`` is ``completed``, ``failed`` (retried while tries are left),
        ``failed_final`` or ``release`` (never ran: put back without counting the attempt);
        ``detail`` is the exception JSON or the job's output.
        Returns (the job's new status or 'stale', next job, next due time).
        """
        states, jobs, due = self.finish_many([(job, outcome, runtime_ms, detail)], next_from, worker=worker)
        return states[0], (jobs[0] if jobs else None), due

    def finish_many(
        self,
        done: Sequence[tuple[Reserved, str, float, str]],
        next_from: Sequence[str] | None = None,
        count: int = 1,
        worker: str = "",
    ) -> tuple[list[str], list[Reserved], float | None]:
        """Finish attempts ``(job, outcome, runtime ms, detail)`` and reserve up to ``count`` next
        jobs from ``next_from`` for ``worker``, all in one round trip. Returns (states, next jobs,
        next due)."""
        args = self._finish_args(done, next_from, count, 0.0, worker)
        return self._finish_reply(self.scripts.call("finish", *args))

    def finish_many_start(
        self,
        connection: Any,
        done: Sequence[tuple[Reserved, str, float, str]],
        next_from: Sequence[str],
        count: int,
        offset: float,
        worker: str = "",
    ) -> Any:
        """Like :meth:`finish_many`, but only written on ``connection``: the caller goes on (runs the
        jobs it holds) while Redis runs the script, then reads the reply with :meth:`finish_many_collect`.
        The jobs reserved this way start after the held ones: ``offset`` is the sum of their
        timeouts plus grace, where the new reservations' windows begin."""
        return self.scripts.start(connection, "finish", *self._finish_args(done, next_from, count, offset, worker))

    def finish_many_collect(self, pending: Any) -> tuple[list[str], list[Reserved], float | None]:
        return self._finish_reply(self.scripts.collect(pending))

    @staticmethod
    def _finish_args(
        done: Sequence[tuple[Reserved, str, float, str]],
        next_from: Sequence[str] | None,
        count: int,
        offset: float,
        worker: str,
    ) -> list[Any]:
        args: list[Any] = [len(done)]
        for job, outcome, runtime_ms, detail in done:
            args += [outcome, job.id, job.attempts, f"{runtime_ms:.3f}", detail]
        args += [count if next_from else 0, f"{offset:.3f}", worker, *(next_from or ())]
        return args

    @staticmethod
    def _finish_reply(reply: Sequence[Any]) -> tuple[list[str], list[Reserved], float | None]:
        n = int(reply[0])
        rest = reply[1 + n :]
        return list(reply[1 : 1 + n]), Reserved.list_from_reply(rest), _next_due(rest)

    def wait_and_reserve(
        self, queues: Sequence[str], timeout: float, count: int = 1, worker: str = ""
    ) -> tuple[list[Reserved], float | None]:
        """Block for a wake-up token and reserve, pipelined: one network round trip."""
        brpop = ("BRPOP", *[self.keys.wake(q) for q in queues], f"{max(timeout, 0.01):.3f}")
        _, reply = self.scripts.after_blocking(brpop, "reserve", "?", count, worker, *queues)
        return Reserved.list_from_reply(reply), _next_due(reply)

    def recover_worker(
        self, worker: str, queues: Sequence[str], keep: Sequence[str] = (), running: str | None = None,
        overran: bool = False,
    ) -> int:
        """Put back at once what ``worker`` held on ``queues`` (its reservations name it), except
        the ids in ``keep``; returns how many (or failed, when that was their last try). A
        prefetched batch's windows can add up to many job timeouts, so this does not wait for them.

        ``running`` is the job the worker was running: that attempt counts a try (a job that keeps
        killing its worker fails with WorkerLost); every other job is released without one, since
        it never started or ran to its end (a job run but not yet acknowledged runs again). '' means
        none was running (a worker that lost a reply reserving jobs it never started). None means
        unknown: each job is put back as an expired reservation is. ``overran``: the worker was killed
        because ``running`` ran past its timeout and hard timeout (its last try fails with JobTimeout)."""
        mode = "died" if running is None else "overran" if overran and running else "release"
        return int(self.scripts.call("recover_worker", worker, mode, running or "", len(keep), *keep, *queues))

    def release(self, job: Reserved) -> bool:
        """Put a reserved job back without counting the attempt."""
        return bool(self.scripts.call("release", job.id, job.attempts))

    def progress(self, job_id: str, value: float) -> bool:
        return bool(self.scripts.call("progress", job_id, repr(float(value))))

    # --- operations -------------------------------------------------------------------------
    def retry(self, job_id: str) -> str:
        """Dispatch a copy of a failed job; returns the copy's id."""
        try:
            return self.scripts.call("retry", job_id, str(uuid.uuid4()))
        except redis.ResponseError as exc:
            text = str(exc)
            if text.startswith("NOT_FOUND"):
                raise JobNotFound(text.split(" ", 1)[1]) from None
            if text.startswith("CONFLICT"):
                raise JobConflict(text.split(" ", 1)[1]) from None
            raise

    def maintain(self) -> tuple[int, int]:
        """Move due delayed jobs and recover expired reservations on every queue."""
        promoted, recovered = self.scripts.call("maintain")
        return int(promoted), int(recovered)

    def get(self, job_id: str) -> dict[str, str] | None:
        data = self.redis.hgetall(self.keys.job(job_id))
        return data or None
