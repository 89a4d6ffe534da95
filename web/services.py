"""The services the views use, kept in ``app.extensions["horizon"]``: settings and repositories.

Repositories are built on first use, so a repository module that is not installed only makes
the routes that need it answer 503 UNAVAILABLE instead of breaking the whole app.
"""

from __future__ import annotations

import importlib
from functools import cached_property
from typing import TYPE_CHECKING, Any

from flask import current_app

from web.errors import ApiError

if TYPE_CHECKING:
    from horizon.config import Settings
    from horizon.context import Horizon


def _load(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ApiError(503, f"{module}.{name} is not available: {exc}") from None


class Services:
    """Settings, the Horizon context and the repositories built from it."""

    def __init__(self, hz: Horizon, settings: Settings | None = None) -> None:
        self.hz = hz
        self.settings: Settings = settings or hz.settings

    @cached_property
    def jobs(self) -> Any:
        return _load("horizon.repositories.jobs", "JobRepository")(self.hz)

    @cached_property
    def tags(self) -> Any:
        return _load("horizon.repositories.tags", "TagRepository")(self.hz)

    @cached_property
    def metrics(self) -> Any:
        return _load("horizon.repositories.metrics", "MetricsRepository")(self.hz)

    @cached_property
    def masters(self) -> Any:
        return _load("horizon.repositories.supervisors", "MasterRepository")(self.hz)

    @cached_property
    def supervisors(self) -> Any:
        return _load("horizon.repositories.supervisors", "SupervisorRepository")(self.hz)

    @cached_property
    def commands(self) -> Any:
        return _load("horizon.repositories.supervisors", "CommandQueue")(self.hz)

    @cached_property
    def workload(self) -> Any:
        # its own reading of the supervisors' records keeps a multi-queue pool whole ("a,b" with
        # split_queues); processes_by_queue() below counts such a pool for each of its queues
        return _load("horizon.repositories.workload", "WorkloadRepository")(self.hz)

    @cached_property
    def queues(self) -> Any:
        from horizon.repositories.queues import QueueRepository

        return QueueRepository(self.hz, processes_by_queue=self.processes_by_queue, waits=self.waits)

    def processes_by_queue(self) -> dict[str, int]:
        return self.supervisors.processes_by_queue()

    def waits(self) -> dict[str, float]:
        return self.workload.waits()


def services() -> Services:
    return current_app.extensions["horizon"]
