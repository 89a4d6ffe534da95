"""Recurring jq jobs (``schedule.cron``) as our schedules: the job id is ``schedule:<name>``.

A recurring job is a :class:`horizon.schedules.ScheduleRepository` entry; each run it
dispatches is one of its tasks (the run's job hash carries ``schedule: <name>``). Its
``timeout``, ``max_retry_count`` and ``retry_delay`` are kept on the schedule as the ``timeout``,
``tries`` (count + 1) and ``backoff`` of every run, within the dispatch options' ranges.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from horizon import schedules
from horizon.config import ScheduleSettings
from horizon.jobs import OptionError, check_limits
from web.rpc.protocol import invalid_params

if TYPE_CHECKING:
    from horizon.context import Horizon

PREFIX = "schedule:"
# add_job members a stored schedule cannot carry: refused for recurring jobs, not dropped
NOT_KEPT = ("priority", "predecessor")
# jq members kept on the schedule, how each run is tried: jq member -> schedule field
RUN_MEMBERS = {"timeout": "timeout", "max_retry_count": "tries", "retry_delay": "backoff"}
TYPES = {"horizon.http": "http", "horizon.cli": "cli"}


def is_recurring(job_id: str) -> bool:
    return job_id.startswith(PREFIX)


def job_id(name: str) -> str:
    return PREFIX + name


def find(hz: Horizon, jq_id: str) -> tuple[ScheduleSettings, str] | None:
    name = jq_id[len(PREFIX):]
    return next(((s, src) for s, src in schedules.all_schedules(hz) if s.name == name), None)


def run_options(members: dict[str, Any], explicit: Collection[str]) -> dict[str, Any]:
    """The schedule fields (``tries``, ``timeout``, ``backoff``) of the jq members in ``members``
    (whole numbers in jq's ranges: ``jq_jobs._check``). A value beyond the dispatch ranges (a timeout
    over a day, a retry_delay over a week) is an error naming the member, or the queue's job_defaults
    member when it is not among ``explicit``."""
    options = {}
    for member, field in RUN_MEMBERS.items():
        if member not in members:
            continue
        value = _field_value(member, members[member])
        try:
            check_limits(**{field: value})
        except OptionError as exc:
            origin = member if member in explicit else f"the queue's job_defaults.{member}"
            raise invalid_params(f"{origin}: {exc} (the ranges of a recurring job's runs)",
                                 {"member": member}) from None
        options[field] = value
    return options


def _field_value(member: str, value: Any) -> Any:
    if member == "max_retry_count":
        return value + 1
    return [value] if member == "retry_delay" else value


def run_members(schedule: ScheduleSettings) -> dict[str, Any]:
    """The jq members of how the schedule's runs are tried, those it sets (``get_job``)."""
    members: dict[str, Any] = {}
    if schedule.timeout is not None:
        members["timeout"] = _whole(schedule.timeout)
    if schedule.tries is not None:
        members["max_retry_count"] = schedule.tries - 1
    if schedule.backoff is not None:
        members["retry_delay"] = _whole(schedule.backoff[0])
    return members


def _whole(seconds: float) -> float | int:
    return int(seconds) if seconds == int(seconds) else seconds


def _parse(data: dict[str, Any]) -> ScheduleSettings:
    try:
        return schedules.parse(data)
    except schedules.ScheduleError as exc:
        raise invalid_params(f"schedule: {exc}") from None


def add(
    hz: Horizon, name: str | None, queue: str, cron: str, target: tuple[str, list, dict],
    options: dict[str, Any] | None = None,
) -> str:
    """Store a schedule running ``target`` (job name, args, kwargs) on ``cron``, its runs tried with
    ``options`` (:func:`run_options`); its jq job id."""
    job, args, kwargs = target
    data = {"name": name or f"jq-{uuid.uuid4().hex[:12]}", "job": job, "cron": cron, "args": args,
            "kwargs": kwargs, "queue": queue, **(options or {})}
    schedule = _parse(data)
    if find(hz, job_id(schedule.name)) is not None or not schedules.ScheduleRepository(hz).save(schedule):
        raise invalid_params(f"a recurring job named {schedule.name!r} already exists")
    return job_id(schedule.name)


def update(hz: Horizon, jq_id: str, cron: str | None, options: dict[str, Any]) -> None:
    """Change a stored recurring job's cron (None: kept) and how its runs are tried (``options``:
    :func:`run_options`, the fields not named kept). An http job's request timeout follows its
    timeout, as a one-time job's does."""
    found = find(hz, jq_id)
    if found is None:
        raise invalid_params("no such job", {"id": jq_id})
    schedule, source = found
    if source == "config":
        raise invalid_params("this recurring job comes from the config file; change it there")
    data = {**schedules.to_dict(schedule), **options}
    if cron is not None:
        data.update(cron=cron, every=None)
    if "timeout" in options and TYPES.get(schedule.job) == "http":
        data["kwargs"] = {**data["kwargs"], "timeout": options["timeout"]}
    if not schedules.ScheduleRepository(hz).replace(_parse(data)):
        raise invalid_params("no such job", {"id": jq_id})


def delete(hz: Horizon, jq_id: str) -> None:
    found = find(hz, jq_id)
    if found is None:
        raise invalid_params("no such job", {"id": jq_id})
    if found[1] == "config":
        raise invalid_params("this recurring job comes from the config file; remove it there")
    schedules.ScheduleRepository(hz).delete(found[0].name)


def in_queues(hz: Horizon, queues: set[str] | None) -> list[ScheduleSettings]:
    return [s for s, _ in schedules.all_schedules(hz) if queues is None or (s.queue or "default") in queues]


def summary(schedule: ScheduleSettings, queue_ref: dict[str, Any]) -> dict[str, Any]:
    nxt = next(schedules.occurrences(schedule, time.time()))
    return {
        "id": job_id(schedule.name),
        "name": schedule.name,
        "type": TYPES.get(schedule.job, "job"),
        "queue": queue_ref,
        "priority": "normal",
        "scheduled_time_sec": int(nxt),
        "status": "scheduled",
        "recurring": True,
    }


def detail(schedule: ScheduleSettings, queue_ref: dict[str, Any]) -> dict[str, Any]:
    out = summary(schedule, queue_ref)
    out["schedule"] = {"cron": schedule.cron} if schedule.cron else {"every": schedule.every}
    kwargs = dict(schedule.kwargs)
    if out["type"] == "http":
        out.update(url=kwargs.get("url"), http_method=kwargs.get("method", "GET"))
    elif out["type"] == "cli":
        out["script"] = " ".join(kwargs.get("argv", []))
    else:
        out.update(job=schedule.job, args=list(schedule.args), kwargs=kwargs)
    out.update(run_members(schedule))
    return out
