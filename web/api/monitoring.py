"""Monitored tags: list, start, page a tag's jobs, stop (tags may contain '/' and ':')."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from web import params
from web.services import services

bp = Blueprint("api_monitoring", __name__)

MAX_TAG = 255


def _checked(call: Callable[[], Any]) -> Any:
    """Run a tag repository call; its ValueError (a bad tag) is a 400 naming the problem."""
    try:
        return call()
    except ValueError as exc:
        raise params.bad_request(str(exc)) from None


@bp.get("/monitoring")
def index() -> ResponseReturnValue:
    return jsonify(services().tags.monitoring())


@bp.post("/monitoring")
def store() -> ResponseReturnValue:
    data = params.body(required=True)
    params.only(data, {"tag"})
    tag = params.string(data, "tag", max_len=MAX_TAG)
    if tag is None:
        raise params.bad_request("tag is required")
    _checked(lambda: services().tags.monitor(tag))
    return {"tag": tag}, 201


@bp.get("/monitoring/<rest:tag>")
def jobs(tag: str) -> dict[str, Any]:
    start, size = params.starting_at(), params.limit()
    page, total = _checked(lambda: services().tags.jobs(tag, starting_at=start, limit=size))
    return {"jobs": page, "total": total}


@bp.delete("/monitoring/<rest:tag>")
def destroy(tag: str) -> ResponseReturnValue:
    _checked(lambda: services().tags.stop_monitoring(tag))
    return "", 204
