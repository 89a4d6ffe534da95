"""JSON-RPC over WebSocket at ``<web.path>/rpc``: the ZendHQ ``session`` and ``jq`` namespaces.

``init_app(app, base)`` registers the route on the app made by ``web.create_app`` (which keeps
its :class:`web.services.Services` in ``app.extensions["horizon"]``). Modules: ``protocol``
(pure JSON-RPC framing), ``session``, ``jq_queues``, ``jq_jobs``, ``jq_history``,
``jq_recurring`` (+ the pure ``jq_model`` and ``jq_schedule``), ``subscriptions``
(notifications) and ``endpoint`` (the websocket loop). See docs/rpc.md.
"""

from __future__ import annotations

from flask import Blueprint, Flask
from flask_sock import Sock

from web.rpc import endpoint


def init_app(app: Flask, base: str = "") -> None:
    """Serve the websocket at ``<base>/rpc`` (the upgrade needs no header; the token goes in session.create)."""
    bp = Blueprint("rpc", __name__)
    endpoint.register(Sock(), bp)
    app.register_blueprint(bp, url_prefix=base or None)
    app.config.setdefault("SOCK_SERVER_OPTIONS", {"max_message_size": endpoint.MAX_MESSAGE,
                                                  "ping_interval": endpoint.PING_INTERVAL})
