"""GET <path>/metrics: the Prometheus text exposition (behind the same token as the API)."""

from __future__ import annotations

from flask import Blueprint, Response

from web.errors import ApiError
from web.services import services

bp = Blueprint("prometheus", __name__)


@bp.get("/metrics")
def exposition() -> Response:
    try:
        from horizon.prometheus import render
    except ImportError as exc:
        raise ApiError(503, f"horizon.prometheus is not available: {exc}") from None
    body, content_type = render(services().hz)
    return Response(body, content_type=content_type)
