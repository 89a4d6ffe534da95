"""GET masters: master supervisors keyed by name, with their supervisors (Horizon's shape)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from web.services import services

bp = Blueprint("api_masters", __name__)


@bp.get("/masters")
def view() -> ResponseReturnValue:
    return jsonify(services().masters.all())
