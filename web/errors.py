"""The JSON error envelope: ``{"error": {"code", "message"}}`` for every error, never HTML.

Views raise :class:`ApiError` (or its helpers); Werkzeug's HTTP errors (unknown route, 405, ...)
and unexpected exceptions are turned into the same envelope by :func:`register`.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote_to_bytes

import redis
from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from horizon.connection import as_refusal

log = logging.getLogger("horizon.web")

CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    422: "UNPROCESSABLE",
    503: "UNAVAILABLE",
    500: "INTERNAL",
}
STATUSES = {code: status for status, code in CODES.items()}


class ApiError(Exception):
    """An error answered as the envelope with ``status``; ``code`` defaults from the status."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.code = code or CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL")


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def conflict(message: str) -> ApiError:
    return ApiError(409, message)


def unprocessable(message: str) -> ApiError:
    return ApiError(422, message)


def envelope(status: int, message: str, code: str | None = None) -> Response:
    response = jsonify({"error": {"code": code or CODES.get(status, "INTERNAL"), "message": message}})
    response.status_code = status
    return response


def _api_error(exc: ApiError) -> Response:
    return envelope(exc.status, exc.message, exc.code)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 404:
        message = "no such route; the API lives under <path>/api (see openapi.json)"
    elif status == 405:
        message = "method not allowed on this route"
    elif status == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
        message = f"the request body is larger than the limit of {limit // 1024} KiB"
    else:
        message = exc.description or exc.name
    response = envelope(status if status in CODES else (400 if status < 500 else 500), message)
    if status == 405 and exc.get_response().headers.get("Allow"):
        response.headers["Allow"] = exc.get_response().headers["Allow"]
    return response


def _unavailable(exc: Exception) -> Response:
    refusal = as_refusal(exc)
    if refusal is not None:  # Redis answers but refuses writes (out of memory, read-only...)
        log.warning("%s", refusal)
        return envelope(503, f"redis refuses writes: {refusal.reason}; retry shortly")
    log.warning("redis unavailable: %s", exc)
    return envelope(503, "redis is unavailable; retry shortly")


def _response_error(exc: redis.ResponseError) -> Response:
    """A Redis error reply: a temporary refusal of writes is 503, anything else a bug (500)."""
    if as_refusal(exc) is not None:
        return _unavailable(exc)
    return _internal(exc)


def _internal(exc: Exception) -> Response:
    log.exception("internal error: %s", exc)
    return envelope(500, "internal error; see the server log")


def check_path() -> None:
    """before_request: a path that is not UTF-8 is a 400. Werkzeug decodes it with U+FFFD in place
    of the bad bytes, which would name another queue, job or tag (queues/%FF/pause paused a queue
    called '\ufffd'). The request line as sent (RAW_URI, REQUEST_URI: gunicorn, Werkzeug) is
    judged, else WSGI's PATH_INFO (the path's bytes as latin-1)."""
    environ = request.environ
    sent = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    try:
        if sent:
            unquote_to_bytes(sent.split("?", 1)[0]).decode("utf-8")
        else:
            environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise ApiError(400, "the URL path is not valid UTF-8 (percent-encode UTF-8 bytes)") from None


def register(app: Flask) -> None:
    app.before_request(check_path)
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(redis.ConnectionError, _unavailable)
    app.register_error_handler(redis.TimeoutError, _unavailable)
    app.register_error_handler(redis.ResponseError, _response_error)
    app.register_error_handler(Exception, _internal)
