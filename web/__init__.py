"""Flask app factory: the JSON API under ``<web.path>/api``, the Prometheus exposition at
``<web.path>/metrics`` and the dashboard under ``<web.path>/``.

``create_app(settings_or_config, hz)`` takes Settings, a config path, a settings mapping or
None (the environment's config). Standalone, routes live under ``web.path``; with
``mounted=True`` they live at the root so the app can be mounted at ``web.path`` under another
WSGI app (``DispatcherMiddleware(main_app, {settings.web.path: create_app(..., mounted=True)})``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flask import Flask
from werkzeug.routing import PathConverter

from horizon.config import Settings, load_config, settings_from_dict
from web import access, errors, exposition, streams
from web.services import Services

if TYPE_CHECKING:
    from horizon.context import Horizon

log = logging.getLogger("horizon.web")

SSE_HEARTBEAT = 15.0  # seconds between heartbeat comments on an idle event stream
SSE_LIFETIME = 300.0  # seconds before an event stream ends (the client resumes)


def _settings(source: Settings | str | os.PathLike[str] | Mapping[str, Any] | None) -> Settings:
    if isinstance(source, Settings):
        return source
    if isinstance(source, Mapping):
        return settings_from_dict(source, environ=os.environ)
    return load_config(source)


def _horizon(settings: Settings) -> Horizon:
    from horizon.bootstrap import import_jobs
    from horizon.context import Horizon

    import_jobs(settings)  # POST jobs checks names against the registry
    return Horizon(settings)



class RestConverter(PathConverter):
    """The rest of the path, slashes included, even a leading one: a tag (or job name) may start
    with '/', and its %2F arrives decoded (monitoring//lead). Werkzeug's ``path`` cannot start
    with '/', so such a tag could be monitored but never read or unmonitored."""

    regex = ".+?"
    part_isolating = False  # (Werkzeug infers True for a regex without '/')


def create_app(
    settings_or_config: Settings | str | os.PathLike[str] | Mapping[str, Any] | None = None,
    hz: Horizon | None = None,
    *,
    mounted: bool = False,
) -> Flask:
    """The horizon web app for these settings (or ``hz.settings`` when only ``hz`` is given)."""
    from web import api

    if hz is not None and settings_or_config is None:
        settings = hz.settings
    else:
        settings = _settings(settings_or_config)
    if hz is None:
        hz = _horizon(settings)
    app = Flask(__name__, static_folder=None)  # the dashboard blueprint serves its own assets
    app.url_map.converters["rest"] = RestConverter
    # no redirect (an HTML page) for a path with doubled slashes, e.g. queues/%2F/events: a JSON 404
    app.url_map.merge_slashes = False
    app.json.sort_keys = False
    app.config.update(
        HORIZON_SSE_HEARTBEAT=SSE_HEARTBEAT,
        HORIZON_SSE_LIFETIME=SSE_LIFETIME,
        HORIZON_MAX_STREAMS=streams.MAX_STREAMS,
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    app.extensions["horizon"] = Services(hz, settings)
    app.extensions["horizon_streams"] = streams.StreamSlots()
    base = "" if mounted else settings.web.path.rstrip("/")
    errors.register(app)
    access.register(app)
    for bp in api.BLUEPRINTS:
        app.register_blueprint(bp, url_prefix=base + "/api")
    app.register_blueprint(exposition.bp, url_prefix=base or None)
    _register_dashboard(app, base)
    from web import rpc

    rpc.init_app(app, base)  # JSON-RPC websocket at <web.path>/rpc
    return app


def _register_dashboard(app: Flask, base: str) -> None:
    try:
        from web.dashboard import bp
    except ImportError as exc:
        log.info("dashboard not available: %s", exc)
        return
    app.register_blueprint(bp, url_prefix=base or None)
