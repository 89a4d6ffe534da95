"""Master and supervisor heartbeat records, the command lists, periodic-task locks and queue loads.

A record is a JSON string at ``master:<name>`` / ``supervisor:<name>`` with a short expiry; the
``masters`` / ``supervisors`` zsets index the names by last heartbeat. ``MasterRepository.all()``
is exactly what ``GET /horizon/api/masters`` serves (SPEC 9.1).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from horizon.context import Horizon

RECORD_TTL = 15  # seconds a heartbeat record lives without a refresh


def _loads(values: Iterable[str | None]) -> list[dict[str, Any]]:
    records = []
    for value in values:
        if value:
            try:
                records.append(json.loads(value))
            except ValueError:
                continue
    return records


class _Records:
    """Heartbeat records of one kind (``master`` or ``supervisor``)."""

    kind = ""

    def __init__(self, hz: Horizon) -> None:
        self.hz, self.redis, self.keys = hz, hz.redis, hz.keys

    def _key(self, name: str) -> str:
        return self.keys.build(self.kind, name)

    def _index(self) -> str:
        return self.keys.build(self.kind + "s")

    def update(self, record: dict[str, Any], ttl: float = RECORD_TTL) -> None:
        """Write a heartbeat record (must carry ``name``) and index it, in one round trip."""
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self._key(record["name"]), json.dumps(record, separators=(",", ":")), px=int(ttl * 1000))
        pipe.zadd(self._index(), {record["name"]: now})
        pipe.zremrangebyscore(self._index(), "-inf", now - max(ttl, RECORD_TTL) * 4)
        pipe.execute()

    def forget(self, name: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(self._key(name))
        pipe.zrem(self._index(), name)
        pipe.execute()

    def names(self) -> list[str]:
        return list(self.redis.zrange(self._index(), 0, -1))

    def records(self) -> list[dict[str, Any]]:
        """Every live record (names whose record expired are skipped), sorted by name."""
        names = self.names()
        if not names:
            return []
        found = _loads(self.redis.mget([self._key(n) for n in names]))
        return sorted(found, key=lambda r: r.get("name", ""))

    def find(self, name: str) -> dict[str, Any] | None:
        found = _loads([self.redis.get(self._key(name))])
        return found[0] if found else None


class SupervisorRepository(_Records):
    """Supervisor records: ``{name, master, pid, status, processes, options, workers}``."""

    kind = "supervisor"

    def processes_by_queue(self) -> dict[str, int]:
        """Processes per ``connection:queue`` over live supervisors (a multi-queue pool counts for each)."""
        totals: dict[str, int] = {}
        for record in self.records():
            for key, count in (record.get("processes") or {}).items():
                connection, _, queues = key.partition(":")
                for queue in queues.split(","):
                    name = f"{connection}:{queue}"
                    totals[name] = totals.get(name, 0) + int(count)
        return totals

    def queue_loads(self, queues: Sequence[str]) -> dict[str, tuple[int, float]]:
        """(pending length, runtime estimate ms) per queue, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(self.keys.queue(queue))
            pipe.hget(self.keys.queue_metrics(queue), "estimate")
        replies = pipe.execute()
        loads = {}
        for i, queue in enumerate(queues):
            length, estimate = replies[2 * i], replies[2 * i + 1]
            loads[queue] = (int(length or 0), float(estimate or 0))
        return loads


class MasterRepository(_Records):
    """Master records ``{name, environment, pid, status}``; ``all()`` adds their supervisors."""

    kind = "master"

    def all(self) -> dict[str, dict[str, Any]]:
        """Object keyed by master name, each with its live ``supervisors`` list (SPEC 9.1 shape)."""
        masters = {r["name"]: {**r, "supervisors": []} for r in self.records() if "name" in r}
        for sup in SupervisorRepository(self.hz).records():
            master = masters.get(sup.get("master", ""))
            if master is not None:
                master["supervisors"].append(sup)
        return masters


class CommandQueue:
    """Commands for one master or supervisor: ``commands:<name>`` lists, read and emptied at once."""

    def __init__(self, hz: Horizon) -> None:
        self.redis, self.keys = hz.redis, hz.keys

    def push(self, name: str, command: str, options: dict[str, Any] | None = None) -> None:
        item = json.dumps({"command": command, "options": options or {}}, separators=(",", ":"))
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(self.keys.commands(name), item)
        pipe.expire(self.keys.commands(name), 3600)
        pipe.execute()

    def pending(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        """Take every queued command for ``name`` (LRANGE + DEL in one MULTI)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.lrange(self.keys.commands(name), 0, -1)
        pipe.delete(self.keys.commands(name))
        items, _ = pipe.execute()
        commands = []
        for item in _loads(items):
            if isinstance(item, dict) and isinstance(item.get("command"), str):
                commands.append((item["command"], item.get("options") or {}))
        return commands

    def flush(self, name: str) -> None:
        self.redis.delete(self.keys.commands(name))


class Locks:
    """Periodic-task locks: one run per task and time slot across every master (SET NX PX)."""

    def __init__(self, hz: Horizon) -> None:
        self.redis, self.keys = hz.redis, hz.keys

    def acquire_slot(self, task: str, interval: float, owner: str, now: float | None = None) -> int | None:
        """Take the lock of the current ``interval``-long slot; its number, or None if taken."""
        now = time.time() if now is None else now
        slot = int(now // interval)
        key = self.keys.lock(f"{task}:{slot}")
        if self.redis.set(key, owner, nx=True, px=max(int(interval * 2000), 1000)):
            return slot
        return None
