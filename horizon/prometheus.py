"""Prometheus text exposition of the horizon figures, for the web layer's ``/horizon/metrics``.

A custom collector reads Redis at scrape time (no process-global metric objects, so every web
worker serves the same numbers): jobs per minute, recent and failed counts, queue lengths and
waits, runtime estimates, completed/failed counters and runtime histograms per queue and job.
``render(hz)`` returns the body and its content type.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from horizon.repositories.metrics import BUCKETS, MetricsRepository, bucket_counts
from horizon.repositories.workload import WorkloadRepository

if TYPE_CHECKING:
    from horizon.context import Horizon


def _histogram(name: str, doc: str, label: str) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, labels=[label])


def _add_histogram(family: HistogramMetricFamily, value: str, h: dict[str, str]) -> None:
    counts = bucket_counts(h)
    cumulative, buckets = 0, []
    for bound, count in zip(BUCKETS, counts, strict=False):
        cumulative += count
        buckets.append((repr(bound / 1000), cumulative))
    buckets.append(("+Inf", sum(counts)))
    family.add_metric([value], buckets, float(h.get("runtime_total", 0) or 0) / 1000)


class HorizonCollector:
    """Collects the figures of one horizon from Redis on every scrape."""

    def __init__(self, hz: Horizon) -> None:
        self.hz = hz
        self.metrics = MetricsRepository(hz)

    def _hashes(self, kind: str, names: list[str]) -> list[dict[str, str]]:
        build = self.hz.keys.job_metrics if kind == "job" else self.hz.keys.queue_metrics
        pipe = self.hz.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(build(name))
        return pipe.execute() if names else []

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("horizon_jobs_per_minute", "Jobs completed in the last minute",
                                value=self.metrics.jobs_per_minute())
        yield GaugeMetricFamily("horizon_recent_jobs", "Jobs in the recent list",
                                value=self.metrics.recent_jobs_count())
        yield GaugeMetricFamily("horizon_recent_failed_jobs", "Jobs in the recently failed list",
                                value=self.metrics.failed_jobs_count())
        yield from self._queues()
        yield from self._jobs()

    def _queues(self) -> Iterator[Metric]:
        workload = WorkloadRepository(self.hz).workload()
        length = GaugeMetricFamily("horizon_queue_length", "Jobs ready in the queue", labels=["queue"])
        wait = GaugeMetricFamily("horizon_queue_wait_seconds", "Estimated wait of a new job", labels=["queue"])
        for entry in workload:
            for q in entry["split_queues"] or [entry]:
                length.add_metric([q["name"]], q["length"])
                wait.add_metric([q["name"]], q["wait"])
        yield length
        yield wait
        names = self.metrics.measured_queues()
        hashes = self._hashes("queue", names)
        estimate = GaugeMetricFamily("horizon_queue_runtime_estimate_seconds",
                                     "Runtime estimate (moving average)", labels=["queue"])
        completed = CounterMetricFamily("horizon_queue_jobs_completed", "Jobs completed", labels=["queue"])
        failed = CounterMetricFamily("horizon_queue_jobs_failed", "Jobs failed for good", labels=["queue"])
        runtime = _histogram("horizon_queue_runtime_seconds", "Runtime of completed jobs", "queue")
        for name, h in zip(names, hashes, strict=True):
            estimate.add_metric([name], float(h.get("estimate", 0) or 0) / 1000)
            completed.add_metric([name], sum(bucket_counts(h)))
            failed.add_metric([name], int(h.get("failed", 0) or 0))
            _add_histogram(runtime, name, h)
        yield from (estimate, completed, failed, runtime)

    def _jobs(self) -> Iterator[Metric]:
        names = self.metrics.measured_jobs()
        hashes = self._hashes("job", names)
        completed = CounterMetricFamily("horizon_job_completed", "Jobs completed, by job name", labels=["job"])
        failed = CounterMetricFamily("horizon_job_failed", "Jobs failed for good, by job name", labels=["job"])
        runtime = _histogram("horizon_job_runtime_seconds", "Runtime of completed jobs, by job name", "job")
        for name, h in zip(names, hashes, strict=True):
            completed.add_metric([name], sum(bucket_counts(h)))
            failed.add_metric([name], int(h.get("failed", 0) or 0))
            _add_histogram(runtime, name, h)
        yield from (completed, failed, runtime)


def render(hz: Horizon) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``hz`` and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HorizonCollector(hz))
    return generate_latest(registry), CONTENT_TYPE_LATEST
