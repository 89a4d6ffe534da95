"""Recurring jq jobs (``schedule.cron``) as our schedules: the job id is ``schedule:<name>``.

A recurring job is a :class:`horizon.schedules.ScheduleRepository` entry; each run it
dispatches is one of its tasks (the run's job hash carries ``schedule: <name>``).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from horizon import schedules
from horizon.config import ScheduleSettings
from web.rpc.protocol import invalid_params

if TYPE_CHECKING:
    from horizon.context import Horizon

PREFIX = "schedule:"
# add_job members a stored schedule cannot carry: refused for recurring jobs, not dropped
NOT_KEPT = ("timeout", "max_retry_count", "retry_delay", "priority", "predecessor")
TYPES = {"horizon.http": "http", "horizon.cli": "cli"}


def is_recurring(job_id: str) -> bool:
    return job_id.startswith(PREFIX)


def job_id(name: str) -> str:
    return PREFIX + name


def find(hz: Horizon, jq_id: str) -> tuple[ScheduleSettings, str] | None:
    name = jq_id[len(PREFIX):]
    return next(((s, src) for s, src in schedules.all_schedules(hz) if s.name == name), None)


def add(hz: Horizon, name: str | None, queue: str, cron: str, target: tuple[str, list, dict]) -> str:
    """Store a schedule running ``target`` (job name, args, kwargs) on ``cron``; its jq job id."""
    job, args, kwargs = target
    data = {"name": name or f"jq-{uuid.uuid4().hex[:12]}", "job": job, "cron": cron, "args": args,
            "kwargs": kwargs, "queue": queue}
    try:
        schedule = schedules.parse(data)
    except schedules.ScheduleError as exc:
        raise invalid_params(f"schedule: {exc}") from None
    if find(hz, job_id(schedule.name)) is not None or not schedules.ScheduleRepository(hz).save(schedule):
        raise invalid_params(f"a recurring job named {schedule.name!r} already exists")
    return job_id(schedule.name)


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
    return out
