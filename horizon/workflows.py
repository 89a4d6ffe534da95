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
from typing import TYPE_CHECKING, Any

from horizon.queue import JobConflict, JobNotFound, JobSpec

if TYPE_CHECKING:
    from horizon.context import Horizon
    from horizon.jobs import JobCall


class IdempotencyConflict(JobConflict):
    """The idempotency key was already used for a different job."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(f"idempotency key {key!r} was already used by job {job_id} with a different body")
        self.key, self.job_id = key, job_id


class ParentNotFound(JobNotFound):
    """The ``after`` parent does not exist (never did, or its record was trimmed)."""


class ParentFinished(JobConflict):
    """The ``after`` parent failed or was cancelled: the child could never run."""


def body_hash(spec: JobSpec) -> str:
    """What an idempotent replay must match: the job's name, queue and payload."""
    text = json.dumps([spec.name, spec.queue, spec.payload], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def create(
    hz: Horizon,
    spec: JobSpec,
    *,
    idempotency_key: str | None = None,
    after: str | None = None,
    digest: str | None = None,
) -> tuple[str, bool]:
    """Push one job with an idempotency key and/or a parent: (job id, True if newly created)."""
    if idempotency_key is not None and not str(idempotency_key):
        raise ValueError("idempotency_key must be a non-empty string")
    reply = hz.scripts.call(
        "create",
        idempotency_key or "",
        digest or body_hash(spec),
        hz.settings.idempotency_ttl,
        after or "",
        *spec.argv(),
    )
    kind = reply[0]
    if kind == "created":
        return reply[1], True
    if kind == "replay":
        return reply[1], False
    if kind == "conflict":
        raise IdempotencyConflict(str(idempotency_key), reply[1])
    if kind == "parent_missing":
        raise ParentNotFound(f"after: parent job {after} does not exist")
    if kind == "parent_terminal":
        raise ParentFinished(f"after: parent job {after} is {reply[2]}; the child could never run")
    raise RuntimeError(f"unexpected reply from create: {reply!r}")


def _spec(call: JobCall, hz: Horizon, **extra: Any) -> JobSpec:
    from dataclasses import replace

    from horizon.jobs import BoundJob, DispatchOptions

    spec = BoundJob(call.definition, DispatchOptions()).spec(call.args, call.kwargs, hz)
    return replace(spec, extra={**spec.extra, **extra}) if extra else spec


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
    bid = str(uuid.uuid4())
    members = [_spec(c, hz, batch_id=bid) for c in calls]  # payload errors raise before any write
    callbacks: list[Any] = []
    for role, call in (("then", then), ("catch", catch), ("finally", finally_)):
        if call is not None:
            callbacks += [role, *_spec(call, hz).argv()[:-1], ""]
    pipe = hz.redis.pipeline(transaction=True)
    hz.scripts.call("batch", bid, name, len(members), *callbacks, client=pipe)
    if members:
        for start in range(0, len(members), 1000):
            chunk = members[start : start + 1000]
            hz.scripts.call("push", len(chunk), *[a for s in chunk for a in s.argv()], client=pipe)
    pipe.execute()
    return bid


def retry_batch(hz: Horizon, batch_id: str) -> list[str]:
    """Retry every failed job of a batch as batch members; returns the copies' ids."""
    failed = json.loads(hz.redis.hget(hz.keys.batch(batch_id), "failed_job_ids") or "[]")
    try:
        return list(hz.scripts.call("batch_retry", batch_id, *[str(uuid.uuid4()) for _ in failed]))
    except Exception as exc:  # redis.ResponseError from the script
        if str(exc).startswith("NOT_FOUND"):
            raise JobNotFound(str(exc).split(" ", 1)[1]) from None
        raise
