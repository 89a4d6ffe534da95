"""Dashboard blueprint: the single-page HTML shell at <web.path>/ and at every page URL under it.

Register it with ``app.register_blueprint(bp, url_prefix=settings.web.path)``. Every page URL
returns the same shell; the ES modules under ``static/js`` route on the client (History API).
The shell carries the dashboard's settings as a ``<script type="application/json">`` block (data,
never executed), so the strict CSP needs no inline script. ``<web.path>/metrics`` itself is the
Prometheus exposition, so the Metrics page lives at ``metrics/jobs`` and ``metrics/queues``.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, render_template, request, url_for

bp = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

LIST_PAGES = ("recent", "pending", "completed", "silenced", "failed")

PAGE_RULES = (
    "/",
    "/dashboard",
    "/monitoring",
    "/monitoring/<rest:tag>",
    "/metrics/jobs",
    "/metrics/queues",
    "/metrics/jobs/<rest:name>",
    "/metrics/queues/<rest:name>",
    "/jobs",
    "/jobs/<job_id>",
    "/failed",
    "/failed/<job_id>",
    "/queues",
    "/queues/<rest:name>",
)


def _web_settings() -> Any:
    """The ``web`` settings of the app (None when the app factory did not record any)."""
    for key in ("horizon.settings", "HORIZON_SETTINGS", "settings"):
        settings = current_app.config.get(key)
        if settings is not None and hasattr(settings, "web"):
            return settings.web
    hz = current_app.extensions.get("horizon")
    settings = getattr(hz, "settings", None)
    return getattr(settings, "web", None)


def shell_config() -> dict[str, Any]:
    """What the client needs before its first API call: base path, token required, read-only."""
    web = _web_settings()
    base = request.script_root + (bp_prefix() or "")
    return {
        "path": base.rstrip("/"),
        "api": base.rstrip("/") + "/api",
        "static": url_for("dashboard.static", filename="").rstrip("/"),
        "token_required": bool(web is not None and web.auth.token),
        "read_only": bool(web is not None and web.read_only),
    }


def bp_prefix() -> str:
    """The URL prefix this blueprint was registered with ("" at the root)."""
    return url_for("dashboard.page").rstrip("/").removeprefix(request.script_root)


def page(**_: str) -> Response:
    """The HTML shell; the client renders the page its URL names."""
    config = json.dumps(shell_config()).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    html = render_template("dashboard.html", config_json=config)
    response = Response(html, mimetype="text/html")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


for _rule in PAGE_RULES:
    bp.add_url_rule(_rule, endpoint="page", view_func=page, methods=["GET"], strict_slashes=False)
