"""The ``jq`` job methods: add, update, delete, list and get jobs (history and tasks: ``jq_history``).

``add_job`` maps jq jobs onto ours: ``http`` jobs run ``horizon.http`` and ``cli`` jobs
``horizon.cli`` (kwargs = their spec), ``type: "job"`` runs one of our named jobs
(``job``, ``args``, ``kwargs``); ``predecessor`` is our ``after`` continuation;
``max_retry_count``/``retry_delay`` become tries/backoff (kept on a recurring job's schedule for
each of its runs: ``jq_recurring``). Job and task ids are our job ids.
"""

from __future__ import annotations

import json
import shlex
import time
from typing import TYPE_CHECKING, Any

from horizon import payload
from horizon.queue import JobConflict, JobNotFound, JobSpec
from horizon.repositories.jq_tasks import JqTaskRepository
from horizon.repositories.queues import ParentMissing, ParentTerminal
from web.rpc import jq_model, jq_recurring
from web.rpc.jq_queues import DEFAULT_FIELDS, JOB_TYPES, Queues, queue_ref
from web.rpc.jq_schedule import parse_schedule
from web.rpc.protocol import INVALID_PARAMS, Dispatcher, RpcError, invalid_params

if TYPE_CHECKING:
    from web.rpc.session import Connection

VERSION = {"major": 1, "minor": 0}
JOBS_DEFAULT, JOBS_MAX = 100, 1000
UPDATE_ATTEMPTS = 10  # update_job re-reads and retries when a concurrent update changed the job

# every add_job / update_job member; value checks beyond the queue defaults' ones
JOB_MEMBERS = (
    "type", "name", "queue", "predecessor", "priority", "timeout", "max_retry_count", "retry_delay",
    "schedule", "persist", "persist_output", "url", "http_method", "http_headers", "http_query_args",
    "validate_ssl", "http_content_type", "http_body_vars", "http_raw_body", "script", "env", "nodes",
    "job", "args", "kwargs",
)

# the members that belong to one job type (dropped when update_job changes the type)
TYPE_MEMBERS = {
    "http": ("url", "http_method", "http_headers", "http_query_args", "validate_ssl", "http_content_type",
             "http_body_vars", "http_raw_body"),
    "cli": ("script", "env"),
    "job": ("job", "args", "kwargs"),
}


def _no_job(job_id: Any) -> RpcError:
    return RpcError(INVALID_PARAMS, "no such job", {"id": job_id})


def _check(params: dict[str, Any]) -> None:
    """Validate the members of an add_job / update_job call (RpcError -32602 naming the member)."""
    for key, value in params.items():
        check = DEFAULT_FIELDS.get(key)
        if check is not None and not check(value):
            raise invalid_params(f"{key} has an invalid value {value!r}")
    if params.get("type", "http") not in JOB_TYPES:
        raise invalid_params(f"type must be one of {', '.join(JOB_TYPES)}")
    for key in ("http_headers", "http_query_args", "http_body_vars", "env", "kwargs"):
        if key in params and not isinstance(params[key], dict):
            raise invalid_params(f"{key} must be an object")
    for key in ("name", "url", "script", "http_raw_body", "job", "nodes"):
        if key in params and not isinstance(params[key], str):
            raise invalid_params(f"{key} must be a string")
    if "args" in params and not isinstance(params["args"], list):
        raise invalid_params("args must be an array")


def _http_spec(p: dict[str, Any]) -> dict[str, Any]:
    url = p.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise invalid_params("url must be an http:// or https:// URL for http jobs")
    method = str(p.get("http_method", "GET")).upper()
    spec: dict[str, Any] = {"method": method, "url": url}
    headers = dict(p.get("http_headers") or {})
    if p.get("http_query_args"):
        spec["query"] = p["http_query_args"]
    if method in ("POST", "PUT"):
        if "http_raw_body" in p:
            spec["body"] = p["http_raw_body"]
        elif "http_body_vars" in p:
            kind = p.get("http_content_type", "json")
            if kind == "json":
                spec["json"] = p["http_body_vars"]
            elif kind == "url-encoded":
                spec["form"] = p["http_body_vars"]
            else:
                spec["body"] = json.dumps(p["http_body_vars"])
                headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    if headers:
        spec["headers"] = headers
    spec["timeout"] = p.get("timeout", 60)
    return spec


