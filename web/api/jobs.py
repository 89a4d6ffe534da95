"""Jobs: Horizon's paged lists, one job, retry; and the extensions create, cancel, delete."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request, url_for
from flask.typing import ResponseReturnValue

from horizon.queue import JobConflict, JobNotFound
from horizon.repositories.queues import IdempotencyConflict, ParentMissing, ParentTerminal
from web import params
from web.api import create
from web.errors import conflict, not_found, unprocessable
from web.services import services

bp = Blueprint("api_jobs", __name__)

LISTS = ("recent", "pending", "completed", "silenced", "failed")


def _page(list_name: str) -> dict[str, Any]:
    s = services()
    tag = request.args.get("tag", "") if list_name == "failed" else ""
    if tag:
        jobs, total = s.jobs.page_failed_by_tag(tag, starting_at=params.starting_at(), limit=params.limit())
    else:
        jobs, total = s.jobs.page(list_name, starting_at=params.starting_at(), limit=params.limit())
    return {"jobs": jobs, "total": total}


@bp.before_request
def _job_ids() -> None:
    """A job id holds no ':' (ours are UUIDs): job:<id>:children is another key of the job's, so
    'GET jobs/<id>:children' would read a set as a job (WRONGTYPE, a 500). Unknown, as any other."""
    job_id = (request.view_args or {}).get("job_id")
    if job_id is not None and ":" in job_id:
        raise not_found(f"job {job_id} does not exist")


def _job(job_id: str) -> dict[str, Any]:
    job = services().jobs.get(job_id)
    if job is None:
        raise not_found(f"job {job_id} does not exist")
    return job


for _name in LISTS:
    bp.add_url_rule(f"/jobs/{_name}", f"list_{_name}", lambda _n=_name: _page(_n), methods=["GET"])


@bp.get("/jobs/failed/<job_id>")
def failed(job_id: str) -> dict[str, Any]:
    job = _job(job_id)
    if job.get("status") != "failed":
        raise not_found(f"job {job_id} is {job.get('status')}, not failed")
    return job


@bp.get("/jobs/<job_id>")
def show(job_id: str) -> dict[str, Any]:
    return _job(job_id)


@bp.post("/jobs/retry/<job_id>")
def retry(job_id: str) -> ResponseReturnValue:
    s = services()
    try:
        new_id = s.hz.queue.retry(job_id)
    except JobNotFound as exc:
        raise not_found(str(exc)) from None
    except JobConflict as exc:
        raise conflict(str(exc)) from None
    return _job(new_id), 201, {"Location": url_for(".show", job_id=new_id)}


@bp.post("/jobs")
def store() -> ResponseReturnValue:
    s = services()
    data = params.body(required=True)
    req = create.parse(data, request.headers.get("Idempotency-Key"), s.settings, s.hz)
    try:
        created = s.queues.create(
            req.spec, idempotency_key=req.idempotency_key, body_hash=req.body_hash, after=req.after
        )
    except IdempotencyConflict as exc:
        raise conflict(str(exc)) from None
    except ParentMissing as exc:
        raise unprocessable(str(exc)) from None
    except ParentTerminal as exc:
        raise conflict(str(exc)) from None
    location = {"Location": url_for(".show", job_id=created.id)}
    job = services().jobs.get(created.id)
    if job is None and created.replay:  # the key outlives its job's record (idempotency_ttl > trim)
        raise conflict(f"idempotency key {req.idempotency_key!r} already created job {created.id}, whose record "
                       "is gone (finished and trimmed, or deleted); it is not created again")
    if job is None:
        raise not_found(f"job {created.id} does not exist")
    return job, 200 if created.replay else 201, location


@bp.post("/jobs/<job_id>/cancel")
def cancel(job_id: str) -> dict[str, Any]:
    try:
        services().queues.cancel(job_id)
    except JobNotFound as exc:
        raise not_found(str(exc)) from None
    except JobConflict as exc:
        raise conflict(str(exc)) from None
    return _job(job_id)


@bp.delete("/jobs/<job_id>")
def destroy(job_id: str) -> ResponseReturnValue:
    if not services().queues.delete(job_id):
        raise not_found(f"job {job_id} does not exist")
    return "", 204
