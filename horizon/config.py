"""Configuration loading and validation: ``config.yaml`` -> a frozen :class:`Settings`.

This module is the single place that reads the horizon configuration file (SPEC section 4).
It finds the file (explicit path, ``HORIZON_CONFIG``, else ``./config.yaml``, else built-in
defaults), expands ``${VAR}`` / ``${VAR:-default}`` references from the environment, checks
every key and value strictly (unknown keys, wrong types and bad values are rejected with a
one-line :class:`ConfigError` naming the file, the key path as written and what was expected),
merges the ``defaults`` supervisors with the selected ``environments`` entry, applies the
``HORIZON_REDIS_URL`` override and returns immutable dataclasses that the rest of the project
(library, supervisor, web, CLI) reads. It only depends on PyYAML and the standard library and
never touches Redis.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from horizon.keys import QUEUE_NAME_RULE, QueueNameError, check_queue_name, is_queue_name

# After a timeout, the longest a job that ignores it may run on before its worker exits (seconds);
# less when the reservation margin is short (Settings.timeout_grace).
TIMEOUT_GRACE = 5.0

__all__ = [
    "ConfigError",
    "EmbeddedRedisSettings",
    "RedisSettings",
    "WebAuthSettings",
    "WebSettings",
    "JobTypeSettings",
    "JobTypesSettings",
    "TrimSettings",
    "TrimSnapshotsSettings",
    "MetricsSettings",
    "RateLimitSettings",
    "QueueSettings",
    "ScheduleSettings",
    "SupervisorSettings",
    "Settings",
    "load_config",
    "settings_from_dict",
    "default_settings",
]


# --------------------------------------------------------------------------------------------
# Errors


class ConfigError(Exception):
    """An invalid configuration. ``str(err)`` is one line: ``<file>: <key.path>: <message>``.

    ``message`` says what was expected and, when a value was present, ends with
    ``, got <repr of value>``. ``path`` is empty for file-level problems (missing file, YAML
    syntax error, top level not a mapping); ``file`` is empty when the error was raised with a
    single argument (``ConfigError("message")``).
    """

    def __init__(self, file: str, path: str = "", message: str | None = None) -> None:
        if message is None:  # ConfigError("just a message")
            file, message = "", file
        message = " ".join(message.splitlines())
        super().__init__(file, path, message)
        self.file = file
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return ": ".join(part for part in (self.file, self.path, self.message) if part)


# --------------------------------------------------------------------------------------------
# Settings dataclasses


@dataclass(frozen=True, kw_only=True)
class EmbeddedRedisSettings:
    dir: str = "var/redis"  # absolute after loading (relative paths resolve to the file's folder)
    port: int = 0  # 0 = pick a free port


@dataclass(frozen=True, kw_only=True)
class RedisSettings:
    url: str | None = None  # None = start the embedded redis-server
    embedded: EmbeddedRedisSettings = field(default_factory=EmbeddedRedisSettings)


@dataclass(frozen=True, kw_only=True)
class WebAuthSettings:
    token: str = ""  # empty = no token
    disabled: bool = False  # explicit switch allowing a non-loopback bind without a token


@dataclass(frozen=True, kw_only=True)
class WebSettings:
    bind: str = "127.0.0.1:8080"
    path: str = "/horizon"  # no trailing slash ("" when mounted at "/")
    auth: WebAuthSettings = field(default_factory=WebAuthSettings)
    read_only: bool = False
    workers: int = 2
    timeout: int = 30


@dataclass(frozen=True, kw_only=True)
class JobTypeSettings:
    enabled: bool


@dataclass(frozen=True, kw_only=True)
class JobTypesSettings:
    http: JobTypeSettings = field(default_factory=lambda: JobTypeSettings(enabled=True))
    cli: JobTypeSettings = field(default_factory=lambda: JobTypeSettings(enabled=False))


@dataclass(frozen=True, kw_only=True)
class TrimSettings:
    """Minutes to keep each kind of job record."""

    recent: int = 60
    pending: int = 60
    completed: int = 60
    recent_failed: int = 10080
    failed: int = 10080
    monitored: int = 10080


@dataclass(frozen=True, kw_only=True)
class TrimSnapshotsSettings:
    job: int = 24
    queue: int = 24


@dataclass(frozen=True, kw_only=True)
class MetricsSettings:
    snapshot_interval: int = 300  # seconds
    trim_snapshots: TrimSnapshotsSettings = field(default_factory=TrimSnapshotsSettings)


@dataclass(frozen=True, kw_only=True)
class RateLimitSettings:
    jobs: int  # at most `jobs` starts ...
    per: float  # ... per `per` seconds (sliding window)


@dataclass(frozen=True, kw_only=True)
class QueueSettings:
    rate_limit: RateLimitSettings | None = None


@dataclass(frozen=True, kw_only=True)
class ScheduleSettings:
    name: str
    job: str
    cron: str | None = None  # 5 fields, or 6 with seconds first
    every: float | None = None  # seconds
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    queue: str | None = None
    timezone: str = "UTC"
    missed: str = "skip"  # "skip" | "run_once"
    # how each run is tried; None = the job's own option (or its queue's supervisor default)
    tries: int | None = None
    timeout: float | None = None  # seconds
    backoff: tuple[float, ...] | None = None  # seconds before each retry (the last step repeats)


@dataclass(frozen=True, kw_only=True)
class SupervisorSettings:
    name: str
    connection: str = "redis"
    queue: tuple[str, ...] = ("default",)
    balance: str = "auto"  # "auto" | "simple" | "false"
    auto_scaling_strategy: str = "time"  # "time" | "size"
    min_processes: int = 1
    max_processes: int = 3
    balance_max_shift: int = 1
    balance_cooldown: float = 3
    tries: int = 1
    timeout: float = 60
    backoff: tuple[float, ...] = (0,)
    memory: int = 128  # MB per worker; 0 = unlimited
    max_jobs: int = 0  # 0 = unlimited
    max_time: float = 0  # seconds; 0 = unlimited
    prefetch: int = 1  # jobs a worker reserves per round trip from a queue of short jobs (1 = none)
    nice: int = 0
    sleep: float = 3
    force: bool = False
    rest: float = 0


def _default_supervisors() -> tuple[SupervisorSettings, ...]:
    return (SupervisorSettings(name="supervisor-1"),)


@dataclass(frozen=True, kw_only=True)
class Settings:
    path: str | None = None  # absolute path of the config file; None when not from a file
    base_dir: str = field(default_factory=os.getcwd)  # `imports` resolve relative to it
    environment: str = "production"
    prefix: str = "horizon"
    redis: RedisSettings = field(default_factory=RedisSettings)
    web: WebSettings = field(default_factory=WebSettings)
    imports: tuple[str, ...] = ()
    job_types: JobTypesSettings = field(default_factory=JobTypesSettings)
    waits: Mapping[str, float] = field(
        default_factory=lambda: {"redis:default": 60.0}, hash=False
    )  # "connection:queue" -> seconds; 0 disables the long-wait notice for that queue
    trim: TrimSettings = field(default_factory=TrimSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    silenced: tuple[str, ...] = ()
    memory_limit: int = 64  # MB, master process
    fast_termination: bool = False
    reservation_margin: float = 10  # seconds added to a job's timeout for its reservation
    events_max: int = 10000  # event stream length kept (trimmed every 64 events of a call, MAXLEN ~)
    idempotency_ttl: int = 86400  # seconds
    supervisors: tuple[SupervisorSettings, ...] = field(default_factory=_default_supervisors)
    queues: Mapping[str, QueueSettings] = field(default_factory=dict, hash=False)
    schedule: tuple[ScheduleSettings, ...] = ()

    @property
    def timeout_grace(self) -> float:
        """How long a job that ignores its timeout runs on before its worker exits (the hard
        timeout): TIMEOUT_GRACE, or half the reservation margin when that is less, so that the
        worker is gone before the job's reservation deadline (timeout + margin) puts the job back:
        a job never runs twice at once."""
        return min(TIMEOUT_GRACE, max(self.reservation_margin / 2, 0.01))

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (``dataclasses.replace``; not re-validated)."""
        return dataclasses.replace(self, **changes)

    def supervisor(self, name: str) -> SupervisorSettings:
        """The supervisor called ``name``; ``KeyError`` if there is none."""
        for sup in self.supervisors:
            if sup.name == name:
                return sup
        raise KeyError(name)

    def queue_defaults(self, queue: str) -> SupervisorSettings | None:
        """The first supervisor serving ``queue`` (its tries/timeout/backoff are job defaults)."""
        for sup in self.supervisors:
            if queue in sup.queue:
                return sup
        return None


