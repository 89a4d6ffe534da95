"""MetricsRepository: throughput, runtimes, snapshots, percentiles and jobs per minute.

The finish script records, per job name and per queue (``metrics:job:<name>``,
``metrics:queue:<q>``): ``throughput`` and ``runtime`` (ms sum) since the last snapshot,
``runtime_total``, a runtime histogram ``b1..bN`` (upper bounds in ms: ``BUCKETS``, mirrored from
prelude.lua; ``b<N+1>`` is the overflow) and ``estimate`` (an exponential moving average of the
runtime in ms that snapshots never reset; the balancer and the wait times read it), plus a
``throughput:<unix minute>`` counter. The histogram and totals are cumulative, so percentiles
describe every job measured since the metrics began (as Prometheus histograms do).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from horizon.context import Horizon


def _lua_buckets() -> tuple[float, ...]:
    text = (resources.files("horizon") / "lua" / "prelude.lua").read_text()
    match = re.search(r"local BUCKETS = \{([^}]*)\}", text)
    if not match:
        raise RuntimeError("prelude.lua defines no BUCKETS table")
    return tuple(float(v) for v in match.group(1).split(","))


BUCKETS: tuple[float, ...] = _lua_buckets()  # histogram upper bounds, ms
KINDS = ("job", "queue")


def bucket_counts(h: dict[str, str]) -> list[int]:
    """Counts of buckets b1..b<N+1> (the last one is the overflow above BUCKETS[-1])."""
    return [int(h.get(f"b{i}", 0) or 0) for i in range(1, len(BUCKETS) + 2)]


def percentile(counts: list[int], q: float) -> float:
    """The q-quantile (0..1) in ms from bucket counts, interpolated linearly inside its bucket."""
    total = sum(counts)
    if total == 0:
        return 0.0
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            if i >= len(BUCKETS):
                return BUCKETS[-1]
            lower = BUCKETS[i - 1] if i else 0.0
            return lower + (BUCKETS[i] - lower) * max(rank - seen, 0) / count
        seen += count
    return BUCKETS[-1]


class MetricsRepository:
    """Reads measured job/queue metrics and takes snapshots."""

    def __init__(self, hz: Horizon, processes_by_queue: Callable[[], dict[str, int]] | None = None) -> None:
        self.hz, self.redis, self.keys = hz, hz.redis, hz.keys
        self.processes_by_queue = processes_by_queue

    # --- names and snapshots -----------------------------------------------------------------
    def measured_jobs(self) -> list[str]:
        return sorted(self.redis.smembers(self.keys.measured_jobs()))

    def measured_queues(self) -> list[str]:
        return sorted(self.redis.smembers(self.keys.measured_queues()))

    def job_snapshots(self, name: str) -> list[dict]:
        """Snapshots of job ``name``, oldest first: [{throughput, runtime (s), time}]."""
        return [json.loads(m) for m in self.redis.zrange(self.keys.job_snapshots(name), 0, -1)]

    def queue_snapshots(self, name: str) -> list[dict]:
        """Snapshots of queue ``name``, oldest first: [{throughput, runtime (s), wait (s), time}]."""
        return [json.loads(m) for m in self.redis.zrange(self.keys.queue_snapshots(name), 0, -1)]

    def snapshot(self) -> None:
        """Snapshot every measured job and queue, keep the newest ``trim_snapshots``, reset the interval."""
        from horizon.repositories.workload import WorkloadRepository

        waits = WorkloadRepository(self.hz, self.processes_by_queue).waits()
        by_queue = {name.split(":", 1)[1]: seconds for name, seconds in waits.items()}
        trim = self.hz.settings.metrics.trim_snapshots
        self.hz.scripts.call("snapshot", json.dumps(by_queue or {"": 0}), trim.job, trim.queue, uuid.uuid4().hex)

    def _latest(self, key: str) -> dict | None:
        last = self.redis.zrange(key, -1, -1)
        return json.loads(last[0]) if last else None

    # --- dashboard figures ---------------------------------------------------------------------
    def jobs_per_minute(self, now: float | None = None) -> float:
        """Jobs completed in the last 60 s: this minute's count plus the unexpired share of the last one."""
        now = self.hz.redis.time() if now is None else now
        if isinstance(now, tuple | list):
            now = now[0] + now[1] / 1e6
        minute = math.floor(now / 60)
        current, previous = self.redis.mget(self.keys.throughput(minute), self.keys.throughput(minute - 1))
        elapsed = (now - minute * 60) / 60
        return round(int(current or 0) + int(previous or 0) * (1 - elapsed), 2)

    def _queue_figure(self, field: str) -> str | None:
        """Measured queue with the largest ``field`` in its latest snapshot (current interval if none).
        A snapshot's runtime is in seconds; the current interval's sum is in milliseconds."""
        queues = self.measured_queues()
        pipe = self.redis.pipeline(transaction=False)
        for q in queues:
            pipe.zrange(self.keys.queue_snapshots(q), -1, -1)
            pipe.hmget(self.keys.queue_metrics(q), "throughput", "runtime")
        replies = pipe.execute() if queues else []
        best, best_value = None, 0.0
        for i, q in enumerate(queues):
            latest, (throughput, runtime) = replies[2 * i], replies[2 * i + 1]
            if latest:
                value = float(json.loads(latest[0]).get(field) or 0)
            else:
                count = int(throughput or 0)
                value = float(count if field == "throughput" else (float(runtime or 0) / count / 1000 if count else 0))
            if value > best_value:
                best, best_value = q, value
        return best

    def queue_with_max_runtime(self) -> str | None:
        return self._queue_figure("runtime")

    def queue_with_max_throughput(self) -> str | None:
        return self._queue_figure("throughput")

    def runtime_estimate_ms(self, queue: str) -> float:
        """The queue's runtime estimate (ms); survives snapshots; 0 before any job finished."""
        return float(self.redis.hget(self.keys.queue_metrics(queue), "estimate") or 0)

    def runtime_estimates_ms(self, queues: list[str]) -> dict[str, float]:
        """Estimates of several queues in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for q in queues:
            pipe.hget(self.keys.queue_metrics(q), "estimate")
        return {q: float(v or 0) for q, v in zip(queues, pipe.execute() if queues else [], strict=True)}

    def percentiles(self, kind: str, name: str) -> dict:
        """{"p50", "p95", "p99"} in ms for a job name or queue, from its runtime histogram."""
        if kind not in KINDS:
            raise ValueError(f"metrics kind must be one of {', '.join(KINDS)}, got {kind!r}")
        key = self.keys.job_metrics(name) if kind == "job" else self.keys.queue_metrics(name)
        counts = bucket_counts(self.redis.hgetall(key))
        return {f"p{int(q * 100)}": round(percentile(counts, q), 3) for q in (0.5, 0.95, 0.99)}

    def recent_jobs_count(self) -> int:
        return int(self.redis.zcard(self.keys.index("recent")))

    def failed_jobs_count(self) -> int:
        return int(self.redis.zcard(self.keys.index("recent_failed")))
