"""Batches (Horizon-compatible): list, one batch with its failed jobs, retry; and create.

``POST batches`` takes ``{jobs: [job...], name, then, catch, finally}`` where each job (and
callback) has the shape of a ``POST jobs`` body without ``idempotency_key`` and ``after``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request, url_for
from flask.typing import ResponseReturnValue

from horizon.queue import JobNotFound
from horizon.repositories.batches import BatchRepository
from horizon.workflows import push_batch, retry_batch
from web import params
from web.api import create
from web.errors import ApiError, bad_request, not_found
from web.services import services

bp = Blueprint("api_batches", __name__)

MAX_JOBS = 10_000
CALLBACKS = {"then": "then", "catch": "catch", "finally": "finally"}


def _batch(batch_id: str) -> dict[str, Any]:
    batch = BatchRepository(services().hz).get(batch_id)
    if batch is None:
        raise not_found(f"batch {batch_id} does not exist")
    return batch


def _spec(data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise bad_request(f"{where} must be a job object {{name | type, args, kwargs, ...}}")
    for field in ("idempotency_key", "after"):
        if field in data:
            raise bad_request(f"{where}: {field} is not allowed in a batch")
    s = services()
    try:
        return create.parse(data, None, s.settings, s.hz).spec
    except ApiError as exc:
        raise ApiError(exc.status, f"{where}: {exc.message}", exc.code) from None


@bp.get("/batches")
def index() -> dict[str, Any]:
    before = request.args.get("before_id") or None
    return {"batches": BatchRepository(services().hz).page(before, params.limit())}


@bp.get("/batches/<batch_id>")
def show(batch_id: str) -> dict[str, Any]:
    batch = _batch(batch_id)
    jobs = services().jobs
    failed = [j for j in (jobs.get(i) for i in batch["failedJobIds"]) if j is not None]
    return {"batch": batch, "failedJobs": failed}


@bp.post("/batches")
def store() -> ResponseReturnValue:
    data = params.body(required=True)
    params.only(data, {"jobs", "name", *CALLBACKS})
    items = data.get("jobs")
    if not isinstance(items, list) or len(items) > MAX_JOBS:
        raise bad_request(f"jobs must be a list of at most {MAX_JOBS} job objects")
    name = params.string(data, "name", max_len=200) or ""
    members = [_spec(item, f"jobs[{i}]") for i, item in enumerate(items)]
    callbacks = {role: _spec(data[key], key) for key, role in CALLBACKS.items() if data.get(key) is not None}
    bid = push_batch(services().hz, members, name=name, callbacks=callbacks)
    return _batch(bid), 201, {"Location": url_for(".show", batch_id=bid)}


@bp.post("/batches/retry/<batch_id>")
def retry(batch_id: str) -> dict[str, Any]:
    params.only(params.body(), set())
    try:
        copies = retry_batch(services().hz, batch_id)
    except JobNotFound as exc:
        raise not_found(str(exc)) from None
    return {"batch": _batch(batch_id), "retried": copies}