def _target(conn: Connection, p: dict[str, Any]) -> tuple[str, list[Any], dict[str, Any]]:
    """(our job name, args, kwargs) for the job type."""
    kind = p.get("type", "http")
    if kind == "http":
        if not conn.hz.settings.job_types.http.enabled:
            raise invalid_params("http jobs are disabled (job_types.http.enabled)")
        return jq_model.HTTP_JOB, [], _http_spec(p)
    if kind == "cli":
        if not conn.hz.settings.job_types.cli.enabled:
            raise invalid_params("cli jobs are disabled on this server (job_types.cli.enabled: false)")
        try:
            argv = shlex.split(p.get("script") or "")
        except ValueError as exc:
            raise invalid_params(f"script cannot be parsed: {exc}") from None
        if not argv:
            raise invalid_params("script is required for cli jobs")
        spec: dict[str, Any] = {"argv": argv}
        if p.get("env"):
            spec["env"] = {str(k): str(v) for k, v in p["env"].items()}
        return jq_model.CLI_JOB, [], spec
    if not p.get("job"):
        raise invalid_params("job (a registered job name) is required for type 'job'")
    return p["job"], list(p.get("args") or []), dict(p.get("kwargs") or {})


def _meta(p: dict[str, Any], schedule: Any) -> dict[str, Any]:
    meta = {k: p[k] for k in ("type", "name", "priority", "persist", "persist_output", "validate_ssl",
                              "http_content_type", "http_body_vars", "http_raw_body", "script") if k in p}
    meta.setdefault("type", "http")
    if schedule is not None:
        meta["schedule"] = schedule
    return meta


def _spec(conn: Connection, p: dict[str, Any], queue: str, run_at: float | None) -> JobSpec:
    name, args, kwargs = _target(conn, p)
    schedule = {"unix_time": run_at} if run_at is not None else p.get("schedule")  # date_time resolved
    try:
        body = payload.encode(args, kwargs)
    except (TypeError, ValueError) as exc:
        raise invalid_params(str(exc)) from None
    return JobSpec(
        name=name,
        queue=queue,
        payload=body,
        tries=int(p.get("max_retry_count", 0)) + 1,
        timeout=float(p.get("timeout", 60)),
        backoff=(float(p.get("retry_delay", 0)),),
        available_at=run_at,
        extra={"jq": json.dumps(_meta(p, schedule), separators=(",", ":"))},
    )


def version(conn: Connection) -> dict[str, int]:
    conn.require_session()
    return dict(VERSION)


def add_job(conn: Connection, **params: Any) -> str:
    conn.require_session(write="jq.add_job")
    unknown = sorted(set(params) - set(JOB_MEMBERS))
    if unknown:
        raise invalid_params(f"unknown member(s) {unknown}")
    queues = Queues(conn)
    q = queues.get(params.get("queue"))
    p = {**q["job_defaults"], **params}
    _check(p)
    schedule = parse_schedule(p.get("schedule"), time.time())
    if schedule.cron is not None:
        kept_out = [k for k in jq_recurring.NOT_KEPT if k in params]
        if kept_out:
            raise invalid_params(
                f"{', '.join(kept_out)}: a recurring job (schedule.cron) cannot keep this: its schedule has "
                "no priority and its runs wait for no predecessor (docs/rpc.md)", {"members": kept_out}
            )
        options = jq_recurring.run_options(p, params)  # the queue's job_defaults apply, as to one-time jobs
        return jq_recurring.add(conn.hz, p.get("name"), q["name"], schedule.cron, _target(conn, p), options)
    predecessor = p.get("predecessor")
    if predecessor is not None and not isinstance(predecessor, str):
        raise invalid_params("predecessor must be a job id (string)")
    spec = _spec(conn, p, q["name"], schedule.run_at)
    try:
        created = queues.repo.create(spec, after=predecessor or "")
    except ParentMissing:
        raise invalid_params("predecessor job does not exist", {"predecessor": predecessor}) from None
    except ParentTerminal as exc:
        raise invalid_params(str(exc), {"predecessor": predecessor}) from None
    return created.id


