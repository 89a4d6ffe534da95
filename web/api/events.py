"""Server-Sent Events from the capped Redis event stream: GET events, GET queues/{name}/events.

Each event is ``id: <stream id>``, ``event: <name>``, ``data: <JSON>``. A client resumes with
``Last-Event-ID`` (header, or the ``last_event_id`` query parameter); an id older than the capped
stream's first entry resumes at that entry (the events between were trimmed: ``events_max``). Heartbeat comments keep
proxies from closing an idle stream, and each connection ends after a bounded lifetime (the
client reconnects and resumes) so a server thread is never pinned forever. An idle stream also
looks at its socket every CLIENT_CHECK seconds and ends when the client has closed it, so a
dashboard reload gives its slot back within about a second rather than after two heartbeats. A stream whose Redis
goes away ends the same way, not with an exception in the server: the client's reconnection
then gets the JSON 503 until Redis is back. A process serves a bounded number of streams at once
(web/streams.py); one more is answered 503 with Retry-After.
"""

from __future__ import annotations

import json
import logging
import re
import select
import socket
import time
from collections.abc import Iterator

import redis
from flask import Blueprint, Response, current_app, request, stream_with_context

from horizon.keys import QUEUE_NAME_RULE, is_queue_name
from horizon.repositories.events import EventRepository
from web import streams
from web.errors import bad_request, envelope
from web.services import services

bp = Blueprint("api_events", __name__)
log = logging.getLogger(__name__)

STREAM_ID = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")
STREAM_ID_PART_MAX = 2**64 - 1  # each part of a stream id is an unsigned 64-bit number
RETRY_MS = 2000
CLIENT_CHECK = 1.0  # seconds between looks at an idle stream's socket for a client that has gone


def _valid_stream_id(text: str) -> bool:
    match = STREAM_ID.match(text)
    return bool(match) and all(int(part) <= STREAM_ID_PART_MAX for part in match.groups() if part is not None)


def _start_id(repo: EventRepository) -> str:
    """Where to read from: Last-Event-ID if given, else the newest entry (only new events)."""
    given = request.headers.get("Last-Event-ID") or request.args.get("last_event_id", "")
    if given:
        if not _valid_stream_id(given):
            raise bad_request(f"Last-Event-ID must be a stream id like 1700000000000-0, got {given!r}")
        return given
    return repo.latest_id()


def _format(entry_id: str, fields: dict[str, str]) -> str:
    return f"id: {entry_id}\nevent: {fields.get('event', 'message')}\ndata: {fields.get('data', '{}')}\n\n"


def _wanted(fields: dict[str, str], queue: str | None) -> bool:
    if queue is None:
        return True
    try:
        return json.loads(fields.get("data", "{}")).get("queue") == queue
    except ValueError:
        return False


def _client_socket() -> socket.socket | None:
    """The request's socket, where the server exposes it (gunicorn; Werkzeug's own server)."""
    for key in ("gunicorn.socket", "werkzeug.socket"):
        sock = request.environ.get(key)
        if isinstance(sock, socket.socket):
            return sock
    return None


def client_gone(sock: socket.socket | None) -> bool:
    """True when the client has closed its end: the socket reads as end-of-file (or is reset).
    Writing is no test: the first write after the client closed still succeeds."""
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):  # reset, or already closed by the server
        return True


def _stream(queue: str | None) -> Response:
    repo = EventRepository(services().hz)
    last = _start_id(repo)
    slots = streams.slots()
    if not slots.acquire(streams.limit()):
        response = envelope(503, f"this server process already serves {streams.limit()} event streams; retry in "
                            f"{streams.RETRY_AFTER} s (or poll the API meanwhile)")
        response.headers["Retry-After"] = str(streams.RETRY_AFTER)
        return response
    heartbeat = float(current_app.config["HORIZON_SSE_HEARTBEAT"])
    sock = _client_socket()
    lifetime = float(current_app.config["HORIZON_SSE_LIFETIME"])

    released = False

    def release() -> None:  # once: when the stream ends, or when the server closes it (even unstarted)
        nonlocal released
        if not released:
            released = True
            slots.release()

    def generate() -> Iterator[str]:
        nonlocal last
        try:
            yield f"retry: {RETRY_MS}\n: connected\n\n"
            now = time.monotonic()
            deadline, beat_at, check_at = now + lifetime, now + heartbeat, now + CLIENT_CHECK
            while (left := deadline - (now := time.monotonic())) > 0:
                if now >= check_at:
                    if client_gone(sock):
                        return
                    check_at = now + CLIENT_CHECK
                if now >= beat_at:
                    yield ": heartbeat\n\n"
                    beat_at = now + heartbeat
                block = int(max(min(check_at - now, beat_at - now, left), 0.001) * 1000)
                try:
                    entries = repo.read(last, block)
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    log.warning("event stream ended: redis unavailable (%s); the client resumes from %s", exc, last)
                    return
                for entry_id, fields in entries:
                    last = entry_id
                    if _wanted(fields, queue):
                        beat_at = time.monotonic() + heartbeat  # something was written: no comment needed
                        yield _format(entry_id, fields)
        finally:
            release()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    response = Response(stream_with_context(generate()), mimetype="text/event-stream", headers=headers)
    response.call_on_close(release)
    return response


def _queue(name: str | None) -> str | None:
    """A queue to filter on: one that may not exist yet (its events may come), but never a name no
    queue can have (400, as the other queue routes)."""
    if name is not None and not is_queue_name(name):
        raise bad_request(f"invalid queue name {name!r:.120}: {QUEUE_NAME_RULE}")
    return name


@bp.get("/events")
def events() -> Response:
    return _stream(_queue(request.args.get("queue") or None))


@bp.get("/queues/<name>/events")
def queue_events(name: str) -> Response:
    return _stream(_queue(name))
