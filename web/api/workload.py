"""GET workload: per queue length, wait, processes (Horizon's shape), sorted by name."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from web.services import services

bp = Blueprint("api_workload", __name__)


@bp.get("/workload")
def view() -> ResponseReturnValue:
    return jsonify(sorted(services().workload.workload(), key=lambda q: q["name"]))
