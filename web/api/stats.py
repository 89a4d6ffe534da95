"""GET stats: the dashboard's key figures (Horizon's field names, JSON numbers)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from web.services import services

bp = Blueprint("api_stats", __name__)


def master_status(masters: dict[str, Any]) -> str:
    """inactive with no master, paused when every master is paused, else running."""
    if not masters:
        return "inactive"
    return "paused" if all(m.get("status") == "paused" for m in masters.values()) else "running"


def total_processes(masters: dict[str, Any]) -> int:
    """Worker processes over every supervisor of every master (a multi-queue pool counts once)."""
    supervisors = [sup for m in masters.values() for sup in m.get("supervisors", [])]
    return sum(int(n) for sup in supervisors for n in (sup.get("processes") or {}).values())


@bp.get("/stats")
def view() -> dict[str, Any]:
    s = services()
    masters = s.masters.all()
    failed = s.metrics.failed_jobs_count()
    return {
        "jobsPerMinute": s.metrics.jobs_per_minute(),
        "processes": total_processes(masters),
        "queueWithMaxRuntime": s.metrics.queue_with_max_runtime(),
        "queueWithMaxThroughput": s.metrics.queue_with_max_throughput(),
        "recentJobs": s.metrics.recent_jobs_count(),
        "recentlyFailed": failed,
        "failedJobs": failed,
        "pausedMasters": sum(1 for m in masters.values() if m.get("status") == "paused"),
        "periods": {"recentJobs": s.settings.trim.recent, "failedJobs": s.settings.trim.recent_failed},
        "status": master_status(masters),
        "wait": s.workload.waits(),
    }
