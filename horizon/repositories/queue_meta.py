"""QueueMetaRepository: jq queue ids, priorities and job defaults (keys.queue_meta()), via queue_meta.lua.

Queue ``default`` always has id 1; every other queue gets the next id the first time it is described.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from horizon.context import Horizon


class QueueMetaError(Exception):
    """A refused change: ``kind`` is NOT_FOUND or CONFLICT."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


def _call(hz: Horizon, *args: Any) -> Any:
    try:
        return hz.scripts.call("queue_meta", *args)
    except redis.ResponseError as exc:
        kind, _, message = str(exc).partition(" ")
        if kind in ("NOT_FOUND", "CONFLICT"):
            raise QueueMetaError(kind, message) from None
        raise


class QueueMetaRepository:
    """Queue metadata for the jq namespace; every call is one script call."""

    def __init__(self, hz: Horizon) -> None:
        self.hz = hz
        self.configured = sorted({q for s in hz.settings.supervisors for q in s.queue})

    def describe_all(self) -> list[dict[str, Any]]:
        """Every known queue: ``{name, id, priority, job_defaults, jobs_count, suspended}`` by id."""
        queues = json.loads(_call(self.hz, "describe", *self.configured))
        return sorted(queues, key=lambda q: q["id"])

    def describe(self, name: str) -> dict[str, Any] | None:
        """One queue as in :meth:`describe_all`, or None when it does not exist."""
        reply = _call(self.hz, "one", name)
        return json.loads(reply) if reply else None

    def add(self, name: str, priority: str, job_defaults: dict[str, Any], suspended: bool) -> dict[str, Any]:
        return json.loads(_call(self.hz, "add", name, priority, json.dumps(job_defaults), "1" if suspended else "0"))

    def update(
        self, name: str, new_name: str | None, priority: str | None, job_defaults: dict[str, Any] | None
    ) -> dict[str, Any]:
        defaults = json.dumps(job_defaults) if job_defaults else ""
        return json.loads(_call(self.hz, "update", name, new_name or "", priority or "", defaults))

    def delete(self, name: str) -> None:
        """Forget a suspended, drained queue (its lists, pause flag and metadata)."""
        _call(self.hz, "delete", name)
