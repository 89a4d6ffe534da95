"""Schedules: every recurring schedule (config and API), create one, delete an API-created one."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, jsonify, url_for
from flask.typing import ResponseReturnValue

from horizon import jobs
from horizon.schedules import ScheduleError, ScheduleRepository, describe, parse, row
from web import params
from web.errors import ApiError, bad_request, conflict, not_found, unprocessable
from web.services import services

bp = Blueprint("api_schedules", __name__)


def _row(name: str) -> dict[str, Any]:
    for found in describe(services().hz):
        if found["name"] == name:
            return found
    raise not_found(f"schedule {name} does not exist")


@bp.get("/schedules")
def index() -> ResponseReturnValue:
    return jsonify(describe(services().hz))


@bp.get("/schedules/<name>")
def show(name: str) -> dict[str, Any]:
    return _row(name)


@bp.post("/schedules")
def store() -> ResponseReturnValue:
    s = services()
    try:
        schedule = parse(params.body(required=True))
    except ScheduleError as exc:
        raise bad_request(str(exc)) from None
    try:
        jobs.lookup(schedule.job)
    except jobs.UnknownJob as exc:
        raise unprocessable(f"job: {exc}") from None
    if any(c.name == schedule.name for c in s.settings.schedule):
        raise conflict(f"schedule {schedule.name} is defined in the config file")
    repo = ScheduleRepository(s.hz)
    # the reply is built before saving: a schedule the reply cannot describe is not stored
    reply = row(schedule, "api", repo.markers([schedule.name])[0], time.time())
    location = url_for(".show", name=schedule.name)
    if not repo.save(schedule):
        raise conflict(f"schedule {schedule.name} already exists; delete it first")
    return reply, 201, {"Location": location}


@bp.delete("/schedules/<name>")
def destroy(name: str) -> ResponseReturnValue:
    s = services()
    if any(c.name == name for c in s.settings.schedule):
        raise ApiError(409, f"schedule {name} is defined in the config file; remove it there")
    if not ScheduleRepository(s.hz).delete(name):
        raise not_found(f"schedule {name} does not exist")
    return "", 204
