"""The OpenAPI 3.1 document of the API, as served (``GET <path>/api/openapi.json``).

Every route and schema is here; ``tests/test_api_schema.py`` runs schemathesis against it, so a
route that answers something this document does not describe fails the suite.
"""

from __future__ import annotations

import copy
from typing import Any

from horizon.config import SCHEDULE_RUN_OPTIONS

NUM = {"type": "number"}
INT = {"type": "integer", "minimum": 0}
STR = {"type": "string"}
NULLABLE_NUM = {"type": ["number", "null"]}
NULLABLE_STR = {"type": ["string", "null"]}
OBJECT = {"type": "object"}
ARRAY = {"type": "array", "items": {"type": "object"}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR = {"default": _json(_ref("Error"), "An error (envelope)")}
NO_CONTENT = {"description": "Done; no content"}

COMMON_JOB_FIELDS: dict[str, Any] = {
    "queue": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": r"^(?!\.{1,2}$)[^\s,/:{}]+$",
              "description": "a queue name: no whitespace, ',', '/', ':', '{' or '}'"},
    "delay": {"type": "number", "minimum": 0, "maximum": 31622400},
    "run_at": {"type": "string", "format": "date-time"},
    "tries": {"type": "integer", "minimum": 1, "maximum": 1000},
    "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
    "backoff": {
        "oneOf": [
            {"type": "number", "minimum": 0, "maximum": 604800},
            {"type": "array", "minItems": 1, "maxItems": 100,
             "items": {"type": "number", "minimum": 0, "maximum": 604800}},
        ]
    },
    "tags": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 50},
    "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 200},
    "after": {"type": "string", "minLength": 1, "maxLength": 100, "description": "parent job id"},
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {
                        "enum": [
                            "BAD_REQUEST", "NOT_FOUND", "CONFLICT", "UNPROCESSABLE", "UNAUTHORIZED",
                            "FORBIDDEN", "METHOD_NOT_ALLOWED", "UNAVAILABLE", "INTERNAL",
                        ]  # fmt: skip
                    },
                    "message": STR,
                },
            }
        },
    },
    "Stats": {
        "type": "object",
        "required": [
            "jobsPerMinute", "processes", "queueWithMaxRuntime", "queueWithMaxThroughput", "recentJobs",
            "recentlyFailed", "failedJobs", "pausedMasters", "periods", "status", "wait",
        ],  # fmt: skip
        "properties": {
            "jobsPerMinute": NUM,
            "processes": INT,
            "queueWithMaxRuntime": NULLABLE_STR,
            "queueWithMaxThroughput": NULLABLE_STR,
            "recentJobs": INT,
            "recentlyFailed": INT,
            "failedJobs": INT,
            "pausedMasters": INT,
            "periods": {
                "type": "object",
                "required": ["recentJobs", "failedJobs"],
                "properties": {"recentJobs": INT, "failedJobs": INT},
            },
            "status": {"enum": ["running", "paused", "inactive"]},
            "wait": {"type": "object", "additionalProperties": NUM},
        },
    },
    "WorkloadQueue": {
        "type": "object",
        "required": ["name", "length", "wait", "processes", "split_queues"],
        "properties": {
            "name": STR,
            "length": INT,
            "wait": NUM,
            "processes": INT,
            "split_queues": {"type": ["array", "null"], "items": {"type": "object"}},
        },
    },
    "Supervisor": {
        "type": "object",
        "required": ["name", "master", "pid", "status", "processes", "options"],
        "properties": {
            "name": STR,
            "master": STR,
            "pid": {"type": ["integer", "string"]},
            "status": STR,
            "processes": {"type": "object", "additionalProperties": INT},
            "options": {"type": "object"},
            "workers": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Master": {
        "type": "object",
        "required": ["name", "status", "supervisors"],
        "properties": {
            "name": STR,
            "environment": NULLABLE_STR,
            "pid": {"type": ["integer", "string"]},
            "status": STR,
            "boot_id": {"type": "string", "description": "the machine's boot (Linux), with the name's host: which "
                        "master's workers a master on the same machine may judge dead"},
            "pid_namespace": {"type": "string", "description": "the master's PID namespace (Linux), with its "
                              "boot_id: only a master in the same namespace judges its workers dead"},
            "supervisors": {"type": "array", "items": _ref("Supervisor")},
        },
    },
    "MonitoredTag": {
        "type": "object",
        "required": ["tag", "count"],
        "properties": {"tag": STR, "count": INT},
    },
    "Snapshot": {
        "type": "object",
        "required": ["throughput", "runtime", "time"],
        "properties": {"throughput": NUM, "runtime": NUM, "time": NUM, "wait": NUM},
    },
    "Percentiles": {
        "type": "object",
        "required": ["p50", "p95", "p99"],
        "properties": {"p50": NUM, "p95": NUM, "p99": NUM},
    },
    "RetriedBy": {
        "type": "object",
        "required": ["id", "status", "retried_at"],
        "properties": {"id": STR, "status": STR, "retried_at": NUM},
    },
    "Job": {
        "type": "object",
        "required": ["id", "queue", "name", "status", "payload", "tags", "attempts", "pushed_at", "index"],
        "properties": {
            "id": STR,
            "connection": STR,
            "queue": STR,
            "name": STR,
            "status": {"enum": ["pending", "scheduled", "reserved", "completed", "failed", "cancelled"]},
            "payload": {},
            "tags": {"type": "array", "items": STR},
            "attempts": INT,
            "exception": {},
            "context": {},
            "pushed_at": NULLABLE_NUM,
            "reserved_at": NULLABLE_NUM,
            "worker": NULLABLE_STR,
            "completed_at": NULLABLE_NUM,
            "failed_at": NULLABLE_NUM,
            "retried_by": {"type": "array", "items": _ref("RetriedBy")},
            "retry_of": NULLABLE_STR,
            "progress": NULLABLE_NUM,
            "index": NULLABLE_NUM,
        },
    },
    "BatchCreate": {
        "type": "object",
        "required": ["jobs"],
        "properties": {
            "jobs": {"type": "array", "items": {"type": "object"}},
            "name": STR,
            "then": {"type": "object"},
            "catch": {"type": "object"},
            "finally": {"type": "object"},
        },
    },
    "Schedule": {
        "type": "object",
        "required": ["name", "job"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^[^/\x00-\x1f\x7f-\x9f]+$",
                     "description": "no '/', control character or lone surrogate"},
            "job": STR,
            "cron": {"type": "string", "description": "5 fields, or 6 with seconds first"},
            "every": {"type": "number", "minimum": 1, "maximum": 31622400, "description": "seconds (at most 366 days)"},
            "args": {"type": "array"},
            "kwargs": {"type": "object"},
            "queue": STR,
            "timezone": STR,
            "missed": {"enum": ["skip", "run_once"]},
            **{key: COMMON_JOB_FIELDS[key] for key in SCHEDULE_RUN_OPTIONS},
        },
    },
    "ScheduleInfo": {
        "description": "A schedule as listed: its fields (null when not set), its source and times",
        "type": "object",
        "required": ["name", "job", "cron", "every", "args", "kwargs", "queue", "timezone", "missed",
                     "tries", "timeout", "backoff", "source", "last_considered", "next_run_at"],
        "additionalProperties": False,
        "properties": {
            "name": STR,
            "job": STR,
            "cron": NULLABLE_STR,
            "every": NULLABLE_NUM,
            "args": {"type": "array"},
            "kwargs": {"type": "object"},
            "queue": NULLABLE_STR,
            "timezone": STR,
            "missed": {"enum": ["skip", "run_once"]},
            "tries": {"type": ["integer", "null"], "minimum": 1, "maximum": 1000},
            "timeout": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 86400},
            "backoff": {"type": ["array", "null"], "minItems": 1, "maxItems": 100,
                        "items": {"type": "number", "minimum": 0, "maximum": 604800}},
            "source": {"enum": ["config", "api"]},
            "last_considered": {"type": ["number", "null"], "description": "when a master last checked it"},
            "next_run_at": {"type": "number", "description": "unix seconds"},
        },
    },
    "JobPage": {
        "type": "object",
        "required": ["jobs", "total"],
        "properties": {"jobs": {"type": "array", "items": _ref("Job")}, "total": INT},
    },
    "HttpSpec": {
        "type": "object",
        "required": ["url"],
        "additionalProperties": False,
        "properties": {
            "method": {"enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]},
            "url": {"type": "string", "pattern": "^https?://"},
            "headers": {"type": "object", "additionalProperties": STR},
            "query": {"type": "object", "additionalProperties": STR},
            "json": {},
            "form": {"type": "object", "additionalProperties": STR},
            "body": STR,
            "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
        },
    },
    "CliSpec": {
        "type": "object",
        "required": ["argv"],
        "additionalProperties": False,
        "properties": {
            "argv": {"type": "array", "minItems": 1, "items": STR},
            "env": {"type": "object", "additionalProperties": STR},
            "cwd": STR,
        },
    },
    "NewJob": {
        "description": 'A registered job by "name" (with args/kwargs), or type "http"/"cli" with its spec. '
        "A name that is not registered, or an unknown parent in after, is 422.",
        "oneOf": [
            {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "args": {"type": "array"},
                    "kwargs": {"type": "object"},
                    **COMMON_JOB_FIELDS,
                },
            },
            {
                "type": "object",
                "required": ["type", "http"],
                "additionalProperties": False,
                "properties": {"type": {"const": "http"}, "http": _ref("HttpSpec"), **COMMON_JOB_FIELDS},
            },
            {
                "type": "object",
                "required": ["type", "cli"],
                "additionalProperties": False,
                "properties": {"type": {"const": "cli"}, "cli": _ref("CliSpec"), **COMMON_JOB_FIELDS},
            },
        ],
        "not": {"required": ["delay", "run_at"]},
    },
    "Queue": {
        "type": "object",
        "required": ["name", "paused", "pending", "scheduled", "reserved", "completed", "failed", "processes", "wait"],
        "properties": {
            "name": STR,
            "paused": {"type": "boolean"},
            "pending": INT,
            "scheduled": INT,
            "reserved": INT,
            "completed": INT,
            "failed": INT,
            "processes": INT,
            "wait": NUM,
        },
    },
    "Clean": {
        "type": "object",
        "required": ["state"],
        "additionalProperties": False,
        "properties": {
            "state": {"enum": ["completed", "failed"]},
            "grace": {"type": "number", "minimum": 0, "description": "seconds"},
        },
    },
}

