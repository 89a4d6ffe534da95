"""QueueRepository: queue list/detail and queue control (pause, resume, drain, clean, promote, retry).

Reads are O(queues) pipelined; every change is a Lua script (``horizon/lua/queue_*.lua``,
``cancel.lua``, ``delete.lua``, ``retry_queue.lua``, ``create.lua``) so a job's state, its
indexes and its event change in one atomic step. Pausing is a shared Redis set that every
worker's reserve script honours, so it reaches every host.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from horizon.queue import JobConflict, JobNotFound, JobSpec

if TYPE_CHECKING:
    from horizon.context import Horizon

CHUNK = 1000  # jobs per script call for bulk queue operations (keeps each call short)
CLEAN_STATES = ("completed", "failed")
CONNECTION = "redis"


class IdempotencyConflict(RuntimeError):
    """The idempotency key was used before for another job (see workflows.body_hash)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"idempotency key already used for job {job_id}, a different job (name, queue, arguments, "
                         "tags, tries, timeout, backoff or parent)")
        self.job_id = job_id


class ParentMissing(LookupError):
    """The ``after`` parent does not exist."""


class ParentTerminal(RuntimeError):
    """The ``after`` parent failed or was cancelled."""


@dataclass(frozen=True)
class Created:
    """Outcome of :meth:`QueueRepository.create`: the job id and whether it is a replay."""

    id: str
    replay: bool
    status: str = ""


def _script_error(exc: redis.ResponseError) -> Exception:
    text = str(exc)
    if text.startswith("NOT_FOUND"):
        return JobNotFound(text.split(" ", 1)[1])
    if text.startswith("CONFLICT"):
        return JobConflict(text.split(" ", 1)[1])
    return exc


