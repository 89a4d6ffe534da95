"""The Redis key schema: every key horizon uses is documented and built here.

Every key starts with the configured prefix inside a hash tag (``{prefix}:``) so that all keys
land in one Redis Cluster slot and multi-key Lua scripts run anywhere. The Lua scripts get the
same builders through :func:`lua_builders`, generated from :data:`SCHEMA`, so the patterns live
in one place.

| pattern                         | type   | meaning                                               | expiry            |
|---------------------------------|--------|-------------------------------------------------------|-------------------|
| clock                           | string | last index score handed out (unique, monotonic µs)    | none              |
| job:<id>                        | hash   | one job (fields: repositories/jobs.py job_object)     | by status (trim)  |
| queues                          | set    | names of every queue ever pushed to                   | none              |
| queue:<q>                       | list   | pending job ids, LPUSH in, RPOP out (FIFO)            | none              |
| queue:<q>:wake                  | list   | wake-up tokens idle workers block on (BRPOP)          | none              |
| queue:<q>:delayed               | zset   | scheduled job ids scored by due time (unix s)         | none              |
| queue:<q>:reserved              | zset   | reserved job ids scored by deadline (whole seconds)   | none              |
| paused                          | set    | paused queue names (honoured by every worker)         | none              |
| index:<list>                    | zset   | recent/pending/completed/silenced/failed/             | trimmed by score  |
|                                 |        | recent_failed job ids scored by a clock stamp         |                   |
| index:queue:<q>:<list>          | zset   | same, per queue (completed, failed)                   | trimmed by score  |
| monitoring                      | set    | monitored tags                                        | none              |
| tag:<tag>:jobs                  | zset   | jobs carrying a monitored tag, by push stamp          | trimmed by score, |
|                                 |        | (pending, completed, failed; deleted on unmonitor)    | trim.monitored    |
| tag:<tag>:failed                | zset   | failed jobs carrying a tag, by clock stamp            | trimmed by score, |
|                                 |        |                                                       | trim.failed       |
| metrics:job:<name>              | hash   | throughput, runtime sum, failures, histogram buckets, | none              |
| metrics:queue:<q>               | hash   | runtime estimate (never reset by snapshots)           | none; deleted     |
|                                 |        |                                                       | with its jq queue |
| measured:jobs / measured:queues | set    | names that have metrics                               | none              |
| snapshots:job:<name>            | zset   | snapshots JSON by time, oldest first                  | trimmed by count  |
| snapshots:queue:<q>             | zset   | same for queues                                       | trimmed by count  |
| snapshots:taken                 | string | id of the last snapshot call (a re-run is a no-op)    | none              |
| throughput:<minute>             | string | jobs finished in that unix minute                     | 2 hours           |
| events                          | stream | job and queue events (SSE, RPC), capped at events_max | MAXLEN ~ /64 evts |
| masters / supervisors           | zset   | names by last heartbeat                               | members trimmed   |
| master:<name> / supervisor:<n>  | string | heartbeat record (JSON)                               | short expiry      |
| commands:<name>                 | list   | commands for one master or supervisor                 | none              |
| lock:<task>                     | string | periodic task lock (SET NX PX)                        | PX                |
| idempotency:<key>               | string | job id created with that idempotency key              | idempotency_ttl   |
| ratelimit:<q>                   | zset   | recent start times for a rate-limited queue           | window            |
| wait_alert:<connection:queue>   | string | rate-limit marker for long-wait alerts                | alert interval    |
| schedules                       | hash   | API-created schedules: name -> JSON entry             | none              |
| schedule:<name>:fired           | string | last time a schedule was considered (unix s, forward) | deleted with the  |
|                                 |        |                                                       | schedule          |
| lock:schedule:<name>:<time>     | string | one occurrence's dispatch lock (SET NX PX)            | 120 s             |
| batch:<id>                      | hash   | batch counts, failed ids, then/catch/finally job ids  | trim.failed after |
|                                 |        |                                                       | it finishes       |
| batches                         | zset   | batch ids by creation clock stamp                     | gone records      |
|                                 |        |                                                       | dropped           |
| job:<id>:children               | set    | continuations waiting for (or released by) the job    | with the parent   |
| queue_meta                      | hash   | jq queue ids, priorities, job defaults (RPC):         | none              |
|                                 |        | next_id, q:<name> -> JSON, id:<n> -> name             |                   |
| rpc:session:<sid>               | string | JSON-RPC websocket session {created, valid_until}     | its duration      |
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# name -> pattern; ``{p}`` is the hash-tagged prefix, other fields are arguments in order.
SCHEMA: dict[str, str] = {
    "clock": "{p}:clock",
    "job": "{p}:job:{id}",
    "queues": "{p}:queues",
    "queue": "{p}:queue:{queue}",
    "wake": "{p}:queue:{queue}:wake",
    "delayed": "{p}:queue:{queue}:delayed",
    "reserved": "{p}:queue:{queue}:reserved",
    "paused": "{p}:paused",
    "index": "{p}:index:{list}",
    "queue_index": "{p}:index:queue:{queue}:{list}",
    "monitoring": "{p}:monitoring",
    "tag_jobs": "{p}:tag:{tag}:jobs",
    "tag_failed": "{p}:tag:{tag}:failed",
    "job_metrics": "{p}:metrics:job:{name}",
    "queue_metrics": "{p}:metrics:queue:{queue}",
    "measured_jobs": "{p}:measured:jobs",
    "measured_queues": "{p}:measured:queues",
    "job_snapshots": "{p}:snapshots:job:{name}",
    "queue_snapshots": "{p}:snapshots:queue:{queue}",
    "snapshot_taken": "{p}:snapshots:taken",
    "throughput": "{p}:throughput:{minute}",
    "events": "{p}:events",
    "masters": "{p}:masters",
    "master": "{p}:master:{name}",
    "supervisors": "{p}:supervisors",
    "supervisor": "{p}:supervisor:{name}",
    "commands": "{p}:commands:{name}",
    "lock": "{p}:lock:{task}",
    "idempotency": "{p}:idempotency:{key}",
    "ratelimit": "{p}:ratelimit:{queue}",
    "wait_alert": "{p}:wait_alert:{queue}",
    "schedules": "{p}:schedules",
    "schedule_fired": "{p}:schedule:{name}:fired",
    "batch": "{p}:batch:{id}",
    "batches": "{p}:batches",
    "children": "{p}:job:{id}:children",
    "queue_meta": "{p}:queue_meta",
    "rpc_session": "{p}:rpc:session:{id}",
}

_FIELD = re.compile(r"\{(\w+)\}")

MAX_QUEUE_NAME = 100
_QUEUE_NAME = re.compile(rf"[^\s,/:{{}}\ud800-\udfff]{{1,{MAX_QUEUE_NAME}}}")
QUEUE_NAME_RULE = (f"1 to {MAX_QUEUE_NAME} characters, none of them whitespace, ',', '/', ':', '{{', '}}' "
                   "or a lone surrogate, and not '.' or '..'")
DOT_SEGMENTS = frozenset({".", ".."})  # a browser drops such a path segment, even as %2E%2E


class QueueNameError(ValueError):
    """A queue name horizon cannot serve (see :func:`check_queue_name`)."""


def is_queue_name(name: object) -> bool:
    return isinstance(name, str) and _QUEUE_NAME.fullmatch(name) is not None and name not in DOT_SEGMENTS


def check_queue_name(name: object) -> str:
    """``name`` if it can name a queue, else QueueNameError. Queue names end up in keys, in lists
    and in URLs: a ':' would let queue 'a:delayed' write into queue a's delayed set (a script
    stopped half-way by WRONGTYPE), a ',' could not be named in the config's or the CLI's
    comma-separated lists, a '/' in an API path, '{' or '}' would end the keys' hash tag, and a
    browser's URL parser drops a path segment '.' or '..' (the dashboard could not reach it)."""
    if is_queue_name(name):
        return name  # type: ignore[return-value]
    raise QueueNameError(f"invalid queue name {name!r}: a queue name is {QUEUE_NAME_RULE}")