PAGING = [
    {
        "name": "starting_at",
        "in": "query",
        "description": "index of the last job already shown (-1 or absent: first page)",
        "schema": {"type": "number"},
    },
    {
        "name": "limit",
        "in": "query",
        "description": "page size (default 50, clamped to 1..200)",
        "schema": {"type": "integer"},
    },
]


def _path_param(name: str, description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1},
            "description": description}  # fmt: skip


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    op = {"summary": summary, "responses": {**responses, **ERROR}}
    op.update(extra)
    return op


LIST_NAMES = ("recent", "pending", "completed", "silenced", "failed")
JOB_ID = [
    {
        "name": "job_id",
        "in": "path",
        "required": True,
        "description": "job id (the list names recent, pending, completed, silenced, failed are routes of their own)",
        "schema": {"type": "string", "minLength": 1, "not": {"enum": list(LIST_NAMES)}},
    }
]
QUEUE = [_path_param("name", "queue name")]
QUEUE_OK = {"200": _json(_ref("Queue"), "The queue after the action")}
SSE = {
    "200": {
        "description": "Server-Sent Events: id (stream id), event (name), data (JSON); resumable with Last-Event-ID",
        "content": {
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "description": "one event; data is JSON {job_id, queue, name, status, time, ...}",
                    "properties": {"id": STR, "event": STR, "data": STR, "retry": INT},
                }
            }
        },
    }
}
LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "schema": {"type": "string", "pattern": "^[0-9]+-[0-9]+$"},
    "description": "resume after this stream id",
}
JOB_LIST = {
    name: {"get": _op(f"{name.capitalize()} jobs, newest first", {"200": _json(_ref("JobPage"))}, parameters=PAGING)}
    for name in ("recent", "pending", "completed", "silenced")
}