# --------------------------------------------------------------------------------------------
# Validation helpers

_MISSING: Any = object()


class _Expanded(str):
    """A string that was entirely one ``${...}`` reference: numeric/boolean fields coerce it."""


class _Ctx:
    def __init__(self, file: str) -> None:
        self.file = file

    def error(self, path: str, expected: str, value: Any = _MISSING) -> ConfigError:
        if value is _MISSING:
            return ConfigError(self.file, path, expected)
        return ConfigError(self.file, path, f"{expected}, got {_short_repr(value)}")


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's digit limit for str()
        return f"an integer of {value.bit_length()} bits"
    return text if len(text) <= 80 else text[:77] + "..."


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def _plain(value: Any) -> Any:
    """Deep copy of a JSON-like value with ``_Expanded`` strings turned into plain ``str``."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _mapping(
    ctx: _Ctx, value: Any, path: str, allowed: Sequence[str] | None = None
) -> dict[str, Any]:
    """A mapping with string keys (None = empty); with ``allowed``, unknown keys are errors."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ctx.error(path, "expected a mapping", value)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise ctx.error(_join(path, key), "expected a non-empty string key", key)
        if allowed is not None and key not in allowed:
            raise ctx.error(_join(path, key), f"unknown key; expected one of: {', '.join(allowed)}")
        out[key] = item
    return out


