"""Parse a jq job ``schedule``: ``unix_time``, ``date_time`` (ISO 8601 or relative ``+[[hh:]mm:]ss``) or ``cron``.

Pure: takes ``now`` (unix seconds) so tests control time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from web.rpc.protocol import invalid_params

_RELATIVE = re.compile(r"^\+(?:(?:(\d+):)?(\d+):)?(\d+)$")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*,/\-?LW#]+$")
MAX_DELAY = 10 * 366 * 86400


@dataclass(frozen=True)
class Schedule:
    """When a job runs: ``run_at`` (unix seconds) for one-time jobs, ``cron`` for recurring ones."""

    run_at: float | None = None
    cron: str | None = None


def parse_date_time(value: str, now: float) -> float:
    m = _RELATIVE.match(value)
    if m:
        hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
        delay = hours * 3600 + minutes * 60 + seconds
        if delay > MAX_DELAY:  # before the sum: a huge int does not fit a float
            raise invalid_params("schedule is more than 10 years ahead")
        return now + delay
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise invalid_params(
            f"schedule.date_time {value!r} is neither ISO 8601 (yyyy-mm-ddThh:mm:ss[Z|+hh:mm]) "
            "nor relative (+[[hh:]mm:]ss)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def check_cron(value: Any) -> str:
    if not isinstance(value, str):
        raise invalid_params("schedule.cron must be a string of 6 fields (seconds first)")
    fields = value.split()
    if len(fields) != 6 or not all(_CRON_FIELD.match(f) for f in fields):
        raise invalid_params(f"schedule.cron {value!r} must have 6 fields: sec min hour day month weekday")
    return " ".join(fields)


def _seconds(value: Any) -> float | None:
    """``value`` as a finite float, or None (not a number, a bool, NaN, an infinity, too large)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None


def parse_schedule(value: Any, now: float) -> Schedule:
    """A validated :class:`Schedule` from the ``schedule`` param (None = run now)."""
    if value is None:
        return Schedule()
    if not isinstance(value, dict) or len(value) != 1:
        raise invalid_params("schedule must be an object with exactly one of unix_time, date_time, cron")
    (kind, raw), = value.items()
    if kind == "unix_time":
        run_at = _seconds(raw)
        if run_at is None or run_at < 0:
            raise invalid_params("schedule.unix_time must be a non-negative, finite number of seconds")
    elif kind == "date_time":
        if not isinstance(raw, str):
            raise invalid_params("schedule.date_time must be a string")
        run_at = parse_date_time(raw, now)
    elif kind == "cron":
        return Schedule(cron=check_cron(raw))
    else:
        raise invalid_params(f"unknown schedule member {kind!r}: expected unix_time, date_time or cron")
    if run_at - now > MAX_DELAY:
        raise invalid_params("schedule is more than 10 years ahead")
    return Schedule(run_at=run_at)