def _action(summary: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {"parameters": QUEUE}
    if body is not None:
        extra["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return {"post": _op(summary, QUEUE_OK, **extra)}


PATHS: dict[str, Any] = {
    "/stats": {"get": _op("Key figures for the dashboard", {"200": _json(_ref("Stats"))})},
    "/workload": {
        "get": _op("Queue workload, sorted by name", {"200": _json({"type": "array", "items": _ref("WorkloadQueue")})})
    },
    "/masters": {
        "get": _op(
            "Master supervisors keyed by name",
            {"200": _json({"type": "object", "additionalProperties": _ref("Master")})},
        )
    },
    "/monitoring": {
        "get": _op(
            "Monitored tags and their job counts", {"200": _json({"type": "array", "items": _ref("MonitoredTag")})}
        ),
        "post": _op(
            "Start monitoring a tag",
            {"201": _json({"type": "object", "required": ["tag"], "properties": {"tag": STR}}, "Monitoring")},
            requestBody={
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["tag"],
                            "additionalProperties": False,
                            "properties": {"tag": {"type": "string", "minLength": 1, "maxLength": 255}},
                        }
                    }
                },
            },
        ),
    },
    "/monitoring/{tag}": {
        "get": _op(
            "Jobs carrying a tag (an unmonitored tag has none)",
            {"200": _json(_ref("JobPage"))},
            parameters=[_path_param("tag"), *PAGING],
        ),
        "delete": _op("Stop monitoring a tag", {"204": NO_CONTENT}, parameters=[_path_param("tag")]),
    },
    "/metrics/jobs": {"get": _op("Job names with metrics (completed or failed at least once)",
                                 {"200": _json({"type": "array", "items": STR})})},
    "/metrics/jobs/{name}": {
        "get": _op(
            "A job's snapshots, oldest first",
            {"200": _json({"type": "array", "items": _ref("Snapshot")})},
            parameters=[_path_param("name")],
        )
    },
    "/metrics/percentiles/jobs/{name}": {
        "get": _op("Runtime percentiles (ms) of a job name", {"200": _json(_ref("Percentiles"))},
                   parameters=[_path_param("name")])  # fmt: skip
    },
    "/metrics/percentiles/queues/{name}": {
        "get": _op("Runtime percentiles (ms) of a queue", {"200": _json(_ref("Percentiles"))},
                   parameters=[_path_param("name")])  # fmt: skip
    },
    "/metrics/queues": {"get": _op("Measured queue names", {"200": _json({"type": "array", "items": STR})})},
    "/metrics/queues/{name}": {
        "get": _op(
            "A queue's snapshots, oldest first",
            {"200": _json({"type": "array", "items": _ref("Snapshot")})},
            parameters=[_path_param("name")],
        )
    },
    **{f"/jobs/{name}": path for name, path in JOB_LIST.items()},
    "/jobs/failed": {
        "get": _op(
            "Failed jobs, newest first (optionally those carrying a tag)",
            {"200": _json(_ref("JobPage"))},
            parameters=[*PAGING, {"name": "tag", "in": "query", "schema": STR}],
        )
    },
    "/jobs/failed/{job_id}": {"get": _op("One failed job", {"200": _json(_ref("Job"))}, parameters=JOB_ID)},
    "/jobs/retry/{job_id}": {
        "post": _op("Retry a failed job: dispatch a copy", {"201": _json(_ref("Job"), "The copy")}, parameters=JOB_ID)
    },
    "/jobs": {
        "post": _op(
            "Create a job (a registered name, or an http/cli job)",
            {
                "201": _json(_ref("Job"), "Created (Location: the job's URL)"),
                "200": _json(_ref("Job"), "Idempotent replay: the original job"),
            },
            parameters=[{"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 200}}],
            requestBody={"required": True, "content": {"application/json": {"schema": _ref("NewJob")}}},
        )
    },
    "/jobs/{job_id}": {
        "get": _op("One job", {"200": _json(_ref("Job"))}, parameters=JOB_ID),
        "delete": _op("Delete a job", {"204": NO_CONTENT}, parameters=JOB_ID),
    },
    "/jobs/{job_id}/cancel": {
        "post": _op("Cancel a pending or scheduled job (and its waiting children)", {"200": _json(_ref("Job"))},
                    parameters=JOB_ID)  # fmt: skip
    },
    "/queues": {"get": _op("Every queue", {"200": _json({"type": "array", "items": _ref("Queue")})})},
    "/queues/{name}": {"get": _op("One queue", {"200": _json(_ref("Queue"))}, parameters=QUEUE)},
    "/queues/{name}/pause": _action("Pause a queue on every host"),
    "/queues/{name}/resume": _action("Resume a paused queue"),
    "/queues/{name}/drain": _action("Remove every pending and scheduled job"),
    "/queues/{name}/promote": _action("Make every scheduled (delayed) job pending now"),
    "/queues/{name}/clean": _action("Remove completed or failed jobs older than grace seconds", _ref("Clean")),
    "/queues/{name}/retry": _action("Retry every failed job of the queue"),
    "/events": {
        "get": _op(
            "Event stream of every queue",
            SSE,
            parameters=[LAST_EVENT_ID, {"name": "queue", "in": "query", "schema": STR}],
        )
    },
    "/queues/{name}/events": {"get": _op("Event stream of one queue", SSE, parameters=[*QUEUE, LAST_EVENT_ID])},
    "/batches": {
        "get": _op(
            "Batches, newest first (before_id: the last batch shown)",
            {"200": _json({"type": "object", "required": ["batches"], "properties": {"batches": ARRAY}})},
            parameters=[{"name": "before_id", "in": "query", "schema": STR}],
        ),
        "post": _op(
            "Dispatch jobs as a batch with optional then/catch/finally jobs",
            {"201": _json(OBJECT, "The batch")},
            requestBody={"required": True, "content": {"application/json": {"schema": _ref("BatchCreate")}}},
        ),
    },
    "/batches/{batch_id}": {
        "get": _op("One batch and its failed jobs", {"200": _json(OBJECT)}, parameters=[_path_param("batch_id")])
    },
    "/batches/retry/{batch_id}": {
        "post": _op("Retry a batch's failed jobs", {"200": _json(OBJECT)}, parameters=[_path_param("batch_id")])
    },
    "/schedules": {
        "get": _op("Every recurring schedule (config and API)",
                   {"200": _json({"type": "array", "items": _ref("ScheduleInfo")})}),
        "post": _op(
            "Create a recurring schedule",
            {"201": _json(_ref("ScheduleInfo"), "The schedule")},
            requestBody={"required": True, "content": {"application/json": {"schema": _ref("Schedule")}}},
        ),
    },
    "/schedules/{name}": {
        "get": _op("One schedule", {"200": _json(_ref("ScheduleInfo"))}, parameters=[_path_param("name")]),
        "delete": _op("Delete an API-created schedule", {"204": NO_CONTENT}, parameters=[_path_param("name")]),
    },
    "/openapi.json": {
        "get": _op("This document", {"200": _json({"type": "object", "required": ["openapi", "paths"]})})
    },
}


def document(server: str = "/horizon/api") -> dict[str, Any]:
    """The OpenAPI document with ``server`` as the API's base URL."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "horizon API",
            "version": "1.0.0",
            "description": "Horizon-compatible job queue API with extensions. Errors use the envelope "
            '{"error": {"code", "message"}}. With web.auth.token set, send Authorization: Bearer <token>.',
        },
        "servers": [{"url": server}],
        "security": [{"bearer": []}, {}],
        "paths": copy.deepcopy(PATHS),
        "components": {
            "schemas": copy.deepcopy(SCHEMAS),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
