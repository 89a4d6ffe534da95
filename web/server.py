"""Serving the app: gunicorn through its Python API (``horizon web``), or Flask's dev server.

gunicorn runs ``gthread`` workers so Server-Sent Events streams (bounded in lifetime) do not
block other requests. :func:`check_bind` refuses a non-loopback address without a token unless
``web.auth.disabled`` is set.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from gunicorn.app.base import BaseApplication

from horizon.config import Settings
from web.streams import THREADS  # per gunicorn worker: SSE streams and websockets hold one each (bounded)

log = logging.getLogger("horizon.web")


class BindRefused(ValueError):
    """A non-loopback bind without a token (and auth not explicitly disabled)."""


def split_bind(bind: str) -> tuple[str, int | None]:
    """``host:port`` / ``[::1]:port`` / ``unix:/path`` -> (host, port)."""
    if bind.startswith("unix:"):
        return bind, None
    host, sep, port = bind.rpartition(":")
    if not sep:
        return bind, None
    host = host.strip("[]")
    try:
        return host, int(port)
    except ValueError:
        raise ValueError(f"web.bind must be host:port, got {bind!r}") from None


def is_loopback(host: str) -> bool:
    if host.startswith("unix:") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings, bind: str | None = None) -> str:
    """The address to bind; BindRefused when it is not loopback and no token protects it."""
    bind = bind or settings.web.bind
    host, _ = split_bind(bind)
    auth = settings.web.auth
    if not is_loopback(host) and not auth.token and not auth.disabled:
        raise BindRefused(
            f"refusing to bind {bind}: a non-loopback address needs web.auth.token "
            "(or HORIZON_TOKEN), or web.auth.disabled: true to serve without authentication"
        )
    return bind


class GunicornApp(BaseApplication):
    """gunicorn serving one WSGI app with options given in Python (no config file)."""

    def __init__(self, app: Any, options: dict[str, Any]) -> None:
        self.application, self.options = app, options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self) -> Any:
        return self.application


def gunicorn_options(settings: Settings, bind: str, workers: int | None = None) -> dict[str, Any]:
    return {
        "bind": bind,
        "workers": workers or settings.web.workers,
        "worker_class": "gthread",
        "threads": THREADS,
        "timeout": settings.web.timeout,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "horizon-web",
        # gunicorn 27's control socket is one fixed path per user: two servers on a host would clash
        "control_socket_disable": True,
    }


def serve(app: Any, settings: Settings, bind: str, *, workers: int | None = None, dev: bool = False) -> None:
    """Serve until stopped: gunicorn (default) or Flask's development server (``dev``)."""
    if dev:
        host, port = split_bind(bind)
        app.run(host=host, port=port or 8080, threaded=True, use_reloader=False)
        return
    GunicornApp(app, gunicorn_options(settings, bind, workers)).run()
