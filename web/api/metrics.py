"""Metrics: measured job and queue names, and their snapshots (oldest first)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from web.services import services

bp = Blueprint("api_metrics", __name__)


@bp.get("/metrics/jobs")
def jobs() -> ResponseReturnValue:
    return jsonify(sorted(services().metrics.measured_jobs()))


@bp.get("/metrics/jobs/<rest:name>")
def job(name: str) -> ResponseReturnValue:
    return jsonify(services().metrics.job_snapshots(name))


@bp.get("/metrics/queues")
def queues() -> ResponseReturnValue:
    return jsonify(sorted(services().metrics.measured_queues()))


@bp.get("/metrics/queues/<rest:name>")
def queue(name: str) -> ResponseReturnValue:
    return jsonify(services().metrics.queue_snapshots(name))


@bp.get("/metrics/percentiles/jobs/<rest:name>")
def job_percentiles(name: str) -> dict[str, float]:
    """Runtime percentiles (ms) of a job name from its histogram: {p50, p95, p99}."""
    return services().metrics.percentiles("job", name)


@bp.get("/metrics/percentiles/queues/<rest:name>")
def queue_percentiles(name: str) -> dict[str, float]:
    """Runtime percentiles (ms) of a queue from its histogram: {p50, p95, p99}."""
    return services().metrics.percentiles("queue", name)
