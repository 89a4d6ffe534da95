"""The ``jq`` task methods: ``get_job_history`` (finished tasks, newest first) and ``get_task``.

A one-time job is its own single task (task id = job id); a recurring job's runs are its tasks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from web.rpc import jq_model, jq_recurring
from web.rpc.jq_jobs import _count, _Refs
from web.rpc.jq_queues import Queues
from web.rpc.protocol import INVALID_PARAMS, Dispatcher, RpcError, invalid_params

if TYPE_CHECKING:
    from web.rpc.session import Connection

HISTORY_DEFAULT, HISTORY_MAX = 50, 500


def get_task(conn: Connection, *, id: Any) -> dict[str, Any]:  # noqa: A002
    conn.require_session()
    if not isinstance(id, str):
        raise invalid_params("id must be a task id (string)")
    refs = _Refs(conn)
    h = refs.tasks.record(id)
    if h is None or h.get("status") not in jq_model.FINISHED_STATUSES | {"reserved"}:
        raise RpcError(INVALID_PARAMS, "no such task", {"id": id})
    return jq_model.task_object(h, refs.ref(h.get("queue", "")), full=True)


HISTORY_FILTER = ("queue", "recurring", "job_id", "status")
STATUS_LISTS = {"completed": ("completed",), "failed": ("failed",), "deleted": (), "unknown": ()}


def get_job_history(
    conn: Connection, *, count: Any = None, last_id: Any = None, filter: Any = None  # noqa: A002
) -> list[dict[str, Any]]:
    conn.require_session()
    limit = _count(count, HISTORY_DEFAULT, HISTORY_MAX)
    if last_id is not None and not isinstance(last_id, str):
        raise invalid_params("last_id must be a task id (string)")
    f = filter or {}
    if not isinstance(f, dict) or set(f) - set(HISTORY_FILTER):
        raise invalid_params(f"filter must be an object with members among {', '.join(HISTORY_FILTER)}")
    if "status" in f and f["status"] not in STATUS_LISTS:
        raise invalid_params(f"filter.status must be one of {', '.join(STATUS_LISTS)}")
    if "recurring" in f and not isinstance(f["recurring"], bool):
        raise invalid_params("filter.recurring must be true or false")
    refs = _Refs(conn)
    queue = Queues(conn).get(f["queue"])["name"] if "queue" in f else None
    statuses = STATUS_LISTS[f["status"]] if "status" in f else ("completed", "failed")
    if "job_id" in f and not jq_recurring.is_recurring(str(f["job_id"])):
        h = refs.tasks.record(str(f["job_id"]))
        candidates = [h] if h and h.get("status") in statuses else []  # filter.status applies too
        return [jq_model.task_object(h, refs.ref(h["queue"])) for h in candidates if _keep(h, f, queue)]
    out: list[dict[str, Any]] = []
    before = last_id
    for _ in range(10):  # bounded: filtered pages stop after 10 reads
        page = refs.tasks.finished_ids(queue, statuses, before, limit)
        if not page:
            break
        for h in refs.tasks.records([task_id for task_id, _ in page]):
            if h and _keep(h, f, queue):
                out.append(jq_model.task_object(h, refs.ref(h["queue"])))
        before = page[-1][0]
        if len(out) >= limit or len(page) < limit:
            break
    return out[:limit]


def _keep(h: dict[str, str], f: dict[str, Any], queue: str | None) -> bool:
    if queue is not None and h.get("queue") != queue:
        return False
    if "recurring" in f and bool(h.get("schedule")) != f["recurring"]:
        return False
    if "job_id" in f and jq_recurring.is_recurring(str(f["job_id"])) and (
        jq_recurring.job_id(h.get("schedule", "")) != f["job_id"]
    ):
        return False
    return True


def register(dispatcher: Dispatcher) -> None:
    dispatcher.add("jq.get_job_history", get_job_history)
    dispatcher.add("jq.get_task", get_task)
