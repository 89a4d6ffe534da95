"""Queues: list, detail and control (pause, resume, drain, promote, clean, retry all failed).

Every action answers 200 with the queue object; ``X-Horizon-Affected`` says how many jobs it
touched. Pause and resume accept a queue that has no jobs yet (so a queue can be paused first).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from horizon.keys import QueueNameError, check_queue_name
from web import params
from web.errors import bad_request, not_found
from web.services import services

bp = Blueprint("api_queues", __name__)


def _detail(name: str) -> dict[str, Any]:
    detail = services().queues.detail(name)
    if detail is None:
        raise not_found(f"queue {name} does not exist")
    return detail


def _known(name: str) -> None:
    if not services().queues.exists(name):
        raise not_found(f"queue {name} does not exist")


def _answer(name: str, affected: int) -> ResponseReturnValue:
    return _detail(name), 200, {"X-Horizon-Affected": str(affected)}


@bp.get("/queues")
def index() -> ResponseReturnValue:
    return jsonify(services().queues.list())


@bp.get("/queues/<name>")
def show(name: str) -> dict[str, Any]:
    return _detail(name)


@bp.post("/queues/<name>/pause")
def pause(name: str) -> ResponseReturnValue:
    try:
        check_queue_name(name)  # a queue may be paused before it has jobs: only a name it could have
    except QueueNameError as exc:
        raise bad_request(str(exc)) from None
    params.only(params.body(), set())
    return _answer(name, int(services().queues.pause(name)))


@bp.post("/queues/<name>/resume")
def resume(name: str) -> ResponseReturnValue:
    params.only(params.body(), set())
    _known(name)
    return _answer(name, int(services().queues.resume(name)))


@bp.post("/queues/<name>/drain")
def drain(name: str) -> ResponseReturnValue:
    params.only(params.body(), set())
    _known(name)
    return _answer(name, services().queues.drain(name))


@bp.post("/queues/<name>/promote")
def promote(name: str) -> ResponseReturnValue:
    params.only(params.body(), set())
    _known(name)
    return _answer(name, services().queues.promote(name))


@bp.post("/queues/<name>/clean")
def clean(name: str) -> ResponseReturnValue:
    data = params.body(required=True)
    params.only(data, {"state", "grace"})
    state = data.get("state")
    if state not in ("completed", "failed"):
        raise bad_request(f'state must be "completed" or "failed", got {state!r}')
    grace = params.number(data, "grace", maximum=86400 * 3650) or 0.0
    _known(name)
    return _answer(name, services().queues.clean(name, state, grace))


@bp.post("/queues/<name>/retry")
def retry(name: str) -> ResponseReturnValue:
    params.only(params.body(), set())
    _known(name)
    return _answer(name, len(services().queues.retry_all(name)))