@dataclass(frozen=True)
class Keys:
    """Builds every key for one prefix: ``Keys("horizon").job("abc") == "{horizon}:job:abc"``."""

    prefix: str

    @property
    def tagged(self) -> str:
        return "{" + self.prefix + "}"

    def build(self, name: str, *args: object) -> str:
        pattern = SCHEMA[name]
        fields = [f for f in _FIELD.findall(pattern) if f != "p"]
        if len(fields) != len(args):
            raise TypeError(f"key {name!r} takes {fields}, got {len(args)} arguments")
        values = dict(zip(fields, (str(a) for a in args), strict=True))
        values["p"] = self.tagged
        return _FIELD.sub(lambda m: values[m.group(1)], pattern)

    def __getattr__(self, name: str):
        if name in SCHEMA:
            return lambda *args: self.build(name, *args)
        raise AttributeError(name)

    def pattern(self) -> str:
        """SCAN match pattern for every key of this prefix."""
        return self.tagged + ":*"


def lua_builders() -> str:
    """Lua functions ``K.<name>(args...)`` mirroring :data:`SCHEMA`; they read the global ``P``."""
    lines = ["local K = {}"]
    for name, pattern in SCHEMA.items():
        fields = [f for f in _FIELD.findall(pattern) if f != "p"]
        parts = []
        for piece in re.split(r"(\{\w+\})", pattern):
            if not piece:
                continue
            m = _FIELD.fullmatch(piece)
            if m:
                parts.append("P" if m.group(1) == "p" else f"tostring({m.group(1)})")
            else:
                parts.append(repr(piece).replace("'", '"'))
        lines.append(f"K.{name} = function({', '.join(fields)}) return {' .. '.join(parts)} end")
    return "\n".join(lines)
