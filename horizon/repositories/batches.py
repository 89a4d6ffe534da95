"""BatchRepository: batches in Horizon's shape (``GET batches``, ``GET batches/{id}``).

A batch is the hash ``batch:<id>`` written by ``batch.lua`` and counted by the finish and fail
scripts; ``batches`` indexes them by creation stamp (newest first here).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from horizon.context import Horizon

PAGE = 50


def _num(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def batch_object(h: dict[str, str]) -> dict[str, Any]:
    """Horizon's batch fields (camelCase, as Laravel's Bus batch) plus the callback job ids."""
    total, pending, failed = int(h.get("total_jobs", 0)), int(h.get("pending_jobs", 0)), int(h.get("failed_jobs", 0))
    processed = total - pending
    return {
        "id": h.get("id"),
        "name": h.get("name", ""),
        "totalJobs": total,
        "pendingJobs": pending,
        "processedJobs": processed,
        "progress": round(processed * 100 / total) if total else 100,
        "failedJobs": failed,
        "failedJobIds": json.loads(h.get("failed_job_ids") or "[]"),
        "options": {k: h.get(f"{k}_id") for k in ("then", "catch", "finally") if h.get(f"{k}_id")},
        "createdAt": _num(h.get("created_at")),
        "cancelledAt": _num(h.get("cancelled_at")),
        "finishedAt": _num(h.get("finished_at")),
    }


class BatchRepository:
    """Reads of batches; writes go through ``horizon.workflows`` (Lua)."""

    def __init__(self, hz: Horizon) -> None:
        self.redis, self.keys = hz.redis, hz.keys

    def get(self, batch_id: str) -> dict[str, Any] | None:
        h = self.redis.hgetall(self.keys.batch(batch_id))
        return batch_object(h) if h else None

    def failed_ids(self, batch_id: str) -> list[str]:
        return json.loads(self.redis.hget(self.keys.batch(batch_id), "failed_job_ids") or "[]")

    def page(self, before_id: str | None = None, limit: int = PAGE) -> list[dict[str, Any]]:
        """Newest first; ``before_id`` is the last batch already shown (Horizon's paging)."""
        top = "+inf"
        if before_id:
            score = self.redis.zscore(self.keys.batches(), before_id)
            if score is None:
                return []
            top = f"({score:.0f}"
        ids = self.redis.zrevrangebyscore(self.keys.batches(), top, "-inf", start=0, num=limit)
        pipe = self.redis.pipeline(transaction=False)
        for bid in ids:
            pipe.hgetall(self.keys.batch(bid))
        return [batch_object(h) for h in pipe.execute() if h]
