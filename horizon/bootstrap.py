"""Process start-up shared by the CLI commands: load settings, import job modules, connect."""

from __future__ import annotations

import importlib
import logging
import sys

from horizon.config import Settings

log = logging.getLogger(__name__)


class ImportJobsError(RuntimeError):
    """A module listed in ``imports`` could not be imported."""


def import_jobs(settings: Settings) -> list[str]:
    """Import the config's ``imports`` (the config file's folder first on sys.path)."""
    if settings.base_dir not in sys.path:
        sys.path.insert(0, settings.base_dir)
    importlib.import_module("horizon.builtin_jobs")  # horizon.http and horizon.cli
    done = []
    for module in settings.imports:
        try:
            importlib.import_module(module)
        except Exception as exc:
            where = settings.path or "settings"
            raise ImportJobsError(f"{where}: imports: cannot import {module!r}: {exc}") from exc
        done.append(module)
    return done
