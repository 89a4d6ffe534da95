"""Job payloads: JSON only, never pickle. Encoding fails loudly before anything is written."""

from __future__ import annotations

import json
import json.scanner
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

# one encoder for every payload: json.dumps with options builds a new JSONEncoder per call
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)
# for a payload holding a lone surrogate (a str from bytes decoded with surrogateescape, such as an
# undecodable file name): Redis takes UTF-8, which cannot carry it, but a \udcxx escape can, and
# decodes back to the same str in the worker
_ASCII_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=True)


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# ... and the C encoder behind it, built once: JSONEncoder.encode builds a new one per call,
# which costs a dispatch more than the encoding. No circular check (a cycle ends in
# RecursionError, reported below); otherwise the same output and errors as _ENCODER.
_C_ENCODER = (
    json.encoder.c_make_encoder(None, _not_json, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    if json.encoder.c_make_encoder is not None
    else None
)


def _encode(data: dict[str, Any]) -> str:
    if _C_ENCODER is None:  # pragma: no cover - CPython has the C encoder
        return _ENCODER.encode(data)
    return "".join(_C_ENCODER(data, 0))


class PayloadError(TypeError):
    """A job argument cannot be carried as JSON; the message names the argument and its type."""


def _offender(value: Any, path: str) -> tuple[str, str] | None:
    """The first non-JSON value inside ``value`` as (path, description), or None."""
    if value is None or isinstance(value, (str, bool)):
        return None
    if isinstance(value, int):
        try:
            str(value)
        except ValueError:  # over sys.get_int_max_str_digits(): JSON cannot carry it
            return (path, f"int of more than {sys.get_int_max_str_digits()} digits")
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, f"float {value!r}")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return (path, f"dict key {key!r} of type {type(key).__name__}")
            found = _offender(item, f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _offender(item, f"{path}[{i}]")
            if found:
                return found
        return None
    return (path, f"{type(value).__name__} {value!r:.60}")


_NESTED = (Mapping, list, tuple)


def _has_other_key(data: dict[str, Any]) -> bool:
    """Whether a dict inside the (encoded, so acyclic) payload has a key that is not a str. The
    JSON encoder writes an int, float, bool or None key as a string: the job would get {"1": x}
    for {1: x}, and {1: x, "1": y} would lose a value. Iterative: no recursion limit to meet."""
    stack: list[Any] = [data["args"], data["kwargs"]]
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    return True
                if isinstance(item, _NESTED):
                    stack.append(item)
        else:
            stack.extend(item for item in value if isinstance(item, _NESTED))
    return False


def encodes(text: str, codec: str = "utf-8") -> bool:
    """Whether ``text`` can be written in ``codec`` (UTF-8: no lone surrogate)."""
    try:
        text.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def text_error(value: Any) -> str | None:
    """Why ``value`` (parsed JSON, which may hold a \\ud800-style escape) is not Unicode text that
    Redis can store: its first lone surrogate; None when it is."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"{exc.object[exc.start]!r} is a lone surrogate, not a Unicode character"
    return None


def encode(args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> str:
    """The payload JSON ``{"args": [...], "kwargs": {...}}``; PayloadError on non-JSON values."""
    data = {"args": list(args), "kwargs": dict(kwargs or {})}
    try:
        text = _encode(data)
        if not text.isascii() and not encodes(text):
            text = _ASCII_ENCODER.encode(data)
        if _has_other_key(data):
            raise TypeError("a dict key is not a str")
        return text
    except RecursionError:
        raise PayloadError(
            "job arguments are nested too deep or refer to themselves (payloads are JSON only)"
        ) from None
    except (TypeError, ValueError) as exc:
        where, what = (
            _offender(data["args"], "args")
            or _offender(data["kwargs"], "kwargs")
            or (
                "payload",
                str(exc),
            )
        )
        raise PayloadError(
            f"job argument {where} is not JSON-serialisable: {what} (payloads are JSON only)"
        ) from None


# The C scanner behind json.loads, called directly: json.loads first goes through two Python
# methods and a regular expression, which cost a woken worker more than the decoding (65 against
# 31 µs after 20 ms idle). Anything it does not take whole goes to json.loads, which skips
# surrounding whitespace or names what is malformed.
_C_SCANNER = json.scanner.c_make_scanner(json.JSONDecoder()) if json.scanner.c_make_scanner is not None else None


def _loads(text: str) -> Any:
    if _C_SCANNER is not None:
        try:
            value, end = _C_SCANNER(text, 0)
        except (StopIteration, ValueError, TypeError):
            pass
        else:
            if end == len(text):
                return value
    return json.loads(text)


DECODE_HEADROOM = 10_000  # frames added to the recursion limit to decode a deeply nested payload


def _loads_deep(text: str) -> Any:
    """Decode a payload nested deeper than the recursion limit allows here. The dispatcher's check
    is its own recursion limit at its own stack depth, which may be shallower than a worker's:
    what it encoded must decode here too."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + DECODE_HEADROOM)
    try:
        return _loads(text)
    finally:
        sys.setrecursionlimit(limit)


def decode(text: str) -> tuple[list[Any], dict[str, Any]]:
    """``(args, kwargs)`` from a payload JSON; ValueError names what is malformed."""
    try:
        data = _loads(text)
    except RecursionError:
        data = _loads_deep(text)
    if not isinstance(data, dict):
        raise ValueError("payload is not a JSON object")
    args, kwargs = data.get("args", []), data.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("payload args must be a list and kwargs an object")
    return args, kwargs
