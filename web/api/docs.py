"""GET openapi.json: the OpenAPI 3.1 document of this API, with the server URL as mounted."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request, url_for

from web.openapi import document

bp = Blueprint("api_docs", __name__)


@bp.get("/openapi.json")
def openapi() -> dict[str, Any]:
    base = url_for(".openapi").removesuffix("/openapi.json")
    return document(server=request.host_url.rstrip("/") + base if request.host_url else base)
