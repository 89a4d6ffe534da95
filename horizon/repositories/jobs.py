"""JobRepository: the paged job lists (recent, pending, completed, silenced, failed) and one job.

Lists are the ``index:<list>`` zsets, scored by unique monotonic microsecond stamps; a page is one
``page`` script call (ZREVRANGEBYSCORE ... LIMIT plus the page's HGETALLs, one round trip), so a
read is O(page) whatever the number of jobs. Forgetting failed jobs and clearing a queue are Lua
scripts too (``forget``, ``clear``), run in bounded batches so Redis is never blocked for long.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from horizon.context import Horizon

LISTS = ("recent", "pending", "completed", "silenced", "failed", "recent_failed")
PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
BATCH = 1000  # jobs per forget/clear script call
CONNECTION = "redis"


def _json(value: str | None, default: Any = None) -> Any:
    if value is None or value == "":
        return default
    try:
        return json.loads(value)
    except ValueError:
        return value


def _float(value: str | None) -> float | None:
    """A stored number, or None when missing or not finite (JSON has no NaN or Infinity)."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def job_object(h: dict[str, str], index: float | None) -> dict[str, Any]:
    """The API job object (SPEC 9.1) for a job hash; ``index`` is its score in the list shown."""
    return {
        "id": h.get("id"),
        "connection": CONNECTION,
        "queue": h.get("queue"),
        "name": h.get("name"),
        "status": h.get("status"),
        "payload": _json(h.get("payload")),
        "tags": _json(h.get("tags"), []),
        "attempts": _int(h.get("attempts")),
        "exception": _json(h.get("exception")),
        "context": _json(h.get("context")),
        "pushed_at": _float(h.get("pushed_at")),
        "reserved_at": _float(h.get("reserved_at")),
        "worker": h.get("worker") or None,  # the worker that reserved the latest attempt
        "completed_at": _float(h.get("completed_at")),
        "failed_at": _float(h.get("failed_at")),
        "retried_by": _json(h.get("retried_by"), []),
        "retry_of": h.get("retry_of") or None,
        "progress": _float(h.get("progress")),
        "index": index,
        "runtime": _float(h.get("runtime")),
        "output": _json(h.get("output")),
        "after": h.get("after") or None,
        "batch_id": h.get("batch_id") or h.get("waiting_batch") or None,
        "tries": _int(h.get("tries"), 1),
        "timeout": _float(h.get("timeout")),
        "available_at": _float(h.get("available_at")),
    }


def _score(value: Any) -> float:
    number = float(value)
    return int(number) if number.is_integer() else number


def _bound(starting_at: float | None) -> str:
    """Exclusive upper score bound for the page after ``starting_at`` (None or negative: first page)."""
    if starting_at is None:
        return "+inf"
    try:
        number = float(starting_at)
    except (TypeError, ValueError):
        raise ValueError(f"starting_at must be a number, got {starting_at!r}") from None
    if number != number or number < 0:  # NaN or the -1 "first page" marker
        return "+inf"
    return "(" + (str(int(number)) if number.is_integer() else repr(number))


def clamp_limit(limit: int) -> int:
    """Page size between 1 and MAX_PAGE_SIZE (never unbounded)."""
    try:
        return max(1, min(int(limit), MAX_PAGE_SIZE))
    except (TypeError, ValueError):
        raise ValueError(f"limit must be an integer, got {limit!r}") from None


class JobRepository:
    """Reads the job lists and jobs; forgets failed jobs and clears queues."""

    def __init__(self, hz: Horizon) -> None:
        self.hz, self.redis, self.keys, self.scripts = hz, hz.redis, hz.keys, hz.scripts

    def _page(self, kind: str, name: str, starting_at: float | None, limit: int) -> tuple[list[dict], int]:
        reply = self.scripts.call("page", kind, name, _bound(starting_at), clamp_limit(limit))
        jobs = []
        for job_id, score, flat in reply[1:]:
            h = dict(zip(flat[::2], flat[1::2], strict=True))
            h.setdefault("id", job_id)
            jobs.append(job_object(h, _score(score)))
        return jobs, int(reply[0])

    def page(self, list_name: str, starting_at: float | None = None, limit: int = PAGE_SIZE) -> tuple[list[dict], int]:
        """Jobs of ``list_name`` newest first, strictly after the cursor ``starting_at``; and the total."""
        if list_name not in LISTS:
            raise ValueError(f"unknown job list {list_name!r}; expected one of: {', '.join(LISTS)}")
        return self._page("index", list_name, starting_at, limit)

    def page_failed_by_tag(
        self, tag: str, starting_at: float | None = None, limit: int = PAGE_SIZE
    ) -> tuple[list[dict], int]:
        """Failed jobs carrying ``tag``, newest first."""
        return self._page("tag_failed", tag, starting_at, limit)

    def page_tag(self, tag: str, starting_at: float | None = None, limit: int = PAGE_SIZE) -> tuple[list[dict], int]:
        """Jobs indexed under monitored ``tag`` (pending, completed, failed), newest first."""
        return self._page("tag_jobs", tag, starting_at, limit)

    def get(self, job_id: str) -> dict | None:
        """One job (index = its score in index:recent, or None), or None when unknown."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.job(job_id))
        pipe.zscore(self.keys.index("recent"), job_id)
        pipe.smembers(self.keys.children(job_id))
        h, score, children = pipe.execute()
        if not h:
            return None
        h.setdefault("id", job_id)
        job = job_object(h, None if score is None else _score(score))
        job["children"] = sorted(children)
        return job

    def forget(self, job_id: str) -> bool:
        """Delete one failed job and every index entry naming it; False if unknown or not failed."""
        return bool(self.scripts.call("forget", "one", job_id))

    def forget_all_failed(self) -> int:
        """Delete every failed job, in batches; returns how many were forgotten."""
        total = 0
        while True:
            forgotten, left = self.scripts.call("forget", "all", BATCH)
            total += int(forgotten)
            if int(left) == 0:
                return total

    def clear_queue(self, queue: str) -> int:
        """Delete the pending and scheduled jobs of ``queue``, in batches; returns how many."""
        if not queue:
            raise ValueError("queue name must not be empty")
        total = 0
        while True:
            removed, more = self.scripts.call("clear", queue, BATCH)
            total += int(removed)
            if not int(more):
                return total
