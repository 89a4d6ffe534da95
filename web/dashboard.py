"""Dashboard blueprint: serves the single-page HTML shell at <web.path>/ and every page URL under it."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("dashboard", __name__, template_folder="templates", static_folder="static")


@bp.get("/")
def shell() -> str:
    """Placeholder until the shell template lands."""
    return "<!doctype html><title>Horizon</title>"
