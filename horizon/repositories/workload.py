"""WorkloadRepository: queue lengths, processes and wait times, and long-wait detection.

``length`` is the number of jobs ready now (the queue list, as Horizon's ``readyNow``; scheduled
and reserved jobs are not waiting for a process). The wait of ``connection:queue`` is the time a
newly pushed job would wait: length x the queue's runtime estimate / max(processes, 1). The same
``redis:<queue>`` names are used for processes (by default from the live supervisors' records),
waits and the ``waits`` thresholds. A pool serving several queues (``balance: false``) appears as
one ``"q1,q2"`` entry with ``split_queues``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from horizon.repositories.metrics import MetricsRepository

if TYPE_CHECKING:
    from horizon.context import Horizon

log = logging.getLogger(__name__)

CONNECTION = "redis"
DEFAULT_THRESHOLD = 60.0  # seconds, for queues the `waits` setting does not name (as Horizon)
ALERT_INTERVAL = 300  # seconds between two long-wait alerts of one queue


def _queue(name: str) -> str:
    """Bare queue name of ``connection:queue`` (or of a bare name)."""
    return name.split(":", 1)[1] if ":" in name else name


class WorkloadRepository:
    """Queue lengths, processes and waits for the dashboard, the balancer and alerts."""

    def __init__(self, hz: Horizon, processes_by_queue: Callable[[], dict[str, int]] | None = None) -> None:
        self.hz, self.redis, self.keys = hz, hz.redis, hz.keys
        self.processes_by_queue = processes_by_queue
        self.metrics = MetricsRepository(hz)

    def _processes(self) -> dict[str, int]:
        if self.processes_by_queue is not None:
            return {_queue(k): int(v) for k, v in self.processes_by_queue().items()}
        # default: the live supervisors' records, a multi-queue pool kept whole as "q1,q2"
        from horizon.repositories.supervisors import SupervisorRepository

        totals: dict[str, int] = {}
        for record in SupervisorRepository(self.hz).records():
            for key, count in (record.get("processes") or {}).items():
                totals[_queue(key)] = totals.get(_queue(key), 0) + int(count)
        return totals

    def _groups(self, processes: dict[str, int]) -> list[str]:
        """Workload entries: every known queue, with queues of a multi-queue pool grouped as "q1,q2"."""
        known = set(self.redis.smembers(self.keys.queues()))
        groups = {name for name in processes if "," in name}
        grouped = {q for g in groups for q in g.split(",")}
        singles = (known | {name for name in processes if "," not in name}) - grouped
        return sorted(groups | singles)

    def _lengths_and_estimates(self, queues: list[str]) -> tuple[dict[str, int], dict[str, float]]:
        pipe = self.redis.pipeline(transaction=False)
        for q in queues:
            pipe.llen(self.keys.queue(q))
            pipe.hget(self.keys.queue_metrics(q), "estimate")
        replies = pipe.execute() if queues else []
        lengths = {q: int(replies[2 * i]) for i, q in enumerate(queues)}
        estimates = {q: float(replies[2 * i + 1] or 0) for i, q in enumerate(queues)}
        return lengths, estimates

    def workload(self) -> list[dict]:
        """[{name, length, wait, processes, split_queues}] sorted by name (bare queue names)."""
        processes = self._processes()
        groups = self._groups(processes)
        queues = sorted({q for g in groups for q in g.split(",")})
        lengths, estimates = self._lengths_and_estimates(queues)
        out = []
        for group in groups:
            members = group.split(",")
            count = processes.get(group, 0)
            split = [
                {"name": q, "length": lengths[q], "wait": self._wait(lengths[q], estimates[q], count)}
                for q in members
            ]
            out.append(
                {
                    "name": group,
                    "length": sum(s["length"] for s in split),
                    "wait": round(sum(s["wait"] for s in split), 3),
                    "processes": count,
                    "split_queues": split if len(members) > 1 else [],
                }
            )
        return out

    @staticmethod
    def _wait(length: int, estimate_ms: float, processes: int) -> float:
        return round(length * estimate_ms / 1000 / max(processes, 1), 3)

    def waits(self) -> dict[str, float]:
        """{"redis:<queue>": seconds} for every known queue."""
        processes = self._processes()
        groups = self._groups(processes)
        queues = sorted({q for g in groups for q in g.split(",")})
        lengths, estimates = self._lengths_and_estimates(queues)
        per_queue = {q: processes.get(q, 0) for q in queues}
        for group in groups:
            for q in group.split(","):
                per_queue[q] = max(per_queue[q], processes.get(group, 0))
        return {f"{CONNECTION}:{q}": self._wait(lengths[q], estimates[q], per_queue[q]) for q in queues}

    def threshold(self, name: str) -> float:
        """Long-wait threshold (s) of ``connection:queue``; 0 disables the alert."""
        return float(self.hz.settings.waits.get(name, DEFAULT_THRESHOLD))

    def long_waits(self) -> list[dict]:
        """Queues waiting longer than their threshold: [{name, wait, threshold}]; alerts (logged and
        recorded as a ``queue:long_wait`` event) at most once per ALERT_INTERVAL per queue."""
        found = []
        for name, wait in sorted(self.waits().items()):
            limit = self.threshold(name)
            if limit <= 0 or wait <= limit:
                continue
            found.append({"name": name, "wait": wait, "threshold": limit})
            if int(self.hz.scripts.call("long_wait", name, repr(wait), repr(limit), ALERT_INTERVAL)):
                log.warning("long wait on %s: %.1fs (threshold %.0fs)", name, wait, limit)
        return found
