"""``jq.subscribe`` / ``jq.unsubscribe`` and the notifications fed from the event stream.

One reader thread per subscribed connection follows ``keys.events()`` (the stream the SSE
endpoint serves) with a blocking XREAD and turns events into ``jq.queue_status``,
``jq.job_status``, ``jq.job_finished`` and ``jq.task_finished`` notifications. It stops once the
connection's session is gone (expired, or destroyed from another connection): each read is
followed by a check of the session, and what that read found is dropped.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from horizon.repositories.events import EventRepository
from horizon.repositories.jq_tasks import JqTaskRepository
from horizon.repositories.queue_meta import QueueMetaRepository
from horizon.repositories.rpc_sessions import RpcSessionRepository
from web.rpc import jq_model
from web.rpc.jq_queues import Queues, display_name, queue_object
from web.rpc.protocol import Dispatcher, invalid_params

if TYPE_CHECKING:
    from web.rpc.session import Connection

log = logging.getLogger(__name__)

BLOCK_MS = 1000
BATCH = 100
QUEUE_COUNT_EVENTS = {"job:pending", "job:delayed", "job:reserved", "job:cancelled", "job:removed"}
TERMINAL = {"job:completed", "job:failed"}
DELETED = {"job:cancelled", "job:removed"}

Notify = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Filter:
    """What a connection subscribed to: queue names (None = all) and which event kinds."""

    queues: frozenset[str] | None = None
    queue_events: bool = True
    job_events: bool = True
    task_events: bool = True

    def wants_queue(self, name: str) -> bool:
        return self.queues is None or name in self.queues


def parse_filter(conn: Connection, params: dict[str, Any]) -> Filter:
    """The seed's subscription filter: no members = everything; ``queue`` plus trigger members."""
    unknown = sorted(set(params) - {"queue", "job_id", "task_id"})
    if unknown:
        raise invalid_params(f"unknown subscription filter member(s) {unknown}")
    if not params:
        return Filter()
    if "queue" not in params:
        raise invalid_params("job_id and task_id filters need a queue member")
    idents = params["queue"] if isinstance(params["queue"], list) else [params["queue"]]
    queues = Queues(conn)
    names = frozenset(queues.get(ident)["name"] for ident in idents) if idents else None
    return Filter(names, True, "job_id" in params, "task_id" in params)


class Subscription:
    """Follows the event stream from the moment of subscribing and sends matching notifications."""

    def __init__(self, conn: Connection, flt: Filter, notify: Notify) -> None:
        self.hz, self.filter, self.notify = conn.hz, flt, notify
        self.sid = conn.sid  # the session it belongs to (None: not tied to one)
        self.sessions = RpcSessionRepository(conn.hz)
        self.meta = QueueMetaRepository(conn.hz)
        self.tasks = JqTaskRepository(conn.hz)
        self.events = EventRepository(conn.hz)
        self.ids: dict[str, int] = {}
        self._stop = threading.Event()
        self.last_id = self.events.latest_id()
        self._thread = threading.Thread(target=self._run, name="rpc-subscription", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        outage = False  # a Redis outage is logged once, not a traceback a second
        while not self._stop.is_set():
            try:
                entries = self.events.read(self.last_id, BLOCK_MS, BATCH)
                if self.sid is not None and self.sessions.get(self.sid) is None:
                    log.info("rpc subscription: its session expired or was destroyed; stopping")
                    self._stop.set()
                    return
                for entry_id, fields in entries:
                    self.last_id = entry_id
                    if not self._stop.is_set():
                        self.dispatch(fields.get("event", ""), json.loads(fields.get("data") or "{}"))
                outage = False
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if self._stop.is_set():
                    return
                if not outage:
                    log.warning("rpc subscription: redis unavailable (%s); resuming from %s when it is back",
                                exc, self.last_id)
                    outage = True
                self._stop.wait(1)
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("rpc subscription: reading the event stream failed; retrying")
                self._stop.wait(1)

    # --- event -> notifications -------------------------------------------------------------
    def dispatch(self, event: str, data: dict[str, Any]) -> None:
        queue = data.get("queue", "")
        if not self.filter.wants_queue(queue):
            return
        if event.startswith("queue:"):
            if self.filter.queue_events:
                self._queue_status(queue, deleted=event == "queue:deleted")
            return
        if not event.startswith("job:"):
            return
        job_id = data.get("job_id", "")
        h = self.tasks.record(job_id) if job_id else None
        if h is None:
            h = {"id": job_id, "queue": queue, "name": data.get("name", ""), "status": data.get("status", "")}
        if data.get("status"):  # the status this event announced, not the job's status by now
            h = {**h, "status": data["status"]}
        ref = self._ref(queue)
        if self.filter.job_events:
            status = "deleted" if event in DELETED else jq_model.job_status(h, paused=self.tasks.paused(queue))
            self.notify("jq.job_status", jq_model.job_summary(h, ref, status))
        if event in TERMINAL and self.filter.task_events:
            self.notify("jq.task_finished", jq_model.task_object(h, ref))
        if (event in TERMINAL or event in DELETED) and self.filter.job_events and not h.get("schedule"):
            self.notify("jq.job_finished", {"id": job_id})
        if event in QUEUE_COUNT_EVENTS and self.filter.queue_events:
            self._queue_status(queue)

    def _ref(self, queue: str) -> dict[str, Any]:
        if queue not in self.ids:
            q = self.meta.describe(queue)
            if q is None:
                return {"id": None, "name": display_name(queue)}
            self.ids[queue] = q["id"]
        return {"id": self.ids[queue], "name": display_name(queue)}

    def _queue_status(self, queue: str, deleted: bool = False) -> None:
        q = None if deleted else self.meta.describe(queue)
        if q is None:
            params = {**self._ref(queue), "jobs_count": 0, "priority": "normal", "status": "deleted"}
        else:
            self.ids[queue] = q["id"]
            params = queue_object(q)
        self.notify("jq.queue_status", params)


def subscribe(conn: Connection, **params: Any) -> str:
    conn.require_session()
    flt = parse_filter(conn, params)
    if conn.subscription is not None:
        conn.subscription.stop()
    conn.subscription = Subscription(conn, flt, conn.extras["notify"])
    return "OK"


def unsubscribe(conn: Connection) -> str:
    conn.require_session()
    if conn.subscription is not None:
        conn.subscription.stop()
        conn.subscription = None
    return "OK"


def register(dispatcher: Dispatcher) -> None:
    dispatcher.add("jq.subscribe", subscribe)
    dispatcher.add("jq.unsubscribe", unsubscribe)

