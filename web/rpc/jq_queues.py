"""The ``jq`` queue methods: identifiers, add/update/delete, suspend/activate, get_queue(s).

Our ``default`` queue is jq's ``__default__`` (id 1, and id 0 always names it). Queue ids,
priorities and job defaults live in :class:`QueueMetaRepository`; pause/resume/drain go
through :class:`QueueRepository`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from horizon.keys import QueueNameError, check_queue_name
from horizon.repositories.queue_meta import QueueMetaError, QueueMetaRepository
from horizon.repositories.queues import QueueRepository
from web.rpc.protocol import INVALID_PARAMS, Dispatcher, RpcError, invalid_params

if TYPE_CHECKING:
    from web.rpc.session import Connection

DEFAULT = "default"
JQ_DEFAULT = "__default__"
PRIORITIES = ("low", "normal", "high", "urgent")
PERSIST_OUTPUT = ("yes", "no", "error")
JOB_TYPES = ("http", "cli", "job")
MAX_SECONDS = 2147484
MAX_RETRIES = 999  # tries at most 1000, as the HTTP API allows (and exact in Lua's cjson)

DEFAULT_FIELDS = {
    "type": lambda v: v in JOB_TYPES,
    "priority": lambda v: v in PRIORITIES,
    "timeout": lambda v: _int(v) and 0 < v < MAX_SECONDS,
    "max_retry_count": lambda v: _int(v) and 0 <= v <= MAX_RETRIES,
    "retry_delay": lambda v: _int(v) and 0 <= v < MAX_SECONDS,
    "http_method": lambda v: isinstance(v, str) and v.upper() in ("GET", "POST", "PUT"),
    "http_content_type": lambda v: v in ("json", "url-encoded", "zend-server"),
    "validate_ssl": lambda v: isinstance(v, bool),
    "persist": lambda v: isinstance(v, bool),
    "persist_output": lambda v: v in PERSIST_OUTPUT,
}


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def display_name(queue: str) -> str:
    return JQ_DEFAULT if queue == DEFAULT else queue


def our_name(name: str) -> str:
    return DEFAULT if name == JQ_DEFAULT else name


def check_name(value: Any, what: str = "name") -> str:
    """A queue's name as horizon knows it (the rule of horizon.keys.check_queue_name)."""
    try:
        return our_name(check_queue_name(value))
    except QueueNameError as exc:
        raise invalid_params(f"{what}: {exc}") from None


def check_priority(value: Any) -> str:
    if value not in PRIORITIES:
        raise invalid_params(f"priority must be one of {', '.join(PRIORITIES)}, got {value!r}")
    return value