def _int_expectation(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"expected an integer between {minimum} and {maximum}"
    if minimum is not None:
        return f"expected an integer >= {minimum}"
    if maximum is not None:
        return f"expected an integer <= {maximum}"
    return "expected an integer"


MAX_INT = 2**63 - 1  # an integer key's implicit maximum: what Redis and the OS take


def _int(
    ctx: _Ctx, value: Any, path: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    expected = _int_expectation(minimum, maximum)
    number = value
    if isinstance(value, _Expanded):
        try:
            number = int(value.strip(), 10)
        except ValueError:
            raise ctx.error(path, expected, value) from None
    if isinstance(number, bool) or not isinstance(number, int):
        raise ctx.error(path, expected, value)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ctx.error(path, expected, value)
    if number > MAX_INT:
        raise ctx.error(path, f"{expected} (at most {MAX_INT})", value)
    return number


def _number(
    ctx: _Ctx,
    value: Any,
    path: str,
    *,
    minimum: float | None = None,
    exclusive: bool = False,
    maximum: float | None = None,
    expected: str | None = None,
) -> float:
    if expected is None and minimum is None:
        expected = "expected a number"
    elif expected is None:
        expected = f"expected a number {'>' if exclusive else '>='} {minimum:g}"
    number = value
    if isinstance(value, _Expanded):
        try:
            number = float(value.strip())
        except ValueError:
            raise ctx.error(path, expected, value) from None
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise ctx.error(path, expected, value)
    try:
        number = float(number)
    except OverflowError:  # an int beyond any float
        raise ctx.error(path, expected, value) from None
    if not math.isfinite(number):
        raise ctx.error(path, expected, value)
    if minimum is not None and (number <= minimum if exclusive else number < minimum):
        raise ctx.error(path, expected, value)
    if maximum is not None and number > maximum:
        raise ctx.error(path, expected, value)
    return number


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _bool(ctx: _Ctx, value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, _Expanded):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ctx.error(path, "expected a boolean (true or false)", value)


def _str(
    ctx: _Ctx,
    value: Any,
    path: str,
    *,
    allow_empty: bool = False,
    expected: str | None = None,
) -> str:
    if expected is None:
        expected = "expected a string" if allow_empty else "expected a non-empty string"
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise ctx.error(path, expected, value)
    return str(value)


def _optional_str(ctx: _Ctx, value: Any, path: str, *, expected: str | None = None) -> str | None:
    """A string, or None for null / an empty string (e.g. an unset ``${VAR}``)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _str(ctx, value, path, expected=expected)


def _choice(ctx: _Ctx, value: Any, path: str, choices: Sequence[str]) -> str:
    expected = "expected one of: " + ", ".join(choices)
    if not isinstance(value, str) or value.strip() not in choices:
        raise ctx.error(path, expected, value)
    return value.strip()


def _is_list(value: Any) -> bool:
    return isinstance(value, list | tuple)


def _str_list(
    ctx: _Ctx,
    value: Any,
    path: str,
    *,
    item: Callable[[_Ctx, Any, str], str],
    expected: str = "expected a list of strings",
    split_commas: bool = False,
) -> tuple[str, ...]:
    """A list of strings; None = empty; a single string is a 1-item list (or comma-split)."""
    if value is None:
        return ()
    if isinstance(value, str):
        if split_commas:
            parts = [part.strip() for part in value.split(",")]
            if len(parts) > 1 and all(parts):
                return tuple(item(ctx, part, path) for part in parts)
        return (item(ctx, value.strip(), path),)
    if not _is_list(value):
        raise ctx.error(path, expected, value)
    return tuple(item(ctx, entry, _index(path, i)) for i, entry in enumerate(value))


def _no_duplicates(ctx: _Ctx, values: Sequence[str], path: str, what: str) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise ctx.error(_index(path, i), f"duplicate {what}", value)
        seen.add(value)


def _queue_name(ctx: _Ctx, value: Any, path: str) -> str:
    try:
        return str(check_queue_name(value))
    except QueueNameError:
        raise ctx.error(path, f"expected a queue name ({QUEUE_NAME_RULE})", value) from None


def _queues(ctx: _Ctx, value: Any, path: str) -> tuple[str, ...]:
    expected = "expected a non-empty list of queue names"
    if value is None or (_is_list(value) and not value):
        raise ctx.error(path, expected, value)
    names = _str_list(ctx, value, path, item=_queue_name, expected=expected, split_commas=True)
    _no_duplicates(ctx, names, path, "queue name")
    return names


_MODULE_RE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def _module_name(ctx: _Ctx, value: Any, path: str) -> str:
    if not isinstance(value, str) or not _MODULE_RE.fullmatch(value.strip()):
        raise ctx.error(path, "expected a module name such as 'jobs' or 'app.jobs'", value)
    return value.strip()


def _job_name(ctx: _Ctx, value: Any, path: str) -> str:
    return _str(ctx, value, path, expected="expected a job name (a non-empty string)").strip()


def _balance(ctx: _Ctx, value: Any, path: str) -> str:
    if value is False:
        return "false"
    return _choice(ctx, value, path, ("auto", "simple", "false"))


def _backoff(ctx: _Ctx, value: Any, path: str) -> tuple[float, ...]:
    expected = "expected a number >= 0 or a non-empty list of numbers >= 0"
    if _is_list(value):
        if not value:
            raise ctx.error(path, expected, value)
        return tuple(_number(ctx, v, _index(path, i), minimum=0) for i, v in enumerate(value))
    if isinstance(value, bool) or not isinstance(value, int | float | _Expanded):
        raise ctx.error(path, expected, value)
    return (_number(ctx, value, path, minimum=0),)


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def masked_url(url: str) -> str:
    """``url`` with its credentials masked (``user:***@``, or ``***@``): what error messages and
    logs show. Plain text, not a URL parser: a password with a '/' or '#' breaks parsing."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0] if ":" in credentials else ""
    return f"{scheme}://{user + ':' if user else ''}***@{host}"


def _url_problem(url: str) -> str | None:
    """What redis-py would misread in ``url`` (it takes a db of 'x3' as 0, and fails on a bad port
    only when it connects), or None."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    db = query.get("db", [""])[0]
    if parts.scheme == "unix":
        if not parts.path:
            return "a unix:// URL needs the socket's path"
    else:
        try:
            parts.port  # noqa: B018  (raises ValueError for a port out of range or not a number)
        except ValueError:  # (its message may quote a password holding a '/')
            return "its port is not a number from 0 to 65535 (a password with '/', '#' or '@' must be percent-encoded)"
        if not parts.hostname:
            return "it names no host"
        path = parts.path.strip("/")
        if path:
            db = path
    if db and not db.isdigit():
        return f"its database must be a number, got {db!r}"
    return None


def _redis_url(ctx: _Ctx, value: Any, path: str) -> str | None:
    expected = "expected null or a redis://, rediss:// or unix:// URL"
    url = _optional_str(ctx, value, path, expected=expected)
    if url is not None:
        url = url.strip()
        if not url.startswith(_REDIS_SCHEMES) or any(ch.isspace() for ch in url):
            raise ctx.error(path, expected, masked_url(url))  # never the password in a message
        problem = _url_problem(url)
        if problem:
            raise ctx.error(path, f"{expected}: {problem}", masked_url(url))
    return url


def _bind(ctx: _Ctx, value: Any, path: str) -> str:
    expected = 'expected "host:port" with a port between 1 and 65535'
    if not isinstance(value, str):
        raise ctx.error(path, expected, value)
    text = value.strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host or any(ch.isspace() for ch in host) or not port.isdigit():
        raise ctx.error(path, expected, value)
    if not 1 <= int(port) <= 65535:
        raise ctx.error(path, expected, value)
    return text


def _web_path(ctx: _Ctx, value: Any, path: str) -> str:
    expected = "expected a URL path starting with '/'"
    if not isinstance(value, str) or not re.fullmatch(r"/[^\s?#]*", value.strip()):
        raise ctx.error(path, expected, value)
    return value.strip().rstrip("/")


def _prefix(ctx: _Ctx, value: Any, path: str) -> str:
    expected = "expected a non-empty string without whitespace, '{', '}' or a lone surrogate"
    if not isinstance(value, str) or not re.fullmatch(r"[^\s{}\ud800-\udfff]+", value):
        raise ctx.error(path, expected, value)
    return str(value)


def _supervisor_name(ctx: _Ctx, name: str, path: str) -> str:
    if not re.fullmatch(r"[^\s:{}]+", name):
        raise ctx.error(
            path, "expected a supervisor name without whitespace, ':', '{' or '}'", name
        )
    return name


def _json_value(ctx: _Ctx, value: Any, path: str) -> Any:
    """Check that a value can travel in a JSON payload; return a plain copy."""
    if value is None or isinstance(value, bool | int | str):
        return _plain(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ctx.error(path, "expected a JSON-compatible value", value)
        return value
    if _is_list(value):
        return [_json_value(ctx, v, _index(path, i)) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ctx.error(_join(path, key), "expected a string key", key)
            out[str(key)] = _json_value(ctx, item, _join(path, key))
        return out
    raise ctx.error(path, "expected a JSON-compatible value", value)


def _timezone(ctx: _Ctx, value: Any, path: str) -> str:
    expected = "expected an IANA time zone name such as 'UTC' or 'Europe/Paris'"
    name = _str(ctx, value, path, expected=expected).strip()
    if name == "UTC":
        return name
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise ctx.error(path, expected, value) from None
    return name


# --------------------------------------------------------------------------------------------
# ${VAR} expansion

_VAR = r"[A-Za-z_][A-Za-z0-9_]*"
# "$${" escapes a literal "${"; "${" not followed by a valid reference is reported.
_REF_RE = re.compile(r"\$\$\{|\$\{(?:(" + _VAR + r")(?:(:?-)([^}]*))?\})?")
_WHOLE_REF_RE = re.compile(r"\$\{" + _VAR + r"(?::?-[^}]*)?\}")


def _expand_str(ctx: _Ctx, text: str, path: str, environ: Mapping[str, str]) -> str:
    if "${" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, op, default = match.group(1), match.group(2), match.group(3)
        if name is None:
            raise ctx.error(
                path, "malformed ${...} reference; expected ${VAR} or ${VAR:-default}", text
            )
        current = environ.get(name)
        if op == ":-":
            return current if current else default
        if op == "-":
            return default if current is None else current
        return current or ""

    result = _REF_RE.sub(replace, text)
    if _WHOLE_REF_RE.fullmatch(text.strip()):
        return _Expanded(result)
    return result


def _expand(ctx: _Ctx, value: Any, path: str, environ: Mapping[str, str]) -> Any:
    """Expand ``${VAR}`` in every string value (not in keys) of a YAML-like tree."""
    if isinstance(value, str):
        return _expand_str(ctx, value, path, environ)
    if isinstance(value, Mapping):
        return {k: _expand(ctx, v, _join(path, k), environ) for k, v in value.items()}
    if _is_list(value):
        return [_expand(ctx, v, _index(path, i), environ) for i, v in enumerate(value)]
    return value


# --------------------------------------------------------------------------------------------
# Sections

_TOP_KEYS = (
    "prefix",
    "redis",
    "web",
    "imports",
    "job_types",
    "waits",
    "trim",
    "metrics",
    "silenced",
    "memory_limit",
    "fast_termination",
    "reservation_margin",
    "events_max",
    "idempotency_ttl",
    "defaults",
    "environments",
    "queues",
    "schedule",
)

_Parser = Callable[[_Ctx, Any, str], Any]


def _section(
    ctx: _Ctx, data: Mapping[str, Any], path: str, parsers: Mapping[str, _Parser]
) -> dict[str, Any]:
    """Parse the keys present in ``data`` with their parsers; returns kwargs for a dataclass."""
    return {key: parsers[key](ctx, value, _join(path, key)) for key, value in data.items()}


def _min_int(minimum: int, maximum: int | None = None) -> _Parser:
    return lambda ctx, v, p: _int(ctx, v, p, minimum=minimum, maximum=maximum)


def _min_number(minimum: float, exclusive: bool = False) -> _Parser:
    return lambda ctx, v, p: _number(ctx, v, p, minimum=minimum, exclusive=exclusive)


def _job_option(key: str, parser: _Parser) -> _Parser:
    """``parser``, then the range every job option has (``horizon.jobs.check_limits``): a supervisor's
    defaults are the options of the jobs it serves that set none."""

    def parse(ctx: _Ctx, value: Any, path: str) -> Any:
        from horizon.jobs import OptionError, check_limits  # horizon.jobs imports this module

        parsed = parser(ctx, value, path)
        try:
            check_limits(**{key: list(parsed) if key == "backoff" else parsed})
        except OptionError as exc:
            raise ctx.error(path, str(exc)) from None
        return parsed

    return parse


_SUPERVISOR_PARSERS: dict[str, _Parser] = {
    "connection": lambda ctx, v, p: _str(ctx, v, p).strip(),
    "queue": _queues,
    "balance": _balance,
    "auto_scaling_strategy": lambda ctx, v, p: _choice(ctx, v, p, ("time", "size")),
    "min_processes": _min_int(0),
    "max_processes": _min_int(1),
    "balance_max_shift": _min_int(1),
    "balance_cooldown": _min_number(0),
    "tries": _job_option("tries", _min_int(1)),
    "timeout": _job_option("timeout", _min_number(0, exclusive=True)),
    "backoff": _job_option("backoff", _backoff),
    "memory": _min_int(0),
    "max_jobs": _min_int(0),
    "max_time": _min_number(0),
    "prefetch": _min_int(1, 64),
    "nice": _min_int(-20, 19),
    "sleep": _min_number(0),
    "force": _bool,
    "rest": _min_number(0),
}

# key -> (validated value, key path where it was written)
_Fields = dict[str, tuple[Any, str]]


def _supervisor_fields(ctx: _Ctx, value: Any, path: str) -> _Fields:
    data = _mapping(ctx, value, path, tuple(_SUPERVISOR_PARSERS))
    fields: _Fields = {}
    for key, item in data.items():
        key_path = _join(path, key)
        fields[key] = (_SUPERVISOR_PARSERS[key](ctx, item, key_path), key_path)
    return fields


def _supervisor_table(ctx: _Ctx, value: Any, path: str) -> dict[str, _Fields]:
    table = {}
    for name, item in _mapping(ctx, value, path).items():
        sup_path = _join(path, name)
        _supervisor_name(ctx, name, sup_path)
        table[name] = _supervisor_fields(ctx, item, sup_path)
    return table


def _build_supervisor(ctx: _Ctx, name: str, fields: _Fields, path: str) -> SupervisorSettings:
    sup = SupervisorSettings(name=name, **{key: value for key, (value, _) in fields.items()})
    if sup.max_processes < sup.min_processes:
        where = fields["max_processes"][1] if "max_processes" in fields else None
        raise ctx.error(
            where or _join(path, "max_processes"),
            f"expected an integer >= min_processes ({sup.min_processes})",
            sup.max_processes,
        )
    return sup


def _merge_supervisors(
    ctx: _Ctx,
    defaults: dict[str, _Fields],
    overrides: dict[str, _Fields],
    env_path: str | None,
) -> tuple[SupervisorSettings, ...]:
    result = []
    for name, base in defaults.items():
        fields = dict(base)
        path = _join("defaults", name)
        if name in overrides:
            fields.update(overrides[name])
            path = _join(env_path or "", name)
        result.append(_build_supervisor(ctx, name, fields, path))
    for name, fields in overrides.items():
        if name not in defaults:
            result.append(_build_supervisor(ctx, name, fields, _join(env_path or "", name)))
    return tuple(result)


def _supervisors(ctx: _Ctx, data: Mapping[str, Any], env: str) -> tuple[SupervisorSettings, ...]:
    defaults = _supervisor_table(ctx, data.get("defaults"), "defaults")
    environments = _mapping(ctx, data.get("environments"), "environments")
    merged: dict[str, tuple[SupervisorSettings, ...]] = {}
    # Every environment is checked, so a mistake in `local` is caught on a production host too.
    for env_name, env_value in environments.items():
        env_path = _join("environments", env_name)
        overrides = _supervisor_table(ctx, env_value, env_path)
        merged[env_name] = _merge_supervisors(ctx, defaults, overrides, env_path)
    if environments:
        if env not in merged:
            raise ctx.error(
                "environments",
                f"environment {env!r} is not defined; expected one of: {', '.join(merged)}",
            )
        selected = merged[env]
    else:
        selected = _merge_supervisors(ctx, defaults, {}, None)
    return selected or _default_supervisors()


def _redis(ctx: _Ctx, value: Any, base_dir: str) -> RedisSettings:
    data = _mapping(ctx, value, "redis", ("url", "embedded"))
    url = _redis_url(ctx, data.get("url"), "redis.url")
    emb = _mapping(ctx, data.get("embedded"), "redis.embedded", ("dir", "port"))
    directory = _str(ctx, emb.get("dir", "var/redis"), "redis.embedded.dir").strip()
    directory = os.path.normpath(os.path.join(base_dir, os.path.expanduser(directory)))
    port = _int(ctx, emb.get("port", 0), "redis.embedded.port", minimum=0, maximum=65535)
    return RedisSettings(url=url, embedded=EmbeddedRedisSettings(dir=directory, port=port))


def _web(ctx: _Ctx, value: Any) -> WebSettings:
    keys = ("bind", "path", "auth", "read_only", "workers", "timeout")
    data = _mapping(ctx, value, "web", keys)
    auth_data = _mapping(ctx, data.pop("auth", None), "web.auth", ("token", "disabled"))
    token = auth_data.get("token")
    auth = WebAuthSettings(
        token="" if token is None else _str(ctx, token, "web.auth.token", allow_empty=True).strip(),
        disabled=_bool(ctx, auth_data.get("disabled", False), "web.auth.disabled"),
    )
    parsers: dict[str, _Parser] = {
        "bind": _bind,
        "path": _web_path,
        "read_only": _bool,
        "workers": _min_int(1),
        "timeout": _min_int(1),
    }
    return WebSettings(auth=auth, **_section(ctx, data, "web", parsers))


def _job_types(ctx: _Ctx, value: Any) -> JobTypesSettings:
    data = _mapping(ctx, value, "job_types", ("http", "cli"))
    kwargs = {}
    for key, item in data.items():
        path = _join("job_types", key)
        entry = _mapping(ctx, item, path, ("enabled",))
        if "enabled" in entry:
            enabled = _bool(ctx, entry["enabled"], _join(path, "enabled"))
            kwargs[key] = JobTypeSettings(enabled=enabled)
    return JobTypesSettings(**kwargs)


def _waits(ctx: _Ctx, value: Any) -> dict[str, float]:
    waits: dict[str, float] = {}
    for key, item in _mapping(ctx, value, "waits").items():
        path = _join("waits", key)
        full = key if ":" in key else f"redis:{key}"
        connection, _, queue = full.partition(":")
        if not connection or not is_queue_name(queue):
            raise ctx.error(path, 'expected a key "connection:queue" or "queue"', key)
        waits[full] = _number(ctx, item, path, minimum=0)
    return waits


def _trim(ctx: _Ctx, value: Any) -> TrimSettings:
    keys = [f.name for f in dataclasses.fields(TrimSettings)]
    data = _mapping(ctx, value, "trim", keys)
    return TrimSettings(**_section(ctx, data, "trim", dict.fromkeys(keys, _min_int(1))))


def _metrics(ctx: _Ctx, value: Any) -> MetricsSettings:
    data = _mapping(ctx, value, "metrics", ("snapshot_interval", "trim_snapshots"))
    snaps = _mapping(
        ctx, data.pop("trim_snapshots", None), "metrics.trim_snapshots", ("job", "queue")
    )
    trim_snapshots = TrimSnapshotsSettings(
        **_section(ctx, snaps, "metrics.trim_snapshots", dict.fromkeys(snaps, _min_int(1)))
    )
    interval = _section(ctx, data, "metrics", {"snapshot_interval": _min_int(1)})
    return MetricsSettings(trim_snapshots=trim_snapshots, **interval)


def _queue_settings(ctx: _Ctx, value: Any) -> dict[str, QueueSettings]:
    queues = {}
    for name, item in _mapping(ctx, value, "queues").items():
        path = _join("queues", name)
        _queue_name(ctx, name, path)
        data = _mapping(ctx, item, path, ("rate_limit",))
        rate_limit = None
        if data.get("rate_limit") is not None:
            rl_path = _join(path, "rate_limit")
            rl = _mapping(ctx, data["rate_limit"], rl_path, ("jobs", "per"))
            for required in ("jobs", "per"):
                if required not in rl:
                    raise ctx.error(_join(rl_path, required), "required key is missing")
            rate_limit = RateLimitSettings(
                jobs=_int(ctx, rl["jobs"], _join(rl_path, "jobs"), minimum=1),
                per=_number(ctx, rl["per"], _join(rl_path, "per"), minimum=0, exclusive=True),
            )
        queues[name] = QueueSettings(rate_limit=rate_limit)
    return queues


# how a schedule's runs are tried: the dispatch options of the same names (horizon.jobs.check_limits)
SCHEDULE_RUN_OPTIONS = ("tries", "timeout", "backoff")
_SCHEDULE_KEYS = ("name", "job", "cron", "every", "args", "kwargs", "queue", "timezone", "missed",
                  *SCHEDULE_RUN_OPTIONS)
MIN_EVERY, MAX_EVERY = 1, 366 * 86400  # seconds: a schedule's ``every`` bounds
MAX_SCHEDULE_NAME = 200
# a schedule name is a path segment of the API (/schedules/<name>) and part of Redis keys
_SCHEDULE_NAME = re.compile(rf"[^/\x00-\x1f\x7f-\x9f\ud800-\udfff]{{1,{MAX_SCHEDULE_NAME}}}")
SCHEDULE_NAME_RULE = (f"1 to {MAX_SCHEDULE_NAME} characters, none of them '/', a control character "
                      "or a lone surrogate")


def _cron(ctx: _Ctx, value: Any, path: str) -> str | None:
    expected = "expected a cron expression with 5 fields, or 6 with seconds first"
    cron = _optional_str(ctx, value, path, expected=expected)
    if cron is not None:
        cron = " ".join(cron.split())
        if len(cron.split()) not in (5, 6):
            raise ctx.error(path, expected, value)
        from croniter import croniter

        if not croniter.is_valid(cron, second_at_beginning=len(cron.split()) == 6):
            raise ctx.error(path, expected + " (a field is out of range or malformed)", value)
        try:  # valid fields can still name a date that never comes (30 February)
            croniter(cron, 0.0, second_at_beginning=len(cron.split()) == 6).get_next(float)
        except ValueError:
            raise ctx.error(path, expected + " matching some date", value) from None
    return cron


def _schedule_name(ctx: _Ctx, value: Any, path: str) -> str:
    expected = f"expected a schedule name ({SCHEDULE_NAME_RULE})"
    name = value.strip() if isinstance(value, str) else value
    if not isinstance(name, str) or not _SCHEDULE_NAME.fullmatch(name):
        raise ctx.error(path, expected, value)
    return str(name)


def _schedule_entry(ctx: _Ctx, value: Any, path: str) -> ScheduleSettings:
    if not isinstance(value, Mapping):
        raise ctx.error(path, "expected a mapping", value)
    data = _mapping(ctx, value, path, _SCHEDULE_KEYS)
    for required in ("name", "job"):
        if required not in data:
            raise ctx.error(_join(path, required), "required key is missing")
    name = _schedule_name(ctx, data["name"], _join(path, "name"))
    job = _job_name(ctx, data["job"], _join(path, "job"))
    cron = _cron(ctx, data.get("cron"), _join(path, "cron"))
    every = None
    if data.get("every") is not None:
        expected = f"expected a number of seconds from {MIN_EVERY} to {MAX_EVERY} (366 days)"
        every = _number(
            ctx, data["every"], _join(path, "every"), minimum=MIN_EVERY, maximum=MAX_EVERY, expected=expected
        )
    if (cron is None) == (every is None):
        raise ctx.error(path, "expected exactly one of 'cron' or 'every'")
    args_path = _join(path, "args")
    args = data.get("args")
    if args is None:
        args = []
    if not _is_list(args):
        raise ctx.error(args_path, "expected a list", args)
    kwargs_path = _join(path, "kwargs")
    kwargs = data.get("kwargs")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise ctx.error(kwargs_path, "expected a mapping", kwargs)
    queue = None
    if data.get("queue") is not None and str(data["queue"]).strip():
        queue = _queue_name(ctx, data["queue"], _join(path, "queue"))
    return ScheduleSettings(
        name=name,
        job=job,
        cron=cron,
        every=every,
        args=tuple(_json_value(ctx, args, args_path)),
        kwargs=_json_value(ctx, kwargs, kwargs_path),
        queue=queue,
        timezone=_timezone(ctx, data.get("timezone", "UTC"), _join(path, "timezone")),
        missed=_choice(
            ctx, data.get("missed", "skip"), _join(path, "missed"), ("skip", "run_once")
        ),
        **_run_options(ctx, data, path),
    )


def _from_env(value: Any) -> Any:
    """A ``${VAR}`` string as the int or float it spells (else unchanged), as numeric keys take it."""
    if not isinstance(value, _Expanded):
        return value
    for convert in (lambda text: int(text, 10), float):
        try:
            return convert(value.strip())
        except ValueError:
            pass
    return value


def _run_options(ctx: _Ctx, data: Mapping[str, Any], path: str) -> dict[str, Any]:
    """A schedule entry's ``tries``, ``timeout`` and ``backoff`` that are set (absent or null: not)."""
    return {key: _run_option(ctx, key, data[key], _join(path, key))
            for key in SCHEDULE_RUN_OPTIONS if data.get(key) is not None}


def _run_option(ctx: _Ctx, key: str, value: Any, path: str) -> Any:
    """One of them, with the ranges and messages of the dispatch options (``horizon.jobs.check_limits``):
    ``tries`` an int, ``timeout`` a float, ``backoff`` a tuple of floats."""
    from horizon.jobs import OptionError, check_limits  # horizon.jobs imports this module

    if key == "backoff":  # a number or a list of numbers; anything else is a step that is not a number
        value = [_from_env(v) for v in value] if _is_list(value) else [_from_env(value)]
    else:
        value = _from_env(value)
    try:
        check_limits(**{key: value})
    except OptionError as exc:
        raise ctx.error(path, str(exc)) from None
    if key == "backoff":
        return tuple(float(v) for v in value)
    return float(value) if key == "timeout" else value


def _schedule(ctx: _Ctx, value: Any) -> tuple[ScheduleSettings, ...]:
    if value is None:
        return ()
    if not _is_list(value):
        raise ctx.error("schedule", "expected a list of schedule entries", value)
    entries = tuple(_schedule_entry(ctx, v, _index("schedule", i)) for i, v in enumerate(value))
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if entry.name in seen:
            raise ctx.error(
                _join(_index("schedule", i), "name"), "duplicate schedule name", entry.name
            )
        seen.add(entry.name)
    return entries


def _build(
    data: Any,
    *,
    source: str,
    env: str,
    base_dir: str,
    environ: Mapping[str, str],
    path: str | None,
) -> Settings:
    ctx = _Ctx(source)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ctx.error("", "expected a mapping at the top level", data)
    data = _mapping(ctx, _expand(ctx, dict(data), "", environ), "", _TOP_KEYS)
    env = env or "production"

    kwargs: dict[str, Any] = {}
    simple: dict[str, _Parser] = {
        "prefix": _prefix,
        "imports": lambda c, v, p: _str_list(
            c, v, p, item=_module_name, expected="expected a list of module names"
        ),
        "silenced": lambda c, v, p: _str_list(
            c, v, p, item=_job_name, expected="expected a list of job names"
        ),
        "memory_limit": _min_int(1),
        "fast_termination": _bool,
        "reservation_margin": _min_number(0),
        "events_max": _min_int(1),
        "idempotency_ttl": _min_int(1),
    }
    for key, parser in simple.items():
        if key in data:
            kwargs[key] = parser(ctx, data[key], key)
    if "waits" in data:
        kwargs["waits"] = _waits(ctx, data["waits"])
    return Settings(
        path=path,
        base_dir=base_dir,
        environment=env,
        redis=_redis(ctx, data.get("redis"), base_dir),
        web=_web(ctx, data.get("web")),
        job_types=_job_types(ctx, data.get("job_types")),
        trim=_trim(ctx, data.get("trim")),
        metrics=_metrics(ctx, data.get("metrics")),
        supervisors=_supervisors(ctx, data, env),
        queues=_queue_settings(ctx, data.get("queues")),
        schedule=_schedule(ctx, data.get("schedule")),
        **kwargs,
    )


# --------------------------------------------------------------------------------------------
# YAML reading


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys in a mapping (merge keys ``<<`` still work)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable key: let PyYAML report it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise yaml.constructor.ConstructorError(
                None, None, "integer with too many digits", node.start_mark
            ) from None


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _read_yaml(file: str, abspath: str) -> Any:
    try:
        with open(abspath, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ConfigError(file, "", "file not found") from None
    except IsADirectoryError:
        raise ConfigError(file, "", "is a directory, expected a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(file, "", "cannot read file: not valid UTF-8") from None
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read file: {exc.strerror or exc}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError(file, "", f"invalid YAML at {where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(file, "", f"invalid YAML: {exc}") from None


# --------------------------------------------------------------------------------------------
# Public entry points


def settings_from_dict(
    data: Mapping,
    *,
    source: str = "<settings>",
    env: str = "production",
    base_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Validate an already-parsed configuration mapping (same rules as the YAML file).

    ``source`` names the origin in error messages; ``base_dir`` (default: the current
    directory) anchors relative paths; ``environ`` (default ``os.environ``) feeds ``${VAR}``.
    ``HORIZON_REDIS_URL`` is *not* applied here (only :func:`load_config` applies it).
    """
    return _build(
        data,
        source=source,
        env=env,
        base_dir=os.path.abspath(base_dir) if base_dir is not None else os.getcwd(),
        environ=os.environ if environ is None else environ,
        path=None,
    )


def load_config(
    path: str | os.PathLike | None = None,
    env: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Find, read and validate the configuration; raise :class:`ConfigError` when invalid.

    ``path`` None -> ``HORIZON_CONFIG``, else ``./config.yaml`` if present, else defaults.
    ``env`` None -> ``HORIZON_ENV`` or ``"production"``. A non-empty ``HORIZON_REDIS_URL``
    overrides ``redis.url``.
    """
    environ = os.environ if environ is None else environ
    if env is None:
        env = environ.get("HORIZON_ENV") or "production"
    if path is None:
        if environ.get("HORIZON_CONFIG"):
            path = environ["HORIZON_CONFIG"]
        elif os.path.isfile("config.yaml"):
            path = "config.yaml"
    if path is None:
        settings = settings_from_dict({}, source="<defaults>", env=env, environ=environ)
    else:
        file = os.fspath(path)
        abspath = os.path.abspath(os.path.expanduser(file))
        data = _read_yaml(file, abspath)
        settings = _build(
            data,
            source=file,
            env=env,
            base_dir=os.path.dirname(abspath),
            environ=environ,
            path=abspath,
        )
    override = environ.get("HORIZON_REDIS_URL")
    if override and override.strip():
        url = _redis_url(_Ctx("<environment>"), override, "HORIZON_REDIS_URL")
        settings = settings.with_overrides(redis=dataclasses.replace(settings.redis, url=url))
    return settings


def default_settings(**overrides: Any) -> Settings:
    """Built-in defaults (no file, no environment), with some fields replaced."""
    return settings_from_dict({}, environ={}).with_overrides(**overrides)