class QueueRepository:
    """Queues of one prefix: what is in them and the operations on them."""

    def __init__(
        self,
        hz: Horizon,
        processes_by_queue: Callable[[], Mapping[str, int]] | None = None,
        waits: Callable[[], Mapping[str, float]] | None = None,
    ) -> None:
        self.hz = hz
        self.redis, self.keys, self.scripts = hz.redis, hz.keys, hz.scripts
        self._processes = processes_by_queue or dict
        self._waits = waits or dict

    # --- reads ---------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self.redis.smembers(self.keys.queues()))

    def holders(self, name: str, limit: int = 1000) -> set[str]:
        """The workers holding reservations on queue ``name`` (among its first ``limit``, by deadline)."""
        ids = self.redis.zrange(self.keys.reserved(name), 0, limit - 1)
        if not ids:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self.keys.job(job_id), "worker")
        return {worker for worker in pipe.execute() if worker}

    def exists(self, name: str) -> bool:
        return bool(self.redis.sismember(self.keys.queues(), name))

    def list(self) -> list[dict[str, Any]]:
        """Every known queue's detail, sorted by name."""
        return self._details(self.names())

    def detail(self, name: str) -> dict[str, Any] | None:
        """``{name, paused, pending, scheduled, reserved, completed, failed, processes, wait}``."""
        if not self.exists(name):
            return None
        return self._details([name])[0]

    def _details(self, names: list[str]) -> list[dict[str, Any]]:
        if not names:
            return []
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        for q in names:
            pipe.sismember(k.paused(), q)
            pipe.llen(k.queue(q))
            pipe.zcard(k.delayed(q))
            pipe.zcard(k.reserved(q))
            pipe.zcard(k.queue_index(q, "completed"))
            pipe.zcard(k.queue_index(q, "failed"))
        replies = pipe.execute()
        processes, waits = self._processes(), self._waits()
        out = []
        for i, q in enumerate(names):
            paused, pending, scheduled, reserved, completed, failed = replies[i * 6 : i * 6 + 6]
            conn = f"{CONNECTION}:{q}"
            out.append(
                {
                    "name": q,
                    "paused": bool(paused),
                    "pending": int(pending),
                    "scheduled": int(scheduled),
                    "reserved": int(reserved),
                    "completed": int(completed),
                    "failed": int(failed),
                    "processes": int(processes.get(conn, 0)),
                    "wait": float(waits.get(conn, 0)),
                }
            )
        return out

    # --- queue control -------------------------------------------------------------------------
    def pause(self, name: str) -> bool:
        """Pause ``name`` for every worker on every host; False if it was already paused."""
        return bool(self.scripts.call("queue_pause", name))

    def resume(self, name: str) -> bool:
        """Resume ``name`` and wake idle workers for its pending jobs; False if it was not paused."""
        return bool(self.scripts.call("queue_resume", name))

    def drain(self, name: str) -> int:
        """Remove every pending and scheduled job of ``name``; returns how many."""
        total = 0
        while True:
            removed, remaining = self.scripts.call("queue_drain", name, CHUNK, total)
            total += int(removed)
            if int(remaining) == 0 or int(removed) == 0:
                return total

    def promote(self, name: str) -> int:
        """Move every scheduled (delayed) job of ``name`` to pending now; returns how many."""
        total = 0
        while True:
            promoted, remaining = self.scripts.call("queue_promote", name, CHUNK)
            total += int(promoted)
            if int(remaining) == 0:
                return total

    def clean(self, name: str, state: str, grace: float) -> int:
        """Remove ``state`` (completed|failed) jobs of ``name`` older than ``grace`` seconds."""
        if state not in CLEAN_STATES:
            raise ValueError(f"state must be one of {', '.join(CLEAN_STATES)}, got {state!r}")
        total = 0
        while True:
            removed, more = self.scripts.call("queue_clean", name, state, repr(float(grace)), CHUNK, "")
            total += int(removed)
            if not more:
                return total

    def retry_all(self, name: str) -> list[str]:
        """Retry every failed job of ``name`` that has not been retried yet (a failed retry is
        retried in its original's place; a cancelled one does not count); returns the new ids."""
        index = self.keys.queue_index(name, "failed")
        created: list[str] = []
        start = 0
        while True:
            ids = self.redis.zrange(index, start, start + CHUNK - 1)
            if not ids:
                return created
            pairs = [a for job_id in ids for a in (job_id, str(uuid.uuid4()))]
            created.extend(self.scripts.call("retry_queue", name, *pairs))
            start += CHUNK

    # --- single jobs ---------------------------------------------------------------------------
    def cancel(self, job_id: str) -> int:
        """Cancel a pending/scheduled job and the children waiting for it; returns how many."""
        try:
            return int(self.scripts.call("cancel", job_id))
        except redis.ResponseError as exc:
            raise _script_error(exc) from None

    def delete(self, job_id: str) -> bool:
        """Delete a job record and its index entries; children waiting for it are cancelled."""
        status = self.redis.hget(self.keys.job(job_id), "status")
        if status is None:
            return False
        if status in ("pending", "scheduled"):
            try:
                self.cancel(job_id)
            except JobConflict:
                pass  # it was reserved meanwhile: delete it anyway
        return bool(self.scripts.call("delete", job_id))

    def create(
        self,
        spec: JobSpec,
        *,
        idempotency_key: str = "",
        body_hash: str = "",
        after: str = "",
        ttl: int | None = None,
    ) -> Created:
        """Push one job atomically with its idempotency key and parent (see ``create.lua``)."""
        reply = self.scripts.call(
            "create",
            idempotency_key,
            body_hash,
            int(ttl if ttl is not None else self.hz.settings.idempotency_ttl),
            after,
            *spec.argv(),
        )
        outcome = reply[0]
        if outcome == "created":
            return Created(reply[1], replay=False, status=reply[2])
        if outcome == "replay":
            return Created(reply[1], replay=True)
        if outcome == "conflict":
            raise IdempotencyConflict(reply[1])
        if outcome == "parent_missing":
            raise ParentMissing(f"parent job {reply[1]} does not exist")
        raise ParentTerminal(f"parent job {reply[1]} is {reply[2]}; a continuation of it can never run")
