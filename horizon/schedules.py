"""Recurring schedules: cron (5 fields, or 6 with seconds first) or ``every`` N seconds.

Schedules come from the config's ``schedule:`` list and from the API (stored in Redis by
:class:`ScheduleRepository`). Every master calls :func:`fire_due` about once a second; each
occurrence is dispatched by exactly one host: whoever takes the Redis lock for
(schedule, fire time) with ``SET NX PX``. A per-schedule marker remembers the last time
considered, so occurrences missed while no master ran are found and follow the schedule's
``missed`` policy: ``skip`` them, or ``run_once`` (one run for all of them).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from croniter import croniter

from horizon.config import ConfigError, ScheduleSettings

if TYPE_CHECKING:
    from horizon.context import Horizon
    from horizon.queue import JobSpec

log = logging.getLogger(__name__)

ON_TIME = 5.0  # seconds: an occurrence older than this when first seen counts as missed
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
    data = asdict(schedule)
    data["args"], data["kwargs"] = list(schedule.args), dict(schedule.kwargs)
    return data


def occurrences(schedule: ScheduleSettings, after: float) -> Iterator[float]:
    """Fire times strictly after ``after`` (unix seconds), in order, without end."""
    if schedule.every is not None:
        every = float(schedule.every)
        n = math.floor(after / every) + 1
        while True:
            yield n * every
            n += 1
    fields = schedule.cron.split()
    start = datetime.fromtimestamp(after, ZoneInfo(schedule.timezone))
    it = croniter(schedule.cron, start, second_at_beginning=len(fields) == 6)
    while True:
        yield it.get_next(float)


def due(schedule: ScheduleSettings, last: float, now: float) -> list[float]:
    """The occurrences in (last, now] to dispatch now, after the missed policy."""
    times: list[float] = []
    missed: float | None = None
    for t in occurrences(schedule, last):
        if t > now:
            break
        if now - t > ON_TIME:
            missed = t
            continue
        times.append(t)
        if len(times) >= MAX_RUNS:
            break
    if missed is not None:
        log.warning("schedule %s: occurrences up to %s were missed (%s)", schedule.name, missed, schedule.missed)
        if schedule.missed == "run_once" and not times:
            times.append(missed)
    return times


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
        return bool(self.redis.hsetnx(self.keys.schedules(), schedule.name, json.dumps(to_dict(schedule))))

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

    def advance(self, name: str, when: float) -> None:
        """Move the marker forward to ``when`` (never back: hosts may call in any order)."""
        self.scripts.call("schedule_mark", name, repr(when))

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
    """The job one occurrence dispatches (the job's own defaults when it is registered here)."""
    from dataclasses import replace

    from horizon import jobs, payload
    from horizon.queue import JobSpec

    extra = {"schedule": schedule.name, "scheduled_for": fire_time}
    tags = [f"schedule:{schedule.name}"]
    args, kwargs = list(schedule.args), dict(schedule.kwargs)
    try:
        definition = jobs.lookup(schedule.job)
    except jobs.UnknownJob:
        queue = schedule.queue or jobs.DEFAULT_QUEUE
        defaults = hz.settings.queue_defaults(queue)
        return JobSpec(
            name=schedule.job,
            queue=queue,
            payload=payload.encode(args, kwargs),
            tags=tags,
            tries=defaults.tries if defaults else jobs.DEFAULT_TRIES,
            timeout=defaults.timeout if defaults else jobs.DEFAULT_TIMEOUT,
            backoff=tuple(defaults.backoff) if defaults else (0.0,),
            extra=extra,
        )
    bound = definition.options(queue=schedule.queue, tags=tags)
    return replace(bound.spec(args, kwargs, hz), extra=extra)


@dataclass(frozen=True)
class Fired:
    schedule: str
    fire_time: float
    job_id: str


def fire_due(hz: Horizon, now: float | None = None, owner: str = "") -> list[Fired]:
    """Dispatch every occurrence due by ``now`` that no other host dispatched; returns ours."""
    now = time.time() if now is None else now
    repo = ScheduleRepository(hz)
    schedules = [s for s, _ in all_schedules(hz)]
    fired: list[Fired] = []
    for schedule, last in zip(schedules, repo.markers([s.name for s in schedules]), strict=True):
        try:
            fired += _fire_one(hz, repo, schedule, last, now, owner)
        except Exception:
            log.exception("schedule %s: dispatch failed", schedule.name)
    return fired


def _fire_one(
    hz: Horizon, repo: ScheduleRepository, schedule: ScheduleSettings, last: float | None, now: float, owner: str
) -> list[Fired]:
    if last is None:  # first sight: only an occurrence of the last second is due
        last = now - 1.0
    fired = []
    for t in due(schedule, last, now):
        spec = job_spec(hz, schedule, t)
        if hz.queue.push_once(spec, repo.lock_task(schedule.name, t), owner, LOCK_MS):
            fired.append(Fired(schedule.name, t, spec.id))
            log.info("schedule %s: dispatched job %s for %s", schedule.name, spec.id, t)
    repo.advance(schedule.name, now)
    return fired


def describe(hz: Horizon, now: float | None = None) -> list[dict[str, Any]]:
    """Every schedule as a dict with ``source``, ``last_considered`` and ``next_run_at``."""
    now = time.time() if now is None else now
    pairs = all_schedules(hz)
    markers = ScheduleRepository(hz).markers([s.name for s, _ in pairs])
    out = []
    for (schedule, source), last in zip(pairs, markers, strict=True):
        data = to_dict(schedule)
        data.update(source=source, last_considered=last, next_run_at=next(occurrences(schedule, now)))
        out.append(data)
    return out
