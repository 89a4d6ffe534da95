"""Periodic maintenance in the master (APScheduler): each task runs once per interval over every master.

Everything the tasks use is imported at the top, before the master forks its supervisors: those
pages are then shared copy-on-write with every child instead of private to the master (its USS).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from horizon.context import Horizon
from horizon.repositories.metrics import MetricsRepository
from horizon.repositories.supervisors import Locks, SupervisorRepository
from horizon.repositories.workload import WorkloadRepository
from horizon.schedules import fire_due
from supervisor import tuning
from supervisor.steps import LoopSteps

log = logging.getLogger(__name__)


def maintain_queues(hz: Horizon) -> None:
    """Move due delayed jobs, recover expired reservations, trim the indexes."""
    promoted, recovered = hz.queue.maintain()
    if recovered:
        log.warning("recovered %d expired reservation(s)", recovered)


def snapshot_metrics(hz: Horizon) -> None:
    """Record a metrics snapshot."""
    MetricsRepository(hz).snapshot()


def detect_long_waits(hz: Horizon) -> None:
    """Log (and record as events) queues waiting longer than their ``waits`` threshold."""
    WorkloadRepository(hz, processes_by_queue=SupervisorRepository(hz).processes_by_queue).long_waits()


def fire_schedules(hz: Horizon, owner: str) -> None:
    """Dispatch due schedule occurrences; a lock per (schedule, fire time) makes each fire once."""
    fire_due(hz, owner=owner)


class Maintenance:
    """A background scheduler whose locked tasks fire once per interval across every master."""

    def __init__(self, hz: Horizon, owner: str) -> None:
        self.hz, self.owner = hz, owner
        self.locks = Locks(hz)
        self.steps = LoopSteps(log, "maintenance")  # a Redis outage: one warning, not a traceback a second
        self.scheduler = BackgroundScheduler(
            daemon=True, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 5}
        )
        logging.getLogger("apscheduler").setLevel(logging.WARNING)

    def add_defaults(self) -> Maintenance:
        self.add("maintain", tuning.MAINTAIN_INTERVAL, lambda: maintain_queues(self.hz))
        self.add("snapshot", float(self.hz.settings.metrics.snapshot_interval), lambda: snapshot_metrics(self.hz))
        self.add("long_waits", tuning.LONG_WAIT_INTERVAL, lambda: detect_long_waits(self.hz))
        # at the top of every second; locked per occurrence inside fire_due, not per slot
        self.scheduler.add_job(
            self.steps.run, "cron", second="*", id="schedules",
            args=("schedules", lambda: fire_schedules(self.hz, self.owner)), kwargs={"always_calls_redis": True},
        )
        return self

    def add(self, task: str, interval: float, fn: Callable[[], Any], *, locked: bool = True) -> None:
        self.scheduler.add_job(self.run_task, "interval", seconds=interval, args=(task, interval, fn, locked), id=task)

    def run_task(self, task: str, interval: float, fn: Callable[[], Any], locked: bool = True) -> bool:
        """Run ``fn`` when this master takes the task's lock for the current slot; True if it ran."""
        ran = False

        def step() -> None:
            nonlocal ran
            slot = self.locks.acquire_slot(task, interval, self.owner) if locked else 0
            if slot is not None:
                fn()
                ran = True
                log.debug("task %s ran (slot %s)", task, slot)

        self.steps.run(task, step, always_calls_redis=locked)
        return ran

    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
