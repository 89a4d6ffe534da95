"""Request parsing for the API: query parameters and JSON bodies, with errors naming the field."""

from __future__ import annotations

import json
import math
from typing import Any

from flask import request

from horizon import payload
from web.errors import bad_request

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def starting_at() -> float | None:
    """``starting_at``: the index of the last job already shown; absent or -1 = first page."""
    raw = request.args.get("starting_at", "")
    if raw in ("", "-1"):
        return None
    try:
        value = float(raw)
    except ValueError:
        raise bad_request(f"starting_at must be a number (a job's index, or -1), got {raw!r}") from None
    if not math.isfinite(value):
        raise bad_request(f"starting_at must be a finite number, got {raw!r}")
    return None if value < 0 else value


def limit(default: int = PAGE_SIZE) -> int:
    """``limit``: page size, clamped to 1..MAX_PAGE_SIZE."""
    raw = request.args.get("limit", "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"limit must be an integer, got {raw!r}") from None
    return max(1, min(value, MAX_PAGE_SIZE))


def body(*, required: bool = False) -> dict[str, Any]:
    """The JSON object body ({} when empty and not required)."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise bad_request("a JSON object body is required")
        return {}
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request(f"malformed JSON body: {exc}") from None
    except RecursionError:
        raise bad_request("malformed JSON body: nested too deep") from None
    if not isinstance(data, dict):
        raise bad_request(f"the body must be a JSON object, got {type(data).__name__}")
    if b"\\u" in raw and (problem := payload.text_error(data)):  # only an escape can make one
        raise bad_request(f"malformed JSON body: {problem}")
    return data


def only(data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise bad_request(f"unknown field(s) {', '.join(unknown)}; expected some of {', '.join(sorted(allowed))}")


def string(data: dict[str, Any], field: str, *, max_len: int = 1000, default: str | None = None) -> str | None:
    value = data.get(field, default)
    if value is None:
        return default
    if not isinstance(value, str) or not value:
        raise bad_request(f"{field} must be a non-empty string")
    if len(value) > max_len:
        raise bad_request(f"{field} must be at most {max_len} characters")
    return value


def _text(x: float) -> str:
    """A bound as written: whole numbers in full (315360000, not 3.1536e+08)."""
    return f"{x:.0f}" if float(x).is_integer() else f"{x:g}"


def number(data: dict[str, Any], field: str, *, minimum: float = 0, maximum: float = 10**9) -> float | None:
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_request(f"{field} must be a number")
    if not minimum <= value <= maximum:
        raise bad_request(f"{field} must be between {_text(minimum)} and {_text(maximum)}, got {value!r}")
    return float(value)


def integer(data: dict[str, Any], field: str, *, minimum: int = 1, maximum: int = 1000) -> int | None:
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{field} must be an integer")
    if not minimum <= value <= maximum:
        raise bad_request(f"{field} must be between {minimum} and {maximum}, got {value}")
    return value
