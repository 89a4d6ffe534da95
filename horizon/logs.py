"""Logging setup: every record names the process role (master, supervisor or worker name)."""

from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(asctime)s %(levelname)s [%(horizon_name)s] %(name)s: %(message)s"
_name = f"horizon-{os.getpid()}"


class _NameFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.horizon_name = _name
        return True


def set_process_name(name: str) -> None:
    """Name this process in every later log record (call after fork)."""
    global _name
    _name = name


def setup_logging(name: str, level: str | int = "INFO") -> None:
    """Log to stderr with the process name in each record; safe to call again after a fork."""
    set_process_name(name)
    root = logging.getLogger()
    if not any(getattr(h, "_horizon", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(_NameFilter())
        handler._horizon = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(os.environ.get("HORIZON_LOG_LEVEL", level))
