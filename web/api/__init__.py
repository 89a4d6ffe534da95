"""The /api blueprints, one per resource; :func:`register` mounts them all under ``/api``."""

from __future__ import annotations

from web.api import batches, docs, events, jobs, masters, metrics, monitoring, queues, schedules, stats, workload

BLUEPRINTS = (
    stats.bp,
    workload.bp,
    masters.bp,
    monitoring.bp,
    metrics.bp,
    jobs.bp,
    queues.bp,
    events.bp,
    batches.bp,
    schedules.bp,
    docs.bp,
)

