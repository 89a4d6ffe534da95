"""Supervision intervals: module constants, each overridable by an environment variable (tests use short ones)."""

from __future__ import annotations

import os


def _seconds(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    try:
        return float(value) if value.strip() else default
    except ValueError:
        return default


LOOP_INTERVAL = _seconds("HORIZON_LOOP_INTERVAL", 0.5)  # longest wait between two loop() runs
HEARTBEAT_INTERVAL = _seconds("HORIZON_HEARTBEAT_INTERVAL", 2.0)  # record refresh
RECORD_TTL = _seconds("HORIZON_RECORD_TTL", 15.0)  # record expiry without a refresh
MEMORY_INTERVAL = _seconds("HORIZON_MEMORY_INTERVAL", 3.0)  # worker USS measurement for heartbeats
MAINTAIN_INTERVAL = _seconds("HORIZON_MAINTAIN_INTERVAL", 1.0)  # delayed jobs, reservations, trim
LONG_WAIT_INTERVAL = _seconds("HORIZON_LONG_WAIT_INTERVAL", 10.0)  # long-wait detection
ORPHAN_INTERVAL = _seconds("HORIZON_ORPHAN_INTERVAL", 5.0)  # jobs of dead local masters' workers (orphans.py)
RESTART_COOLDOWN = _seconds("HORIZON_RESTART_COOLDOWN", 1.0)  # first delay after a worker dies young
RESTART_COOLDOWN_MAX = _seconds("HORIZON_RESTART_COOLDOWN_MAX", 30.0)
YOUNG = _seconds("HORIZON_YOUNG", 2.0)  # a child dying sooner than this counts toward the cooldown
TERMINATE_GRACE = _seconds("HORIZON_TERMINATE_GRACE", 5.0)  # beyond the job timeout before SIGKILL


def restart_cooldown(previous: float, lived: float) -> float:
    """The wait before starting again a child that lived ``lived`` seconds: it doubles (from
    RESTART_COOLDOWN up to RESTART_COOLDOWN_MAX) while the child keeps dying young, else none."""
    if lived < YOUNG:
        return min(max(previous * 2, RESTART_COOLDOWN), RESTART_COOLDOWN_MAX)
    return 0.0
