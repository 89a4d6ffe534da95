"""JqTaskRepository: raw job records, queued jobs per queue and finished-task pages for the jq namespace.

Reads, plus :meth:`update` through ``jq_update.lua``; every method is one pipelined round trip
or a bounded loop of them, O(page) — never a scan of all jobs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from horizon.context import Horizon

FINISHED = ("completed", "failed")


class JqTaskRepository:
    """Raw job hashes and finished-task pages of one prefix."""

    def __init__(self, hz: Horizon) -> None:
        self.redis, self.keys, self.scripts = hz.redis, hz.keys, hz.scripts

    def records(self, ids: Sequence[str]) -> list[dict[str, str]]:
        """The job hashes of ``ids`` in order (empty dicts for unknown ids)."""
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self.keys.job(job_id))
        return pipe.execute()

    def record(self, job_id: str) -> dict[str, str] | None:
        return self.redis.hgetall(self.keys.job(job_id)) or None

    def paused(self, queue: str) -> bool:
        return bool(self.redis.sismember(self.keys.paused(), queue))

    def queued_ids(self, queue: str, limit: int) -> list[str]:
        """Pending jobs in run order, then scheduled ones by due time; at most ``limit``."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.lrange(self.keys.queue(queue), -limit, -1)
        pipe.zrange(self.keys.delayed(queue), 0, limit - 1)
        pending, delayed = pipe.execute()
        return ([*reversed(pending), *delayed])[:limit]

    def finished_ids(
        self, queue: str | None, statuses: Sequence[str], before: str | None, limit: int
    ) -> list[tuple[str, float]]:
        """Newest finished tasks (completed/failed indexes) below task ``before``: ``[(id, score)]``."""
        keys = [self.keys.queue_index(queue, s) if queue else self.keys.index(s) for s in statuses]
        top = "+inf"
        if before:
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.zscore(key, before)
            scores = [s for s in pipe.execute() if s is not None]
            if not scores:
                return []
            top = f"({int(min(scores))}"
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.zrevrangebyscore(key, top, "-inf", start=0, num=limit, withscores=True)
        merged = [pair for reply in pipe.execute() for pair in reply]
        merged.sort(key=lambda pair: pair[1], reverse=True)
        return merged[:limit]

    def update(
        self, job_id: str, fields: dict[str, object], due: float | None, expect: dict[str, str | None] | None = None
    ) -> str:
        """Change a job that has not run yet (``jq_update.lua``); returns its status. With ``expect``
        (hash field -> value read, None = absent) the script writes only if those fields still hold
        those values, else it fails with STALE."""
        checks = json.dumps({k: False if v is None else v for k, v in (expect or {}).items()})
        return self.scripts.call(
            "jq_update", job_id, json.dumps(fields), "" if due is None else repr(float(due)), checks
        )