def update_job(conn: Connection, **params: Any) -> str:
    conn.require_session(write="jq.update_job")
    job_id = params.pop("id", None)
    if not isinstance(job_id, str):
        raise invalid_params("id (the job id) is required")
    if "queue" in params:
        raise invalid_params("the queue of a job cannot be changed")
    unknown = sorted(set(params) - set(JOB_MEMBERS))
    if unknown:
        raise invalid_params(f"unknown member(s) {unknown}")
    if jq_recurring.is_recurring(job_id):
        return _update_recurring(conn, job_id, params)
    tasks = JqTaskRepository(conn.hz)
    for _ in range(UPDATE_ATTEMPTS):
        if _update_once(conn, tasks, job_id, params):
            return job_id
    raise invalid_params("the job kept changing while it was being updated; try again", {"id": job_id})


def _update_once(conn: Connection, tasks: JqTaskRepository, job_id: str, params: dict[str, Any]) -> bool:
    """One read-change-write of a one-time job; False when another call changed a field it rewrites
    in between (the script compares them with what was read and writes nothing then)."""
    h = tasks.record(job_id)
    if h is None:
        raise _no_job(job_id)
    old = jq_model.jq_meta(h)
    kind = jq_model.job_type(h)
    current = {**old, **jq_model.type_details(h), **_retries_of(h), "type": kind}
    if params.get("type", kind) != kind:  # a new type: the old type's members do not carry over
        current = {k: v for k, v in current.items() if k not in TYPE_MEMBERS[kind]}
    p = {k: v for k, v in {**current, **params}.items() if k in JOB_MEMBERS and v is not None}
    _check(p)
    schedule = parse_schedule(params.get("schedule"), time.time())
    if schedule.cron is not None:
        raise invalid_params("a one-time job cannot become recurring: add a new job with schedule.cron")
    spec = _spec(conn, p, h["queue"], schedule.run_at)
    fields = {
        "name": spec.name,  # the job that runs: a registered job, horizon.http or horizon.cli
        "payload": spec.payload,
        "tries": spec.tries,
        "timeout": spec.timeout,
        "backoff": json.dumps(list(spec.backoff)),
        **spec.extra,
    }
    try:
        tasks.update(job_id, fields, schedule.run_at, expect={k: h.get(k) for k in fields})
    except Exception as exc:  # redis.ResponseError from the script
        text = str(exc)
        if text.startswith("NOT_FOUND"):
            raise _no_job(job_id) from None
        if text.startswith("CONFLICT"):
            raise invalid_params(text.split(" ", 1)[1]) from None
        if text.startswith("STALE"):
            return False
        raise
    return True


def _update_recurring(conn: Connection, job_id: str, params: dict[str, Any]) -> str:
    """A recurring job's cron and how its runs are tried can change (other members are fixed at creation)."""
    fixed = sorted(set(params) - {"schedule", *jq_recurring.RUN_MEMBERS})
    if fixed:
        raise invalid_params(
            f"{', '.join(fixed)}: only the schedule, timeout, max_retry_count and retry_delay of a recurring "
            "job can be changed", {"members": fixed}
        )
    _check(params)
    cron = None
    if "schedule" in params:
        cron = parse_schedule(params["schedule"], time.time()).cron
        if cron is None:
            raise invalid_params("the schedule of a recurring job must be a cron schedule")
    jq_recurring.update(conn.hz, job_id, cron, jq_recurring.run_options(params, params))
    return job_id


