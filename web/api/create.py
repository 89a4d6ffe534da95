"""POST jobs: validate a job request from any language and build what the create script pushes.

Body: ``{name | type: "http"|"cli", args, kwargs, queue, delay | run_at, tries, timeout,
backoff, tags, idempotency_key, after}`` plus the ``http`` / ``cli`` spec for those types.
Named jobs must be registered; ``http``/``cli`` jobs are stored under ``horizon.http`` /
``horizon.cli`` with the type spec as their keyword arguments (their runners are separate).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from horizon import builtin_jobs, jobs, payload, workflows
from horizon.config import Settings
from horizon.keys import QueueNameError
from horizon.queue import JobSpec
from horizon.repositories.tags import MAX_TAG_LENGTH
from web import params
from web.errors import ApiError, bad_request, unprocessable

FIELDS = {
    "name", "type", "args", "kwargs", "queue", "delay", "run_at", "tries", "timeout",
    "backoff", "tags", "idempotency_key", "after", "http", "cli",
}  # fmt: skip
TYPE_NAMES = {"http": "horizon.http", "cli": "horizon.cli"}
HTTP_FIELDS = {"method", "url", "headers", "query", "json", "form", "body", "timeout"}
HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
CLI_FIELDS = {"argv", "env", "cwd"}
MAX_TAGS = 50


@dataclass(frozen=True)
class CreateRequest:
    """A validated POST jobs body."""

    spec: JobSpec
    idempotency_key: str
    body_hash: str
    after: str


def _str_dict(value: Any, field: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise bad_request(f"{field} must be an object of strings")
    return value


def _http_spec(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise bad_request('type "http" needs an "http" object {method, url, headers, query, json|form|body, timeout}')
    params.only(spec, HTTP_FIELDS)
    url = spec.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise bad_request("http.url must be an http:// or https:// URL")
    method = spec.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        raise bad_request(f"http.method must be one of {', '.join(sorted(HTTP_METHODS))}")
    if sum(k in spec for k in ("json", "form", "body")) > 1:
        raise bad_request("http takes at most one of json, form, body")
    for field in ("headers", "query", "form"):
        if field in spec:
            _str_dict(spec[field], f"http.{field}")
    if "body" in spec and not isinstance(spec["body"], str):
        raise bad_request("http.body must be a string")
    params.number({"http.timeout": spec.get("timeout")}, "http.timeout", minimum=0.001, maximum=86400)
    return {**spec, "method": method.upper()}


def _cli_spec(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise bad_request('type "cli" needs a "cli" object {argv, env, cwd}')
    params.only(spec, CLI_FIELDS)
    argv = spec.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise bad_request("cli.argv must be a non-empty list of strings")
    if "env" in spec:
        _str_dict(spec["env"], "cli.env")
    if "cwd" in spec and not isinstance(spec["cwd"], str):
        raise bad_request("cli.cwd must be a string")
    return spec


def _run_at(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise bad_request("run_at must be an ISO 8601 date-time string")
    if isinstance(value, (int, float)):
        return float(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise bad_request(f"run_at must be an ISO 8601 date-time, got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _backoff(value: Any) -> float | list[float] | None:
    if value is None:
        return None
    if isinstance(value, list):
        if not value or len(value) > 100:
            raise bad_request("backoff must be a number or a list of 1 to 100 numbers")
        return [params.number({"backoff": v}, "backoff", maximum=86400 * 7) for v in value]
    return params.number({"backoff": value}, "backoff", maximum=86400 * 7)


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_TAGS or not all(isinstance(t, str) and t for t in value):
        raise bad_request(f"tags must be a list of at most {MAX_TAGS} non-empty strings")
    for tag in value:
        if len(tag) > MAX_TAG_LENGTH:
            raise bad_request(f"tags: a tag must be at most {MAX_TAG_LENGTH} characters, got {len(tag)}")
    return value


def _definition(data: dict[str, Any], settings: Settings) -> tuple[jobs.JobDefinition | None, str, dict | None]:
    """(registered definition or None, job name, type spec or None)."""
    name, kind = data.get("name"), data.get("type")
    if (name is None) == (kind is None):
        raise bad_request('give exactly one of "name" (a registered job) or "type" ("http" or "cli")')
    if kind is not None:
        if kind not in TYPE_NAMES:
            raise bad_request(f'type must be "http" or "cli", got {kind!r}')
        if not getattr(settings.job_types, kind).enabled:
            raise ApiError(403, f"{kind} jobs are disabled (job_types.{kind}.enabled: false)")
        spec = _http_spec(data.get(kind)) if kind == "http" else _cli_spec(data.get(kind))
        try:  # what the worker would refuse for good (a malformed URL or header, a NUL, ...)
            builtin_jobs.check_spec(kind, spec)
        except builtin_jobs.InvalidSpec as exc:
            raise bad_request(str(exc)) from None
        return None, TYPE_NAMES[kind], spec
    if not isinstance(name, str) or not name:
        raise bad_request("name must be a non-empty string")
    builtin = {job_name: kind for kind, job_name in TYPE_NAMES.items()}.get(name)
    if builtin:  # by name it would skip job_types.<type>.enabled and the spec's checks
        raise bad_request(f'{name} is a built-in job type: send {{"type": "{builtin}", "{builtin}": {{...}}}}')
    try:
        return jobs.lookup(name), name, None
    except jobs.UnknownJob as exc:
        raise unprocessable(str(exc)) from None


def parse(data: dict[str, Any], header_key: str | None, settings: Settings, hz: Any) -> CreateRequest:
    """Validate the body; raises ApiError naming the first problem."""
    params.only(data, FIELDS)
    definition, name, type_spec = _definition(data, settings)
    for other in ("http", "cli"):
        if other in data and data.get("type") != other:
            raise bad_request(f'"{other}" is only allowed with type "{other}"')
    args, kwargs = data.get("args", []), data.get("kwargs", {})
    if not isinstance(args, list):
        raise bad_request("args must be a list")
    if not isinstance(kwargs, dict):
        raise bad_request("kwargs must be an object")
    if type_spec is not None and (args or kwargs):
        raise bad_request(f'{data["type"]} jobs take their spec in "{data["type"]}", not args/kwargs')
    if "delay" in data and "run_at" in data:
        raise bad_request("give delay or run_at, not both")
    key = params.string(data, "idempotency_key", max_len=200) or ""
    if header_key is not None:
        if not header_key or len(header_key) > 200:
            raise bad_request("the Idempotency-Key header must be 1 to 200 characters")
        if key and key != header_key:
            raise bad_request("idempotency_key in the body and the Idempotency-Key header differ")
        key = header_key
    options = {
        "queue": params.string(data, "queue", max_len=100),
        "delay": params.number(data, "delay", maximum=86400 * 366),
        "run_at": _run_at(data["run_at"]) if data.get("run_at") is not None else None,
        "tries": params.integer(data, "tries", minimum=1, maximum=1000),
        "timeout": params.number(data, "timeout", minimum=0.001, maximum=86400),
        "backoff": _backoff(data.get("backoff")),
        "tags": _tags(data.get("tags")),
    }
    after = params.string(data, "after", max_len=100) or ""
    if ":" in after:  # no job id holds one (job:<id>:children is another key)
        raise unprocessable(f"after: job {after} does not exist")
    try:
        if definition is not None:
            spec = definition.options(**options).spec(args, kwargs, hz)
        else:
            holder = jobs.JobDefinition(
                lambda **_: None, name=name, queue=None, tries=None, timeout=None, backoff=None, tags=None
            )
            spec = holder.options(**options).spec([], type_spec or {}, hz)
            spec = replace(spec, extra={"type": data["type"]})
    except (payload.PayloadError, QueueNameError, jobs.OptionError) as exc:
        raise bad_request(str(exc)) from None
    # the hash a Python dispatch of the same job computes: the same key names one job either way
    return CreateRequest(spec=spec, idempotency_key=key, body_hash=workflows.body_hash(spec, after), after=after)
