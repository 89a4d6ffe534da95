"""The websocket route: one JSON-RPC conversation per connection (flask-sock, gunicorn gthread).

Replies and notifications share the socket; a lock keeps frames whole when the subscription
thread sends while a reply is being written. Bad input gets an error reply, never a hang-up.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from flask import current_app, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from horizon.connection import UNAVAILABLE
from web import streams
from web.rpc import jq_history, jq_jobs, jq_queues, session, subscriptions
from web.rpc.protocol import Dispatcher
from web.rpc.session import Connection

log = logging.getLogger("horizon.rpc")

MAX_MESSAGE = 1024 * 1024  # bytes per frame; larger frames close the socket with 1009
PING_INTERVAL = 25  # seconds between websocket pings on an idle connection
TRY_AGAIN_LATER = 1013  # websocket close code (RFC 6455 registry)


def build_dispatcher() -> Dispatcher:
    dispatcher = Dispatcher(unavailable=UNAVAILABLE)
    for module in (session, jq_queues, jq_jobs, jq_history, subscriptions):
        module.register(dispatcher)
    return dispatcher


DISPATCHER = build_dispatcher()


def converse(ws: Any, conn: Connection) -> None:
    """Answer frames until the client goes away."""
    lock = threading.Lock()

    def send(text: str) -> None:
        with lock:
            ws.send(text)

    def notify(event: str, params: dict[str, Any]) -> None:
        try:
            send(json.dumps({"event": event, "params": params}, separators=(",", ":")))
        except ConnectionClosed:
            if conn.subscription is not None:
                conn.subscription.stop()

    conn.extras["notify"] = notify
    try:
        while True:
            frame = ws.receive()
            if frame is None:
                continue
            send(DISPATCHER.handle_frame(frame, conn))
    finally:
        if conn.subscription is not None:
            conn.subscription.stop()


def register(sock: Sock, bp: Any) -> None:
    @sock.route("/rpc", bp=bp)
    def rpc(ws: Any) -> None:
        services = current_app.extensions["horizon"]
        slots = streams.slots()
        if not slots.acquire(streams.limit()):  # every thread for long-lived connections is taken
            ws.close(reason=TRY_AGAIN_LATER, message="server busy: too many long-lived connections; retry shortly")
            return
        try:
            converse(ws, Connection(services.hz, remote=request.remote_addr or "-"))
        finally:
            slots.release()