def _retries_of(h: dict[str, str]) -> dict[str, Any]:
    tries = int(h.get("tries") or 1)
    backoff = json.loads(h.get("backoff") or "[0]") or [0]
    return {"timeout": int(float(h.get("timeout") or 60)), "max_retry_count": tries - 1,
            "retry_delay": int(backoff[0])}


def delete_job(conn: Connection, *, id: Any) -> str:  # noqa: A002 (the seed's member name)
    conn.require_session(write="jq.delete_job")
    if not isinstance(id, str):
        raise invalid_params("id must be a job id (string)")
    if jq_recurring.is_recurring(id):
        jq_recurring.delete(conn.hz, id)
        return "OK"
    queues = Queues(conn)
    status = JqTaskRepository(conn.hz).record(id)
    if status is None:
        raise _no_job(id)
    if status.get("status") == "reserved":
        raise invalid_params("the job is running; it can be deleted when it has finished")
    try:
        if status.get("status") in ("pending", "scheduled"):
            queues.repo.cancel(id)
        else:
            queues.repo.delete(id)
    except JobNotFound:
        raise _no_job(id) from None
    except JobConflict as exc:
        raise invalid_params(str(exc)) from None
    return "OK"


def _count(value: Any, default: int, maximum: int, what: str = "count") -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid_params(f"{what} must be a positive integer")
    return min(value, maximum)


class _Refs:
    """Queue references and parent statuses for a set of job records (few round trips)."""

    def __init__(self, conn: Connection) -> None:
        self.queues = {q["name"]: q for q in Queues(conn).all()}
        self.tasks = JqTaskRepository(conn.hz)

    def ref(self, name: str) -> dict[str, Any]:
        q = self.queues.get(name)
        return queue_ref(q) if q else {"id": None, "name": name}

    def status(self, h: dict[str, str]) -> str:
        q = self.queues.get(h.get("queue", ""))
        parent = None
        if h.get("after") and h.get("status") == "scheduled":
            parent = (self.tasks.record(h["after"]) or {}).get("status")
        return jq_model.job_status(h, paused=bool(q and q["suspended"]), parent_status=parent)


def get_jobs(conn: Connection, *, queue: Any = None, count: Any = None) -> list[dict[str, Any]]:
    conn.require_session()
    limit = _count(count, JOBS_DEFAULT, JOBS_MAX)
    refs = _Refs(conn)
    names = [Queues(conn).get(queue)["name"]] if queue is not None else list(refs.queues)
    out: list[dict[str, Any]] = []
    recurring = jq_recurring.in_queues(conn.hz, set(names))
    for name in names:
        out += [jq_recurring.summary(s, refs.ref(name)) for s in recurring if (s.queue or "default") == name]
        ids = refs.tasks.queued_ids(name, limit)
        for h in refs.tasks.records(ids):
            if h:
                out.append(jq_model.job_summary(h, refs.ref(name), refs.status(h)))
    return out


def get_job(conn: Connection, *, id: Any) -> dict[str, Any]:  # noqa: A002
    conn.require_session()
    if not isinstance(id, str):
        raise invalid_params("id must be a job id (string)")
    refs = _Refs(conn)
    if jq_recurring.is_recurring(id):
        found = jq_recurring.find(conn.hz, id)
        if found is None:
            raise _no_job(id)
        return jq_recurring.detail(found[0], refs.ref(found[0].queue or "default"))
    h = refs.tasks.record(id)
    if h is None:
        raise _no_job(id)
    return jq_model.job_detail(h, refs.ref(h.get("queue", "")), refs.status(h))


def register(dispatcher: Dispatcher) -> None:
    for handler in (version, add_job, update_job, delete_job, get_jobs, get_job):
        dispatcher.add(f"jq.{handler.__name__}", handler)

