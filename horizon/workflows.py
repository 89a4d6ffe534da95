"""Workflows: jobs created with an idempotency key or a parent (continuations), and batches.

    report.options(after=export_id).dispatch()          # runs when export_id completes
    charge.options(idempotency_key="order-7").dispatch(7)  # a replay returns the first id
    horizon.batch([resize.call(p) for p in photos], name="resize", then=notify.call(), finally_=cleanup.call())

Each is one Lua call (``create.lua``, ``batch.lua`` + ``push.lua`` in one transaction); the
runtime side (releasing or cancelling waiting jobs, batch counts and callbacks) lives in the
finish and fail scripts.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import redis

from horizon.connection import as_refusal
from horizon.queue import JobNotFound, JobSpec

if TYPE_CHECKING:
    from horizon.context import Horizon
    from horizon.jobs import JobCall


def body_hash(spec: JobSpec, after: str = "") -> str:
    """What an idempotent replay must match, from Python or the API alike: the job (name, queue,
    payload, type), its tags, tries, timeout and backoff, and its parent. Not when it may start
    (a delay counts from each call)."""
    job = [spec.name, spec.queue, spec.payload, spec.extra.get("type"), sorted(spec.tags), int(spec.tries),
           float(spec.timeout), [float(step) for step in spec.backoff], after]
    text = json.dumps(job, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def create(hz: Horizon, spec: JobSpec, *, idempotency_key: str | None = None, after: str | None = None) -> str:
    """Push one job with an idempotency key and/or a parent; returns its id (the first one on a replay).

    Raises ``IdempotencyConflict`` (same key, other job), ``ParentMissing`` or ``ParentTerminal``
    from :mod:`horizon.repositories.queues`.
    """
    from horizon.repositories.queues import QueueRepository

    if idempotency_key is not None and not str(idempotency_key):
        raise ValueError("idempotency_key must be a non-empty string")
    created = QueueRepository(hz).create(
        spec, idempotency_key=idempotency_key or "", body_hash=body_hash(spec, after or ""), after=after or ""
    )
    return created.id


def _spec(call: JobCall, hz: Horizon) -> JobSpec:
    from horizon.jobs import BoundJob

    return BoundJob(call.definition, call.options).spec(call.args, call.kwargs, hz)


def batch(
    calls: Sequence[JobCall],
    *,
    name: str = "",
    then: JobCall | None = None,
    catch: JobCall | None = None,
    finally_: JobCall | None = None,
    hz: Horizon | None = None,
) -> str:
    """Dispatch ``calls`` as one batch (one transaction); returns the batch id.

    ``then`` runs when every job completed, ``catch`` at the first job that failed for good,
    ``finally_`` when every job has finished either way.
    """
    from horizon.context import current

    hz = hz or current()
    members = [_spec(c, hz) for c in calls]  # payload errors raise before anything is written
    callbacks = {role: _spec(c, hz) for role, c in (("then", then), ("catch", catch), ("finally", finally_)) if c}
    return push_batch(hz, members, name=name, callbacks=callbacks)


def push_batch(hz: Horizon, members: Sequence[JobSpec], *, name: str = "", callbacks: dict[str, JobSpec]) -> str:
    """Write the batch, its waiting callbacks (then/catch/finally) and its members in one transaction."""
    bid = str(uuid.uuid4())
    cb_args: list[Any] = []
    for role, spec in callbacks.items():
        if role not in ("then", "catch", "finally"):
            raise ValueError(f"batch callbacks are then, catch and finally, not {role!r}")
        cb_args += [role, *spec.argv()]
    pipe = hz.redis.pipeline(transaction=True)
    hz.scripts.call("batch", bid, name, len(members), *cb_args, client=pipe)
    for start in range(0, len(members), 1000):
        chunk = [replace(s, extra={**s.extra, "batch_id": bid}) for s in members[start : start + 1000]]
        hz.scripts.call("push", len(chunk), *[a for s in chunk for a in s.argv()], client=pipe)
    try:
        pipe.execute()
    except redis.ResponseError as exc:  # out of memory, read-only...: WritesRefused, as every dispatch
        refusal = as_refusal(exc)
        if refusal is None:
            raise
        raise refusal from exc
    return bid


def retry_batch(hz: Horizon, batch_id: str) -> list[str]:
    """Retry every failed job of a batch as batch members; returns the copies' ids."""
    from horizon.repositories.batches import BatchRepository

    failed = BatchRepository(hz).failed_ids(batch_id)
    try:
        return list(hz.scripts.call("batch_retry", batch_id, *[str(uuid.uuid4()) for _ in failed]))
    except Exception as exc:  # redis.ResponseError from the script
        if str(exc).startswith("NOT_FOUND"):
            raise JobNotFound(str(exc).split(" ", 1)[1]) from None
        raise
