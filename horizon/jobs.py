"""Job definitions: the ``@job`` decorator, the registry of job names, and dispatch.

@job(queue="emails", tries=3, backoff=[1, 5, 30], tags=lambda user_id, **_: [f"user:{user_id}"])
def send_welcome(user_id: int) -> None: ...

send_welcome.dispatch(42)
send_welcome.options(delay=30, tags=["vip"]).dispatch(42)
send_welcome.dispatch_many([((1,), {}), ((2,), {})])
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from horizon import payload
from horizon.context import current
from horizon.keys import check_queue_name
from horizon.queue import JobSpec, new_job_ids

log = logging.getLogger(__name__)

REGISTRY: dict[str, JobDefinition] = {}

DEFAULT_QUEUE = "default"
DEFAULT_TRIES = 1
DEFAULT_TIMEOUT = 60.0


class UnknownJob(LookupError):
    """No job is registered under that name."""


class FailForGood(Exception):
    """Raised by a job that must not be retried: it fails at once whatever tries are left."""


class OptionError(ValueError):
    """A dispatch option out of its range; the message names the option."""


MAX_TRIES = 1000
MAX_TIMEOUT = 86400.0  # seconds: a day
MIN_TIMEOUT = 0.001
MAX_DELAY = 86400.0 * 366  # seconds
MAX_BACKOFF = 86400.0 * 7  # seconds, per attempt
MAX_BACKOFF_STEPS = 100
LAST_RUN_AT = 253402300800.0  # 10000-01-01 UTC: a later time has no date to show


def _number(name: str, value: Any, low: float, high: float, unit: str = "seconds") -> float:
    def text(x: float) -> str:
        return f"{x:.0f}" if x == int(x) else f"{x:g}"

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionError(f"{name} must be a number of {unit}, got {value!r:.40}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or not low <= number <= high:
        raise OptionError(f"{name} must be from {text(low)} to {text(high)} {unit}, got {value!r:.40}")
    return number


def check_limits(
    *,
    tries: Any = None,
    timeout: Any = None,
    backoff: Any = None,
    delay: Any = None,
    run_at: Any = None,
) -> None:
    """OptionError naming the first option out of range (None: not given). The API and the CLI
    take the same ranges: nothing is pushed that could never run (an infinite delay, a negative
    timeout, tries below 1)."""
    if tries is not None and (isinstance(tries, bool) or not isinstance(tries, int) or not 1 <= tries <= MAX_TRIES):
        raise OptionError(f"tries must be an integer from 1 to {MAX_TRIES}, got {tries!r}")
    if timeout is not None:
        _number("timeout", timeout, MIN_TIMEOUT, MAX_TIMEOUT)
    if backoff is not None:
        steps = [backoff] if isinstance(backoff, (int, float)) else list(backoff)
        if not 1 <= len(steps) <= MAX_BACKOFF_STEPS:
            raise OptionError(f"backoff must be a number or a list of 1 to {MAX_BACKOFF_STEPS} numbers")
        for step in steps:
            _number("backoff", step, 0, MAX_BACKOFF)
    if delay is not None:
        _number("delay", delay, 0, MAX_DELAY)
    if run_at is not None:
        if isinstance(run_at, datetime):
            run_at = run_at.timestamp()
        _number("run_at", run_at, -LAST_RUN_AT, LAST_RUN_AT, "unix seconds")


MAX_TAG_LENGTH = 255  # as the API's (horizon.repositories.tags)


def check_tags(tags: Any) -> None:
    """OptionError unless ``tags`` is a list (or tuple) of non-empty strings of at most
    MAX_TAG_LENGTH characters: a tag is a Redis argument and an index key, never None or a number,
    and a lone string is not a list of its letters."""
    if not isinstance(tags, (list, tuple)):
        raise OptionError(f"tags must be a list of strings, got {type(tags).__name__} {tags!r:.80}")
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise OptionError(f"tags must be non-empty strings, got {tag!r:.80}")
        if len(tag) > MAX_TAG_LENGTH:
            raise OptionError(f"a tag must be at most {MAX_TAG_LENGTH} characters, got {len(tag)}")


def lookup(name: str) -> JobDefinition:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownJob(
            f"unknown job name {name!r}: no function is registered under it "
            "(is its module listed in the config's imports?)"
        ) from None


def _backoff(value: float | Sequence[float] | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return (float(value),)
    return tuple(float(v) for v in value)


def _timestamp(value: float | datetime | None) -> float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    return value.timestamp()


@dataclass(frozen=True, kw_only=True)
class DispatchOptions:
    """Per-call options; None means the job's (or the serving supervisor's) default."""

    queue: str | None = None
    delay: float | None = None
    run_at: float | datetime | None = None
    tries: int | None = None
    timeout: float | None = None
    backoff: float | Sequence[float] | None = None
    tags: Sequence[str] = ()
    after: str | None = None  # parent job id: run only when it completes (horizon.workflows)
    idempotency_key: str | None = None  # a second dispatch with this key returns the first id

    def __post_init__(self) -> None:
        check_limits(tries=self.tries, timeout=self.timeout, backoff=self.backoff, delay=self.delay,
                     run_at=self.run_at)
        check_tags(self.tags)


_NO_OPTIONS = DispatchOptions()


@dataclass(frozen=True)
class JobCall:
    """A job with its arguments (and options), not yet dispatched (for batches and callbacks)."""

    definition: JobDefinition
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: DispatchOptions = _NO_OPTIONS  # fn.options(queue=...).call(...)


class JobDefinition:
    """A registered job function; calling it runs the function directly."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        queue: str | None,
        tries: int | None,
        timeout: float | None,
        backoff: float | Sequence[float] | None,
        tags: Callable[..., Iterable[str]] | Sequence[str] | None,
    ) -> None:
        self.fn, self.name, self.queue = fn, name, None if queue is None else check_queue_name(queue)
        check_limits(tries=tries, timeout=timeout, backoff=backoff)
        self.tries, self.timeout, self.backoff = tries, timeout, _backoff(backoff)
        self.tags = tags
        self.__doc__, self.__wrapped__ = fn.__doc__, fn
        self._plain = BoundJob(self, _NO_OPTIONS)  # kept: it remembers its push fields per configuration

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<job {self.name}>"

    def options(self, **options: Any) -> BoundJob:
        return BoundJob(self, DispatchOptions(**options))

    def dispatch(self, *args: Any, **kwargs: Any) -> str:
        return self._plain.dispatch(*args, **kwargs)

    def dispatch_many(self, calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]) -> list[str]:
        return self._plain.dispatch_many(calls)

    def call(self, *args: Any, **kwargs: Any) -> JobCall:
        return JobCall(self, args, kwargs)

    def auto_tags(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[str]:
        """Tags from the job's hook (a callable of the job's arguments) or its fixed list."""
        if self.tags is None:
            return []
        if callable(self.tags):
            try:
                return [str(t) for t in self.tags(*args, **kwargs)]
            except Exception:
                log.exception("tags hook of job %s failed; dispatching without its tags", self.name)
                return []
        return [str(t) for t in self.tags]


class BoundJob:
    """A job with per-call options: ``fn.options(queue="x", delay=5).dispatch(...)``."""

    def __init__(self, definition: JobDefinition, options: DispatchOptions) -> None:
        if options.queue is not None:
            check_queue_name(options.queue)  # QueueNameError before anything is written
        self.definition, self.opts = definition, options
        self._fields: tuple[Any, tuple[Any, ...]] | None = None  # (horizon, push fields), see fields()

    def options(self, **options: Any) -> BoundJob:
        return BoundJob(self.definition, replace(self.opts, **options))

    def call(self, *args: Any, **kwargs: Any) -> JobCall:
        """This job with these options and arguments, for a batch: ``resize.options(queue="images").call(p)``.
        A batch member or callback has no parent or idempotency key of its own (ValueError)."""
        if self.opts.after or self.opts.idempotency_key is not None:
            raise ValueError("a batch member or callback cannot have 'after' or 'idempotency_key'")
        return JobCall(self.definition, args, kwargs, self.opts)

    def spec(self, args: Sequence[Any], kwargs: Mapping[str, Any], hz: Any) -> JobSpec:
        """The JobSpec to push; raises PayloadError before anything is written."""
        return self._specs([(args, kwargs)], hz)[0]

    def _specs(self, calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]], hz: Any) -> list[JobSpec]:
        """One JobSpec per call: what the options decide is worked out once, then each call's
        payload (PayloadError before anything is written), tags and id."""
        d, o = self.definition, self.opts
        queue = o.queue or d.queue or DEFAULT_QUEUE
        defaults = hz.settings.queue_defaults(queue)
        tries = o.tries or d.tries or (defaults.tries if defaults else DEFAULT_TRIES)
        timeout = o.timeout or d.timeout or (defaults.timeout if defaults else DEFAULT_TIMEOUT)
        backoff = _backoff(o.backoff) or d.backoff or (tuple(defaults.backoff) if defaults else (0.0,))
        available_at = _timestamp(o.run_at)
        if o.delay:
            available_at = time.time() + float(o.delay)
        same = {"name": d.name, "queue": queue, "tries": int(tries), "timeout": float(timeout), "backoff": backoff,
                "available_at": available_at}
        calls = list(calls)
        ids = new_job_ids(len(calls))
        extra_tags, tag_hook = list(dict.fromkeys(o.tags)), d.tags is not None
        specs = []
        for (args, kwargs), job_id in zip(calls, ids, strict=True):
            body = payload.encode(args, kwargs)
            tags = list(dict.fromkeys([*d.auto_tags(args, kwargs), *extra_tags])) if tag_hook else extra_tags
            specs.append(JobSpec(payload=body, tags=tags, id=job_id, **same))
        return specs

    def fields(self, hz: Any) -> tuple[Any, ...]:
        """The push fields (``JobSpec.argv()``) of a job dispatched with these options, its id and
        payload left to fill in: worked out once per configuration (per call with a delay, which
        counts from now). Only for jobs whose tags do not depend on the arguments."""
        cached = self._fields
        if cached is not None and cached[0] is hz:
            return cached[1]
        fields = tuple(self.spec((), {}, hz).argv())
        if not self.opts.delay:
            self._fields = (hz, fields)
        return fields

    def dispatch(self, *args: Any, **kwargs: Any) -> str:
        """Push one job (one Redis round trip); returns its id."""
        hz = current()
        if self.opts.after or self.opts.idempotency_key is not None:
            from horizon import workflows

            spec = self.spec(args, kwargs, hz)
            return workflows.create(hz, spec, idempotency_key=self.opts.idempotency_key, after=self.opts.after)
        if self.definition.tags is not None:  # tags depend on the arguments
            return hz.queue.push([self.spec(args, kwargs, hz)])[0]
        return hz.queue.push_like(self.fields(hz), payload.encode(args, kwargs))

    def dispatch_many(self, calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]) -> list[str]:
        """Push many jobs pipelined; every payload is checked before anything is written."""
        hz = current()
        if self.opts.after or self.opts.idempotency_key is not None:
            calls = list(calls)
            for args, kwargs in calls:  # every payload checked before anything is written
                payload.encode(args, kwargs)
            return [self.dispatch(*args, **kwargs) for args, kwargs in calls]
        if self.definition.tags is not None:  # tags depend on each call's arguments
            return hz.queue.push(self._specs(calls, hz))
        bodies = [payload.encode(args, kwargs) for args, kwargs in calls]  # all checked before any write
        if not bodies:
            return []
        return hz.queue.push_many_like(self.fields(hz), bodies)


def job(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    queue: str | None = None,
    tries: int | None = None,
    timeout: float | None = None,
    backoff: float | Sequence[float] | None = None,
    tags: Callable[..., Iterable[str]] | Sequence[str] | None = None,
) -> Any:
    """Register a function as a job under ``name`` (default ``module.qualname``)."""

    def register(func: Callable[..., Any]) -> JobDefinition:
        job_name = name or f"{func.__module__}.{func.__qualname__}"
        definition = JobDefinition(
            func,
            name=job_name,
            queue=queue,
            tries=tries,
            timeout=timeout,
            backoff=backoff,
            tags=tags,
        )
        REGISTRY[job_name] = definition
        return definition

    return register(fn) if fn is not None else register
