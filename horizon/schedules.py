"""Recurring schedules: cron (5 fields, or 6 with seconds first) or ``every`` N seconds.

Schedules come from the config's ``schedule:`` list and from the API (stored in Redis by
:class:`ScheduleRepository`). A schedule's ``tries``, ``timeout`` and ``backoff``, where set,
override the job's own options for each run (:func:`job_spec`). Every master calls
:func:`fire_due` about once a second; each occurrence is dispatched by exactly one host: whoever
takes the Redis lock for (schedule, fire time) with ``SET NX PX``.

A per-schedule marker holds the last time a master considered the schedule. When a check
finds ``now - marker <= ON_TIME``, masters kept checking (1 s checks, a slow check, a reload
gap) and every occurrence in (marker, now] is on time and fires. When ``now - marker >
ON_TIME``, no master ran for that long (an outage): occurrences in (marker, now - CHECK_SLACK]
are missed and follow the schedule's ``missed`` policy, ``skip`` (none of them fires) or
``run_once`` (exactly one run, for the latest of them, besides any on-time occurrence); those
in (now - CHECK_SLACK, now] are on time. The cost of a check does not grow with the outage.
At most MAX_RUNS on-time occurrences fire per check; the marker then moves only to the last
of them, so the rest fire at the next check. A cron with a fixed hour (its hour field does not
start with ``*``) fires once at a wall-clock time repeated when DST ends (the first instance);
one with ``*`` in the hour field fires at both (as Vixie cron does).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo

from croniter import croniter

from horizon.config import SCHEDULE_RUN_OPTIONS, ConfigError, ScheduleSettings

if TYPE_CHECKING:
    from horizon.context import Horizon
    from horizon.queue import JobSpec

log = logging.getLogger(__name__)

ON_TIME = 5.0  # seconds: a marker older than this means no master checked (an outage)
CHECK_SLACK = 1.0  # seconds: after an outage, occurrences this recent are still on time (the check period)
MAX_CHECK_INTERVAL = ON_TIME - CHECK_SLACK  # longest period between checks that loses nothing, even late
MAX_RUNS = 10  # most on-time occurrences of one schedule dispatched by one call
LOCK_MS = 120_000  # a fire-time lock outlives any host's view of that occurrence


class ScheduleError(ValueError):
    """An invalid schedule; the message names the field and what was expected."""


def parse(data: Any) -> ScheduleSettings:
    """A schedule from a JSON object shaped like a config ``schedule`` entry."""
    from horizon.config import _Ctx, _schedule_entry

    try:
        schedule = _schedule_entry(_Ctx(""), data, "")
    except ConfigError as exc:
        raise ScheduleError(str(exc)) from None
    validate(schedule)
    return schedule


def validate(schedule: ScheduleSettings) -> None:
    """Check the cron expression (field ranges and names), not only its field count."""
    if schedule.cron is not None:
        try:
            next(occurrences(schedule, time.time()))
        except (ValueError, KeyError, StopIteration) as exc:
            raise ScheduleError(f"cron: invalid expression {schedule.cron!r}: {exc}") from None


def to_dict(schedule: ScheduleSettings) -> dict[str, Any]:
    """Every field, JSON-ready (``tries``, ``timeout`` and ``backoff`` are null when not set)."""
    data = asdict(schedule)
    data["args"], data["kwargs"] = list(schedule.args), dict(schedule.kwargs)
    data["backoff"] = None if schedule.backoff is None else list(schedule.backoff)
    return data


def stored_dict(schedule: ScheduleSettings) -> dict[str, Any]:
    """What the repository stores: :func:`to_dict` without the run options that are not set, so
    a schedule without them reads the same as one stored before they existed (any version)."""
    data = to_dict(schedule)
    for key in SCHEDULE_RUN_OPTIONS:
        if data[key] is None:
            del data[key]
    return data


def occurrences(schedule: ScheduleSettings, after: float) -> Iterator[float]:
    """Fire times strictly after ``after`` (unix seconds), in order, without end."""
    if schedule.every is not None:
        every = float(schedule.every)
        n = math.floor(after / every) + 1
        while True:
            yield n * every
            n += 1
    it = _croniter(schedule, after)
    while True:
        t = it.get_next(float)
        if not _repeated(schedule, t):
            yield t


def _croniter(schedule: ScheduleSettings, start: float) -> croniter:
    assert schedule.cron is not None
    fields = schedule.cron.split()
    when = datetime.fromtimestamp(start, ZoneInfo(schedule.timezone))
    return croniter(schedule.cron, when, second_at_beginning=len(fields) == 6)


def _repeated(schedule: ScheduleSettings, t: float) -> bool:
    """True for the second instance of a wall-clock time repeated when DST ends, if the cron's
    hour is fixed (its hour field does not start with ``*``): such a job fires once."""
    assert schedule.cron is not None
    fields = schedule.cron.split()
    if fields[2 if len(fields) == 6 else 1].startswith("*"):
        return False
    local = datetime.fromtimestamp(t, ZoneInfo(schedule.timezone))
    return local.fold == 1 and local.utcoffset() != local.replace(fold=0).utcoffset()


def latest(schedule: ScheduleSettings, until: float) -> float:
    """The last fire time at or before ``until``, in constant time (no walk from the past)."""
    if schedule.every is not None:
        return math.floor(until / schedule.every) * schedule.every
    it = _croniter(schedule, until)
    before = it.get_prev(float)  # strictly before ``until``
    while _repeated(schedule, before):
        before = it.get_prev(float)
    at = next(occurrences(schedule, before))
    return at if at <= until else before


class Plan(NamedTuple):
    times: list[float]  # fire times to dispatch now, oldest first
    marker: float  # where the marker moves: now, or the last on-time run when MAX_RUNS cut the list


def plan(schedule: ScheduleSettings, last: float, now: float) -> Plan:
    """What one check at ``now`` dispatches, given the marker ``last`` (see the module docstring)."""
    times: list[float] = []
    start = last
    if now - last > ON_TIME:  # no master checked for a while: an outage
        start = now - CHECK_SLACK
        if next(occurrences(schedule, last)) <= start:
            missed = latest(schedule, start)
            log.warning("schedule %s: occurrences up to %s were missed (%s)", schedule.name, missed, schedule.missed)
            if schedule.missed == "run_once":
                times.append(missed)
    on_time: list[float] = []
    for t in occurrences(schedule, start):
        if t > now:
            return Plan(times + on_time, now)
        if len(on_time) == MAX_RUNS:
            return Plan(times + on_time, on_time[-1])
        on_time.append(t)
    raise AssertionError("occurrences() never ends")


def due(schedule: ScheduleSettings, last: float, now: float) -> list[float]:
    """The occurrences to dispatch at ``now`` after the missed policy (``plan(...).times``)."""
    return plan(schedule, last, now).times


class ScheduleRepository:
    """API-created schedules (hash ``schedules``: name -> JSON) and the per-schedule markers."""

    def __init__(self, hz: Horizon) -> None:
        self.redis, self.keys, self.scripts = hz.redis, hz.keys, hz.scripts

    def stored(self) -> list[ScheduleSettings]:
        out = []
        for name, text in sorted(self.redis.hgetall(self.keys.schedules()).items()):
            try:
                out.append(parse(json.loads(text)))
            except (ValueError, ScheduleError):
                log.error("stored schedule %s is invalid; ignored", name)
        return out

    def save(self, schedule: ScheduleSettings) -> bool:
        """Store a schedule; False when one with that name is already stored."""
        return bool(self.redis.hsetnx(self.keys.schedules(), schedule.name, json.dumps(stored_dict(schedule))))

    def replace(self, schedule: ScheduleSettings) -> bool:
        """Overwrite the stored schedule of that name (its marker kept); False when none is stored,
        also when it is deleted meanwhile (a deleted schedule never comes back)."""
        key, text = self.keys.schedules(), json.dumps(stored_dict(schedule))

        def write(pipe: Any) -> bool:
            if not pipe.hexists(key, schedule.name):
                return False
            pipe.multi()
            pipe.hset(key, schedule.name, text)
            return True

        return bool(self.redis.transaction(write, key, value_from_callable=True))

    def delete(self, name: str) -> bool:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(self.keys.schedules(), name)
        pipe.delete(self.keys.schedule_fired(name))
        return bool(pipe.execute()[0])

    def markers(self, names: list[str]) -> list[float | None]:
        if not names:
            return []
        values = self.redis.mget([self.keys.schedule_fired(n) for n in names])
        return [float(v) if v else None for v in values]

    def advance(self, name: str, when: float, stored: bool = False) -> None:
        """Move the marker forward to ``when`` (never back: hosts may call in any order); for a
        ``stored`` (API) schedule only while it is stored (a delete meanwhile wins)."""
        self.scripts.call("schedule_mark", name, repr(when), "1" if stored else "0")

    @staticmethod
    def lock_task(name: str, fire_time: float) -> str:
        """The lock task of one occurrence (``keys.lock``), taken by the push_once script."""
        return f"schedule:{name}:{fire_time:.3f}"


def all_schedules(hz: Horizon) -> list[tuple[ScheduleSettings, str]]:
    """Every schedule with its source (``config`` or ``api``); config wins a name clash."""
    found = [(s, "config") for s in hz.settings.schedule]
    names = {s.name for s, _ in found}
    found += [(s, "api") for s in ScheduleRepository(hz).stored() if s.name not in names]
    return found


def job_spec(hz: Horizon, schedule: ScheduleSettings, fire_time: float) -> JobSpec:
    """The job one occurrence dispatches: the schedule's ``tries``/``timeout``/``backoff`` where set,
    else the job's own options when it is registered here, else its queue's supervisor defaults."""
    from dataclasses import replace

    from horizon import jobs

    extra = {"schedule": schedule.name, "scheduled_for": fire_time}
    tags = [f"schedule:{schedule.name}"]
    args, kwargs = list(schedule.args), dict(schedule.kwargs)
    try:
        definition = jobs.lookup(schedule.job)
    except jobs.UnknownJob:
        return replace(_unregistered_spec(hz, schedule, args, kwargs), tags=tags, extra=extra)
    bound = definition.options(queue=schedule.queue, tags=tags, tries=schedule.tries, timeout=schedule.timeout,
                               backoff=schedule.backoff)
    return replace(bound.spec(args, kwargs, hz), extra=extra)


def _unregistered_spec(hz: Horizon, schedule: ScheduleSettings, args: list[Any], kwargs: dict[str, Any]) -> JobSpec:
    """A run of a job not registered in this process: the schedule's options, else its queue's defaults."""
    from horizon import jobs, payload
    from horizon.queue import JobSpec

    queue = schedule.queue or jobs.DEFAULT_QUEUE
    defaults = hz.settings.queue_defaults(queue)
    return JobSpec(
        name=schedule.job,
        queue=queue,
        payload=payload.encode(args, kwargs),
        tries=schedule.tries or (defaults.tries if defaults else jobs.DEFAULT_TRIES),
        timeout=schedule.timeout or (defaults.timeout if defaults else jobs.DEFAULT_TIMEOUT),
        backoff=schedule.backoff or (tuple(defaults.backoff) if defaults else (0.0,)),
    )


@dataclass(frozen=True)
class Fired:
    schedule: str
    fire_time: float
    job_id: str


def fire_due(hz: Horizon, now: float | None = None, owner: str = "") -> list[Fired]:
    """Dispatch every occurrence due by ``now`` that no other host dispatched; returns ours."""
    now = time.time() if now is None else now
    repo = ScheduleRepository(hz)
    pairs = all_schedules(hz)
    fired: list[Fired] = []
    for (schedule, source), last in zip(pairs, repo.markers([s.name for s, _ in pairs]), strict=True):
        try:
            fired += _fire_one(hz, repo, schedule, last, now, owner, stored=source == "api")
        except Exception:
            log.exception("schedule %s: dispatch failed", schedule.name)
    return fired


def _fire_one(
    hz: Horizon, repo: ScheduleRepository, schedule: ScheduleSettings, last: float | None, now: float, owner: str,
    stored: bool = False,
) -> list[Fired]:
    if last is None:  # first sight: only an occurrence of the last second is due
        last = now - 1.0
    fired = []
    times, marker = plan(schedule, last, now)
    for t in times:
        spec = job_spec(hz, schedule, t)
        if hz.queue.push_once(spec, repo.lock_task(schedule.name, t), owner, LOCK_MS):
            fired.append(Fired(schedule.name, t, spec.id))
            log.info("schedule %s: dispatched job %s for %s", schedule.name, spec.id, t)
    repo.advance(schedule.name, marker, stored)
    return fired


def describe(hz: Horizon, now: float | None = None) -> list[dict[str, Any]]:
    """Every schedule as a dict with ``source``, ``last_considered`` and ``next_run_at``."""
    now = time.time() if now is None else now
    pairs = all_schedules(hz)
    markers = ScheduleRepository(hz).markers([s.name for s, _ in pairs])
    return [row(schedule, source, last, now) for (schedule, source), last in zip(pairs, markers, strict=True)]


def row(schedule: ScheduleSettings, source: str, last: float | None, now: float) -> dict[str, Any]:
    """One schedule as :func:`describe` lists it."""
    data = to_dict(schedule)
    data.update(source=source, last_considered=last, next_run_at=next(occurrences(schedule, now)))
    return data
