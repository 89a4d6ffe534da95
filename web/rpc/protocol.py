"""JSON-RPC framing of seed 000 (ZendHQ): parse a frame, run requests and batches, shape errors.

Pure: no Redis, no websocket. A :class:`Dispatcher` maps method names to handlers
``handler(ctx, **params)``; ``handle_frame(text, ctx)`` returns the reply text (or None).
"""

from __future__ import annotations

import inspect
import json
import logging
import math
from collections.abc import Callable
from typing import Any

from horizon import payload

log = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
INVALID_SESSION = -32000
AUTHENTICATION_FAILED = -32001
ACCESS_DENIED = -32604  # the seed's "access denied" (here: read-only mode)
UNAVAILABLE = -32002  # a backing service (Redis) is unreachable: retry shortly

MAX_BATCH = 100

Handler = Callable[..., Any]


class RpcError(Exception):
    """An error reply: ``{"code", "message", "data"?}``."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def as_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def invalid_params(message: str, data: Any = None) -> RpcError:
    return RpcError(INVALID_PARAMS, message, data)


def error_reply(error: RpcError, id_: Any = None) -> dict[str, Any]:
    return {"id": id_, "error": error.as_dict()}


def _valid_id(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return (isinstance(value, (str, int)) and not isinstance(value, bool)) or value is None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def parse(text: str) -> Any:
    """A frame's JSON; ValueError for what JSON does not allow (NaN, Infinity, numbers that
    overflow a double) and for nesting deeper than the parser's recursion limit."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError("nested too deep") from None


def bind(handler: Handler, params: Any) -> dict[str, Any]:
    """Keyword arguments for ``handler`` from params given by position or by name.

    Keyword-only parameters name the accepted members; a handler taking ``**params`` accepts
    any member (it checks them itself) and only params by name.
    """
    signature = inspect.signature(handler).parameters.values()
    names = [p.name for p in signature if p.kind is inspect.Parameter.KEYWORD_ONLY]
    required = {p.name for p in signature if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is p.empty}
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature)
    if params is None:
        kwargs: dict[str, Any] = {}
    elif isinstance(params, list):
        if open_ended:
            raise invalid_params("params must be an object (by name) for this method")
        if len(params) > len(names):
            raise invalid_params(f"too many positional params: at most {len(names)} ({', '.join(names)})")
        kwargs = dict(zip(names, params, strict=False))
    elif isinstance(params, dict):
        unknown = sorted(set(params) - set(names))
        if unknown and not open_ended:
            raise invalid_params(f"unknown param(s) {', '.join(map(repr, unknown))}; expected {names}")
        kwargs = dict(params)
    else:
        raise invalid_params("params must be an array (by position) or an object (by name)")
    missing = sorted(required - set(kwargs))
    if missing:
        raise invalid_params(f"missing required param(s) {', '.join(map(repr, missing))}")
    return kwargs


class Dispatcher:
    """Method table plus the JSON-RPC request/batch logic."""

    def __init__(self, unavailable: tuple[type[BaseException], ...] = ()) -> None:
        self.methods: dict[str, Handler] = {}
        self.unavailable = unavailable  # exceptions that mean "retry shortly", not a bug (no traceback)

    def add(self, name: str, handler: Handler) -> None:
        self.methods[name] = handler

    def call(self, request: Any, ctx: Any) -> dict[str, Any]:
        """One request object to one response object (never raises)."""
        if not isinstance(request, dict):
            return error_reply(RpcError(INVALID_REQUEST, "a request must be a JSON object"))
        id_ = request.get("id")
        if not _valid_id(id_):
            return error_reply(RpcError(INVALID_REQUEST, "id must be a string or a number"))
        if "id" not in request:
            return error_reply(RpcError(INVALID_REQUEST, "missing member 'id'"))
        method = request.get("method")
        if not isinstance(method, str) or not method:
            return error_reply(RpcError(INVALID_REQUEST, "missing or non-string member 'method'"), id_)
        extra = sorted(set(request) - {"id", "method", "params", "jsonrpc"})
        if extra:
            return error_reply(RpcError(INVALID_REQUEST, f"unknown member(s) {extra}"), id_)
        handler = self.methods.get(method)
        if handler is None:
            return error_reply(RpcError(METHOD_NOT_FOUND, "method not found", {"method": method}), id_)
        try:
            result = handler(ctx, **bind(handler, request.get("params")))
        except RpcError as exc:
            return error_reply(exc, id_)
        except self.unavailable as exc:
            log.warning("rpc method %s: service unavailable (%s)", method, exc)
            return error_reply(RpcError(UNAVAILABLE, "redis is unavailable; retry shortly"), id_)
        except Exception:
            log.exception("rpc method %s failed", method)
            return error_reply(RpcError(INTERNAL_ERROR, "internal error"), id_)
        return {"id": id_, "result": result}

    def handle(self, message: Any, ctx: Any) -> Any:
        """A parsed message (object or batch array) to its reply."""
        if isinstance(message, list):
            if not message:
                return error_reply(RpcError(INVALID_REQUEST, "empty batch"))
            if len(message) > MAX_BATCH:
                return error_reply(RpcError(INVALID_REQUEST, f"batch too large: at most {MAX_BATCH} requests"))
            return [self.call(item, ctx) for item in message]
        return self.call(message, ctx)

    def handle_frame(self, frame: str | bytes, ctx: Any) -> str:
        """One websocket frame to the reply text (never raises)."""
        try:
            text = frame.decode("utf-8") if isinstance(frame, (bytes, bytearray)) else frame
            message = parse(text)
            if "\\u" in text and (problem := payload.text_error(message)):  # only an escape can make one
                raise ValueError(problem)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            reply: Any = error_reply(RpcError(PARSE_ERROR, "parse error", {"detail": str(exc)}))
        else:
            reply = self.handle(message, ctx)
        if isinstance(reply, list):
            return "[" + ",".join(_encode(item) for item in reply) + "]"
        return _encode(reply)


def _encode(reply: dict[str, Any]) -> str:
    """One reply object as JSON text; a result JSON cannot carry becomes -32603 (logged)."""
    try:
        return json.dumps(reply, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        log.exception("rpc reply cannot be encoded as JSON")
        id_ = reply.get("id")
        return json.dumps(error_reply(RpcError(INTERNAL_ERROR, "internal error"), id_ if _valid_id(id_) else None),
                          separators=(",", ":"))
