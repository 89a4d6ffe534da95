"""Map our job records onto the jq (ZendHQ) job and task objects, field names and status values.

Pure: takes a raw job hash (``horizon.jobs`` fields plus the ``jq`` JSON field written by
``jq.add_job``) and a queue reference ``{id, name}``. A one-time job is its own single task, so
a task id is the job id; the runs of a recurring job are its tasks.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import urlencode

HTTP_JOB = "horizon.http"
CLI_JOB = "horizon.cli"
# exception classes of an attempt that timed out: the worker records "horizon.worker.JobTimeout"
TIMEOUT_CLASSES = ("horizon.worker.JobTimeout", "JobTimeout", "TimeoutError", "Timeout")
FINISHED_STATUSES = {"completed", "failed", "cancelled"}


def _json(value: str | None, default: Any) -> Any:
    if not value:
        return default
    try:
        return json.loads(value)
    except ValueError:
        return default


def _sec(value: str | None) -> int | None:
    return int(float(value)) if value else None


def jq_meta(h: dict[str, str]) -> dict[str, Any]:
    return _json(h.get("jq"), {})


def job_type(h: dict[str, str]) -> str:
    name = h.get("name", "")
    if name == HTTP_JOB:
        return "http"
    if name == CLI_JOB:
        return "cli"
    return "job"


def job_status(h: dict[str, str], *, paused: bool = False, parent_status: str | None = None) -> str:
    """Our status as a jq job status value."""
    status = h.get("status", "")
    if status == "pending":
        return "suspended" if paused else "scheduled"
    if status == "scheduled":
        return "waiting-predecessor" if h.get("after") and parent_status != "completed" else "scheduled"
    if status == "reserved":
        return "running"
    if status == "completed":
        return "completed"
    if status == "failed":
        exc = _json(h.get("exception"), {})
        return "timeout" if exc.get("class") in TIMEOUT_CLASSES else "failed-worker-error"
    if status == "cancelled":
        return "deleted"
    return "unknown"


def _payload(h: dict[str, str]) -> tuple[list[Any], dict[str, Any]]:
    body = _json(h.get("payload"), {})
    return body.get("args", []), body.get("kwargs", {})


def _retries(h: dict[str, str]) -> dict[str, Any]:
    tries = int(h.get("tries") or 1)
    backoff = _json(h.get("backoff"), [0])
    return {
        "timeout": int(float(h.get("timeout") or 0)),
        "max_retry_count": max(tries - 1, 0),
        "retry_delay": int(backoff[0]) if backoff else 0,
    }


def type_details(h: dict[str, str], *, encoded: bool = False) -> dict[str, Any]:
    """The http / cli / named-job members of a job (task members are encoded strings)."""
    meta, (args, kwargs), kind = jq_meta(h), _payload(h), job_type(h)
    if kind == "http":
        out: dict[str, Any] = {"url": kwargs.get("url"), "http_method": kwargs.get("method", "GET")}
        headers, query = kwargs.get("headers") or {}, kwargs.get("query") or {}
        if encoded:
            if query:
                out["http_query_args"] = urlencode(query)
            if headers:
                out["http_headers"] = "\r\n".join(f"{k}: {v}" for k, v in headers.items())
            body = kwargs.get("body")
            if "json" in kwargs:
                body = json.dumps(kwargs["json"], separators=(",", ":"))
            elif "form" in kwargs:
                body = urlencode(kwargs["form"])
            if body is not None:
                out["http_body"] = body
            return out
        if headers:
            out["http_headers"] = headers
        if query:
            out["http_query_args"] = query
        for key in ("http_content_type", "validate_ssl"):
            if key in meta:
                out[key] = meta[key]
        if "http_raw_body" in meta:
            out["http_raw_body"] = meta["http_raw_body"]
        elif "http_body_vars" in meta:
            out["http_body_vars"] = meta["http_body_vars"]
        return out
    if kind == "cli":
        out = {"script": meta.get("script") or " ".join(kwargs.get("argv", []))}
        env = kwargs.get("env") or {}
        if env:
            out["env"] = "\n".join(f"{k}={v}" for k, v in env.items()) if encoded else env
        return out
    return {"job": h.get("name"), "args": args, "kwargs": kwargs}


def _unix_time(h: dict[str, str], meta: dict[str, Any]) -> int | None:
    """When a one-time job was scheduled for, in unix seconds (a get_job schedule holds only
    unix_time or cron): its due time, else a unix_time it was given (a time already past)."""
    if h.get("available_at"):
        return _sec(h["available_at"])
    given = meta.get("schedule")
    value = given.get("unix_time") if isinstance(given, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return int(value)
    return None


def job_summary(h: dict[str, str], queue: dict[str, Any], status: str) -> dict[str, Any]:
    """The short job object of jq.get_jobs and jq.job_status."""
    meta = jq_meta(h)
    out: dict[str, Any] = {
        "id": h.get("id"),
        "type": meta.get("type") or job_type(h),
        "queue": queue,
        "priority": meta.get("priority", "normal"),
        "scheduled_time_sec": _sec(h.get("available_at")) or _sec(h.get("pushed_at")),
        "status": status,
    }
    if meta.get("name"):
        out["name"] = meta["name"]
    if h.get("schedule"):
        out["recurring"] = True
    return out


def job_detail(h: dict[str, str], queue: dict[str, Any], status: str) -> dict[str, Any]:
    """The full job object of jq.get_job."""
    meta = jq_meta(h)
    out = job_summary(h, queue, status)
    out.update(_retries(h))
    out["creation_time_sec"] = _sec(h.get("pushed_at"))
    out["persist"] = bool(meta.get("persist", False))
    out["persist_output"] = meta.get("persist_output", "yes")
    attempts = int(h.get("attempts") or 0)
    if attempts > 1:
        out["retry_count"] = attempts - 1
    if h.get("after"):
        out["predecessor"] = h["after"]
    schedule = _unix_time(h, meta)
    if schedule is not None:
        out["schedule"] = {"unix_time": schedule}
    out.update(type_details(h))
    return out


def task_object(h: dict[str, str], queue: dict[str, Any], *, full: bool = False) -> dict[str, Any]:
    """A finished run: the task object of jq.get_job_history, jq.get_task and jq.task_finished."""
    meta = jq_meta(h)
    out: dict[str, Any] = {
        "id": h.get("id"),
        "job_id": "schedule:" + h["schedule"] if h.get("schedule") else h.get("id"),
        "type": meta.get("type") or job_type(h),
        "queue": queue,
        "status": job_status(h),
    }
    if meta.get("name"):
        out["name"] = meta["name"]
    if h.get("schedule"):
        out["recurring"] = True
    attempts = int(h.get("attempts") or 0)
    if attempts > 1:
        out["retry_count"] = attempts - 1
    done = _sec(h.get("completed_at")) or _sec(h.get("failed_at")) or _sec(h.get("cancelled_at"))
    if done is not None:
        out["completion_time_sec"] = done
    if h.get("reserved_at"):
        out["start_time_sec"] = _sec(h["reserved_at"])
    if full:
        out["creation_time_sec"] = _sec(h.get("pushed_at"))
        output = h.get("output") or h.get("exception")
        if output:
            out["output"] = output
        out.update(type_details(h, encoded=True))
    return out