def check_defaults(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_params("job_defaults must be an object")
    for key, item in value.items():
        check = DEFAULT_FIELDS.get(key)
        if check is None:
            raise invalid_params(f"unknown job_defaults member {key!r}; expected {', '.join(DEFAULT_FIELDS)}")
        if not check(item):
            raise invalid_params(f"job_defaults.{key} has an invalid value {item!r}")
    return dict(value)


def queue_ref(q: dict[str, Any]) -> dict[str, Any]:
    return {"id": q["id"], "name": display_name(q["name"])}


def queue_object(q: dict[str, Any], *, defaults: bool = False) -> dict[str, Any]:
    out = {
        "id": q["id"],
        "name": display_name(q["name"]),
        "jobs_count": q["jobs_count"],
        "priority": q["priority"],
        "status": "suspended" if q["suspended"] else "running",
    }
    if q["name"] == DEFAULT:
        out["default"] = True
    if defaults:
        out["job_defaults"] = q["job_defaults"]
    return out


class Queues:
    """Queue lookups for one connection's horizon."""

    def __init__(self, conn: Connection) -> None:
        self.meta = QueueMetaRepository(conn.hz)
        self.repo = QueueRepository(conn.hz)

    def all(self) -> list[dict[str, Any]]:
        return self.meta.describe_all()

    def find(self, ident: Any) -> dict[str, Any] | None:
        """The described queue named by a jq queue identifier, or None if there is none."""
        if isinstance(ident, dict):
            if len(ident) != 1 or not ({"name", "id"} & set(ident)):
                raise invalid_params("a queue identifier object has exactly one of 'name' or 'id'")
            ident = ident.get("name", ident.get("id"))
        if _int(ident):
            if ident < 0:
                raise invalid_params("a queue id is a non-negative integer")
            match = (lambda q: q["name"] == DEFAULT) if ident == 0 else (lambda q: q["id"] == ident)
        elif isinstance(ident, str):
            name = check_name(ident, "queue name")
            match = lambda q: q["name"] == name  # noqa: E731
        else:
            raise invalid_params("a queue identifier is a name, an id, or an object with name or id")
        return next((q for q in self.all() if match(q)), None)

    def get(self, ident: Any) -> dict[str, Any]:
        q = self.find(DEFAULT if ident is None else ident)
        if q is None:
            raise RpcError(INVALID_PARAMS, "no such queue", {"queue": ident})
        return q


def _meta_error(exc: QueueMetaError) -> RpcError:
    return RpcError(INVALID_PARAMS, exc.message)


def _not_configured(queues: Queues, name: str, what: str) -> None:
    """A queue a supervisor of the config serves comes straight back (with a new id) when it is
    deleted or renamed: refused (-32602), it has to leave the config first."""
    if name in queues.meta.configured:
        raise invalid_params(
            f"queue {display_name(name)!r} is served by a supervisor of the config file and cannot be {what}; "
            "remove it from the supervisor's queue list first", {"queue": display_name(name)}
        )


def add_queue(
    conn: Connection, *, name: Any, suspended: Any = False, priority: Any = "normal", job_defaults: Any = None
) -> int:
    conn.require_session(write="jq.add_queue")
    if not isinstance(suspended, bool):
        raise invalid_params("suspended must be true or false")
    queue_name = check_name(name)
    try:
        q = Queues(conn).meta.add(
            queue_name, check_priority(priority), check_defaults(job_defaults or {}), suspended
        )
    except QueueMetaError as exc:
        raise _meta_error(exc) from None
    return q["id"]


def update_queue(
    conn: Connection, *, queue: Any, name: Any = None, priority: Any = None, job_defaults: Any = None
) -> int:
    conn.require_session(write="jq.update_queue")
    queues = Queues(conn)
    q = queues.get(queue)
    new_name = check_name(name) if name is not None else None
    if new_name is not None and new_name != q["name"]:
        _not_configured(queues, q["name"], "renamed")
    try:
        updated = queues.meta.update(
            q["name"],
            new_name,
            check_priority(priority) if priority is not None else None,
            check_defaults(job_defaults) if job_defaults is not None else None,
        )
    except QueueMetaError as exc:
        raise _meta_error(exc) from None
    return updated["id"]


def delete_queue(conn: Connection, *, queue: Any) -> str:
    conn.require_session(write="jq.delete_queue")
    queues = Queues(conn)
    q = queues.get(queue)
    if q["name"] == DEFAULT:
        raise invalid_params("the default queue cannot be deleted")
    _not_configured(queues, q["name"], "deleted")
    if not q["suspended"]:
        raise invalid_params("suspend the queue (jq.suspend_queue) before deleting it")
    queues.repo.drain(q["name"])
    try:
        queues.meta.delete(q["name"])
    except QueueMetaError as exc:
        raise _meta_error(exc) from None
    return "OK"


def has_queue(conn: Connection, *, queue: Any) -> bool:
    conn.require_session()
    return Queues(conn).find(queue) is not None


def suspend_queue(conn: Connection, *, queue: Any = None) -> str:
    conn.require_session(write="jq.suspend_queue")
    queues = Queues(conn)
    queues.repo.pause(queues.get(queue)["name"])
    return "OK"


def activate_queue(conn: Connection, *, queue: Any = None) -> str:
    conn.require_session(write="jq.activate_queue")
    queues = Queues(conn)
    queues.repo.resume(queues.get(queue)["name"])
    return "OK"


def is_queue_suspended(conn: Connection, *, queue: Any = None) -> bool:
    conn.require_session()
    return bool(Queues(conn).get(queue)["suspended"])


def get_queues(conn: Connection) -> list[dict[str, Any]]:
    conn.require_session()
    return [queue_object(q) for q in Queues(conn).all()]


def get_queue(conn: Connection, *, queue: Any = None) -> dict[str, Any]:
    conn.require_session()
    return queue_object(Queues(conn).get(queue), defaults=True)


def register(dispatcher: Dispatcher) -> None:
    for handler in (
        add_queue,
        update_queue,
        delete_queue,
        has_queue,
        suspend_queue,
        activate_queue,
        is_queue_suspended,
        get_queues,
        get_queue,
    ):
        dispatcher.add(f"jq.{handler.__name__}", handler)
