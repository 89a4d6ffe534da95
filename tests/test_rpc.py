"""JSON-RPC over WebSocket (/horizon/rpc) through gunicorn (`horizon web`) with a real worker.

One `horizon web` and one `horizon work` serve the whole module (own prefix); a real websocket
client (the `websockets` package) talks to them. Each test uses its own queues where it can.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from websockets.sync.client import connect

from tests.conftest import HORIZON, ROOT
from tests.helpers import wait_for

TOKEN = "rpc-test-token"
WORK_QUEUES = "default,rpcjobs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The module's `horizon web` + `horizon work` processes and their settings."""

    def __init__(self, url: str, base: str, prefix: str, redis_url: str) -> None:
        self.url, self.base, self.prefix = url, base, prefix
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)

    def key(self, *parts: str) -> str:
        return "{" + self.prefix + "}:" + ":".join(parts)


@pytest.fixture(scope="module")
def server(redis_server, tmp_path_factory) -> Iterator[Server]:
    prefix = "rpc" + uuid.uuid4().hex[:8]
    port = free_port()
    cfg = {
        "prefix": prefix,
        "redis": {"url": redis_server.url},
        "imports": ["tests.sample_jobs"],
        "web": {"bind": f"127.0.0.1:{port}", "auth": {"token": TOKEN}, "workers": 1},
        "job_types": {"cli": {"enabled": True}},
        "defaults": {"supervisor-1": {"queue": ["default", "rpcjobs"], "max_processes": 1, "timeout": 30}},
    }
    path = Path(tmp_path_factory.mktemp("rpc")) / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PYTHONPATH=str(ROOT), HORIZON_TEST_REDIS=redis_server.url)
    env.pop("HORIZON_CONFIG", None)
    env.pop("HORIZON_REDIS_URL", None)
    procs = [
        subprocess.Popen([*HORIZON, verb, *args, "--config", str(path)], env=env, cwd=str(ROOT),
                         start_new_session=True)
        for verb, args in (("web", []), ("work", ["--queue", WORK_QUEUES]))
    ]
    srv = Server(f"ws://127.0.0.1:{port}/horizon/rpc", f"http://127.0.0.1:{port}/horizon", prefix, redis_server.url)

    def up() -> bool:
        try:
            with connect(srv.url, open_timeout=1) as ws:
                ws.send('{"id":1,"method":"session.version"}')
                return "result" in json.loads(ws.recv(timeout=2))
        except (OSError, TimeoutError, Exception):
            assert all(p.poll() is None for p in procs), "horizon web/work exited"
            return False

    wait_for(up, timeout=30, interval=0.2, message="horizon web did not serve /horizon/rpc")
    yield srv
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    keys = list(srv.redis.scan_iter(match=f"{{{prefix}}}:*", count=1000))
    if keys:
        srv.redis.delete(*keys)


class Client:
    """A websocket JSON-RPC client that sets notifications aside while waiting for replies."""

    def __init__(self, url: str) -> None:
        self._connection = connect(url, open_timeout=5)
        self.ws = self._connection.__enter__()
        self.next_id = 0
        self.notifications: list[dict[str, Any]] = []

    def close(self) -> None:
        self._connection.__exit__(None, None, None)

    def raw(self, frame: str | bytes) -> Any:
        self.ws.send(frame)
        return self._reply()

    def _reply(self) -> Any:
        while True:
            message = json.loads(self.ws.recv(timeout=10))
            if isinstance(message, dict) and "event" in message:
                self.notifications.append(message)
                continue
            return message

    def request(self, method: str, params: Any = None) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method}
        if params is not None:
            message["params"] = params
        reply = self.raw(json.dumps(message))
        assert reply["id"] == self.next_id
        return reply

    def call(self, method: str, params: Any = None) -> Any:
        reply = self.request(method, params)
        assert "error" not in reply, reply
        return reply["result"]

    def error(self, method: str, params: Any = None) -> dict[str, Any]:
        reply = self.request(method, params)
        assert "result" not in reply, reply
        return reply["error"]

    def login(self) -> dict[str, Any]:
        return self.call("session.create", {"token": TOKEN})

    def wait_event(self, predicate, timeout: float = 15) -> dict[str, Any]:
        """The first notification (seen or arriving) matching ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            for i, note in enumerate(self.notifications):
                if predicate(note):
                    return self.notifications.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching notification within {timeout}s; got {self.notifications}")
            try:
                self.notifications.append(json.loads(self.ws.recv(timeout=left)))
            except TimeoutError:
                pass


@pytest.fixture
def rpc(server: Server) -> Iterator[Client]:
    client = Client(server.url)
    yield client
    client.close()


@pytest.fixture
def session(rpc: Client) -> Client:
    rpc.login()
    return rpc


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


# --- sessions ------------------------------------------------------------------------------------
def test_session_create_id_destroy_restore(server: Server) -> None:
    first = Client(server.url)
    assert first.call("session.version") == {"major": 1, "minor": 1}
    assert first.call("session.namespaces") == [
        {"namespace": "session", "authorized": True},
        {"namespace": "jq", "authorized": False},
    ]
    created = first.call("session.create", {"token": TOKEN, "duration": 600})
    assert abs(created["valid_until"] - (time.time() + 600)) < 30
    assert server.redis.ttl(server.key("rpc", "session", created["sid"])) > 500
    assert first.call("session.id") == created
    assert {"namespace": "jq", "authorized": True, "licensed": True} in first.call("session.namespaces")
    assert first.error("session.create", {"token": TOKEN})["code"] == -32000  # already has one
    first.close()

    second = Client(server.url)  # a new connection restores it (positional params)
    assert second.call("session.restore", [created["sid"], TOKEN]) == created
    assert second.call("jq.version") == {"major": 1, "minor": 0}
    assert second.call("session.destroy") == "OK"
    assert server.redis.exists(server.key("rpc", "session", created["sid"])) == 0
    assert second.error("jq.version")["code"] == -32000
    assert second.error("session.id")["code"] == -32000
    bad = second.error("session.restore", {"sid": created["sid"], "token": TOKEN})
    assert bad == {"code": -32000, "message": "invalid session id"}
    second.close()


def test_wrong_token_and_no_session(rpc: Client) -> None:
    assert rpc.error("session.create", {"token": "nope"})["code"] == -32001
    assert rpc.error("session.create")["code"] == -32001
    assert rpc.error("session.restore", {"sid": "whatever", "token": "nope"})["code"] == -32001
    for method in ("jq.version", "jq.get_queues", "jq.add_job", "jq.subscribe"):
        error = rpc.error(method)
        assert error["code"] == -32000, (method, error)
        assert "session" in error["message"]


def test_session_expires(server: Server, rpc: Client) -> None:
    created = rpc.call("session.create", {"token": TOKEN, "duration": 1})
    wait_for(lambda: not server.redis.exists(server.key("rpc", "session", created["sid"])), timeout=5)
    assert rpc.error("jq.version")["code"] == -32000


# --- framing and error codes ---------------------------------------------------------------------
def test_a_call_redis_refuses_for_now_answers_retry_shortly(rpc: Client, redis_client) -> None:
    """Redis out of memory refuses session.create's SET: the reply is -32002 "retry shortly" (no
    traceback), as for a Redis that is away; once memory is freed the same call succeeds."""
    redis_client.config_set("maxmemory", "1")
    try:
        error = rpc.error("session.create", {"token": TOKEN})
    finally:
        redis_client.config_set("maxmemory", "0")
    assert error["code"] == -32002 and "retry shortly" in error["message"], error
    assert rpc.login()


def test_websockets_cannot_take_every_server_thread(server: Server) -> None:
    """A websocket holds a gunicorn thread while it is open. With web.streams.MAX_STREAMS open on
    the (one-process) server, one more is closed at once with 1013 "try again later", and plain
    HTTP requests are still served; once one closes, a new connection is admitted again."""
    from websockets.exceptions import ConnectionClosed

    from web.streams import MAX_STREAMS

    held = [Client(server.url) for _ in range(MAX_STREAMS)]
    try:
        for client in held:  # each one answered: each holds its thread
            assert client.call("session.version")
        with connect(server.url, open_timeout=5) as extra:
            with pytest.raises(ConnectionClosed) as closed:
                extra.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        stats = urllib.request.Request(server.base + "/api/stats", headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(stats, timeout=10) as response:
            assert response.status == 200
    finally:
        for client in held:
            client.close()
    wait_for(lambda: _answers(server.url), timeout=10, message="no slot came free after the connections closed")


def _answers(url: str) -> bool:
    try:
        with connect(url, open_timeout=2) as ws:
            ws.send('{"id":1,"method":"session.version"}')
            return "result" in json.loads(ws.recv(timeout=2))
    except Exception:
        return False


def test_each_error_code_and_malformed_frames(server: Server, session: Client) -> None:
    rpc = session
    parse = rpc.raw("{not json")
    assert parse["id"] is None and parse["error"]["code"] == -32700
    assert rpc.raw(b"\xff\xfe\x00")["error"]["code"] == -32700  # binary frame, not UTF-8
    assert rpc.raw("")["error"]["code"] == -32700
    for frame in ("42", "null", '"text"', "[]", '{"method": "session.version"}', '{"id": 1}',
                  '{"id": [1], "method": "session.version"}', '{"id": 1, "method": 7}'):
        reply = rpc.raw(frame)
        assert reply["error"]["code"] == -32600, (frame, reply)
    assert rpc.raw("[1, 2]") == [
        {"id": None, "error": {"code": -32600, "message": "a request must be a JSON object"}},
    ] * 2
    assert rpc.error("coffee.make", {"sugar": "yes"}) == {
        "code": -32601, "message": "method not found", "data": {"method": "coffee.make"}}
    assert rpc.error("jq.get_job", {"id": 5})["code"] == -32602
    assert "unknown param" in rpc.error("jq.get_queue", {"queue": 0, "colour": "red"})["message"]
    assert rpc.error("jq.get_queue", "a string")["code"] == -32602
    assert rpc.error("jq.add_queue", {})["message"] == "missing required param(s) 'name'"
    # an internal error: the queue metadata key holds the wrong Redis type
    meta = server.key("queue_meta")
    saved = server.redis.dump(meta)
    server.redis.delete(meta)
    server.redis.set(meta, "broken")
    try:
        assert rpc.error("jq.get_queues") == {"code": -32603, "message": "internal error"}
    finally:
        server.redis.delete(meta)
        if saved:
            server.redis.restore(meta, 0, saved)
    assert rpc.call("session.version") == {"major": 1, "minor": 1}  # still connected


def test_non_finite_numbers_and_deep_nesting_keep_the_connection(session: Client) -> None:
    """NaN / Infinity / 1e400 (as an id or anywhere in a frame) and 50,000-deep nesting are parse
    errors; the connection stays open and answers the next request."""
    deep = '{"id": 1, "method": "session.version", "params": ' + '{"a":' * 50_000 + "1" + "}" * 50_000 + "}"
    for frame in ('{"id": NaN, "method": "session.version"}', '{"id": 1e400, "method": "session.version"}',
                  '{"id": -Infinity, "method": "session.version"}',
                  '{"id": 2, "method": "jq.get_jobs", "params": {"count": NaN}}',
                  '{"id": 3, "method": "jq.add_job", "params": {"type": "job", "job": "tests.noop",'
                  ' "schedule": {"unix_time": NaN}}}', deep):
        reply = session.raw(frame)
        assert reply["id"] is None and reply["error"]["code"] == -32700, (frame[:60], reply)
    assert session.call("session.version") == {"major": 1, "minor": 1}


def test_batch(session: Client) -> None:
    reply = session.raw(json.dumps([
        {"id": "a", "method": "session.version"},
        {"id": "b", "method": "jq.has_queue", "params": {"queue": "__default__"}},
        {"id": "c", "method": "nope.nope"},
        "junk",
    ]))
    assert reply == [
        {"id": "a", "result": {"major": 1, "minor": 1}},
        {"id": "b", "result": True},
        {"id": "c", "error": {"code": -32601, "message": "method not found", "data": {"method": "nope.nope"}}},
        {"id": None, "error": {"code": -32600, "message": "a request must be a JSON object"}},
    ]
    too_big = session.raw(json.dumps([{"id": i, "method": "session.version"} for i in range(101)]))
    assert too_big["error"]["code"] == -32600


# --- queues --------------------------------------------------------------------------------------
def test_queue_methods(session: Client) -> None:
    rpc = session
    name = unique("feeds")
    qid = rpc.call("jq.add_queue", {"name": name, "priority": "high", "job_defaults": {"timeout": 60}})
    assert isinstance(qid, int) and qid > 1
    assert rpc.error("jq.add_queue", {"name": name})["code"] == -32602  # exists
    assert rpc.error("jq.add_queue", {"name": "x", "priority": "extreme"})["code"] == -32602
    assert rpc.error("jq.add_queue", {"name": ""})["code"] == -32602
    colon = rpc.error("jq.add_queue", {"name": "feeds:delayed"})  # would share keys with queue feeds
    assert colon["code"] == -32602 and "invalid queue name 'feeds:delayed'" in colon["message"]
    for ident in (name, {"name": name}, qid, {"id": qid}):
        assert rpc.call("jq.has_queue", {"queue": ident}) is True
    assert rpc.call("jq.has_queue", {"queue": "no-such-queue"}) is False
    assert rpc.call("jq.get_queue", {"queue": name}) == {
        "id": qid, "name": name, "jobs_count": 0, "priority": "high", "status": "running",
        "job_defaults": {"timeout": 60}}
    default = rpc.call("jq.get_queue")
    assert default["default"] is True and default["name"] == "__default__" and default["id"] == 1
    assert rpc.call("jq.get_queue", {"queue": 0})["id"] == 1
    queues = rpc.call("jq.get_queues")
    assert queues[0]["name"] == "__default__" and queues[0]["default"] is True
    assert {"id": qid, "name": name, "jobs_count": 0, "priority": "high", "status": "running"} in queues

    renamed = unique("news")
    assert rpc.call("jq.update_queue", {"queue": qid, "name": renamed, "priority": "low",
                                        "job_defaults": {"max_retry_count": 2}}) == qid
    got = rpc.call("jq.get_queue", {"queue": renamed})
    assert got["priority"] == "low" and got["job_defaults"] == {"timeout": 60, "max_retry_count": 2}
    assert rpc.call("jq.has_queue", {"queue": name}) is False

    assert rpc.call("jq.is_queue_suspended", {"queue": renamed}) is False
    assert rpc.error("jq.delete_queue", {"queue": renamed})["code"] == -32602  # not suspended
    assert rpc.call("jq.suspend_queue", {"queue": renamed}) == "OK"
    assert rpc.call("jq.is_queue_suspended", {"queue": renamed}) is True
    assert rpc.call("jq.get_queue", {"queue": renamed})["status"] == "suspended"
    assert rpc.call("jq.activate_queue", {"queue": renamed}) == "OK"
    assert rpc.call("jq.is_queue_suspended", {"queue": renamed}) is False
    rpc.call("jq.suspend_queue", {"queue": renamed})
    rpc.call("jq.add_job", {"queue": renamed, "type": "job", "job": "tests.noop"})
    assert rpc.call("jq.get_queue", {"queue": renamed})["jobs_count"] == 1
    assert rpc.call("jq.delete_queue", {"queue": renamed}) == "OK"
    assert rpc.call("jq.has_queue", {"queue": renamed}) is False
    assert rpc.error("jq.get_queue", {"queue": renamed})["code"] == -32602

    rpc.call("jq.suspend_queue")  # the default queue when none is named
    try:
        assert rpc.call("jq.is_queue_suspended") is True
        assert "default queue cannot be deleted" in rpc.error("jq.delete_queue", {"queue": 0})["message"]
    finally:
        rpc.call("jq.activate_queue", {"queue": "__default__"})


def test_integer_members_are_bounded(session: Client) -> None:
    """max_retry_count is at most 999 (1000 tries, the HTTP API's bound): a larger one, as a queue
    default or a job member, is -32602 and is not stored (cjson would keep it inexactly)."""
    rpc = session
    name = unique("bounded")
    for huge in (123456789012345678, 1000):
        assert rpc.error("jq.add_queue", {"name": name, "job_defaults": {"max_retry_count": huge}})["code"] == -32602
    assert rpc.call("jq.has_queue", {"queue": name}) is False
    rpc.call("jq.add_queue", {"name": name, "suspended": True, "job_defaults": {"max_retry_count": 999}})
    error = rpc.error("jq.update_queue", {"queue": name, "job_defaults": {"max_retry_count": 10**17}})
    assert error["code"] == -32602 and "max_retry_count" in error["message"]
    job = rpc.call("jq.add_job", {"queue": name, "type": "job", "job": "tests.noop"})
    assert rpc.call("jq.get_job", {"id": job})["max_retry_count"] == 999
    for member, value in (("max_retry_count", 1000), ("timeout", 10**17), ("retry_delay", 10**17)):
        error = rpc.error("jq.add_job", {"queue": name, "type": "job", "job": "tests.noop", member: value})
        assert error["code"] == -32602 and member in error["message"], (member, error)
        error = rpc.error("jq.update_job", {"id": job, member: value})
        assert error["code"] == -32602 and member in error["message"], (member, error)


def test_a_queue_of_the_supervisor_config_cannot_be_deleted_or_renamed(session: Client) -> None:
    """rpcjobs is in the config's supervisor queue list: deleting it (even suspended) or renaming it
    is -32602 naming the config; it keeps its id and its jobs."""
    rpc = session
    before = rpc.call("jq.get_queue", {"queue": "rpcjobs"})
    rpc.call("jq.suspend_queue", {"queue": "rpcjobs"})
    try:
        error = rpc.error("jq.delete_queue", {"queue": "rpcjobs"})
        assert error["code"] == -32602 and "config" in error["message"], error
        error = rpc.error("jq.update_queue", {"queue": "rpcjobs", "name": unique("moved")})
        assert error["code"] == -32602 and "config" in error["message"], error
        assert rpc.call("jq.get_queue", {"queue": "rpcjobs"})["id"] == before["id"]
    finally:
        rpc.call("jq.activate_queue", {"queue": "rpcjobs"})
    assert rpc.call("jq.update_queue", {"queue": "rpcjobs", "priority": before["priority"]}) == before["id"]


def test_suspended_queue_created_suspended(session: Client) -> None:
    name = unique("held")
    session.call("jq.add_queue", {"name": name, "suspended": True})
    assert session.call("jq.is_queue_suspended", {"queue": name}) is True


# --- jobs ----------------------------------------------------------------------------------------
def test_add_get_update_delete_jobs(session: Client) -> None:
    rpc = session
    queue = unique("parked")
    qid = rpc.call("jq.add_queue", {"name": queue, "suspended": True,
                                    "job_defaults": {"priority": "high", "max_retry_count": 1}})
    job = rpc.call("jq.add_job", {"queue": {"name": queue}, "type": "job", "job": "tests.add",
                                  "args": ["k", 1, 2], "name": "adder", "timeout": 20})
    got = rpc.call("jq.get_job", {"id": job})
    assert got["status"] == "suspended"  # pending in a suspended queue
    assert got["queue"] == {"id": qid, "name": queue}
    assert got["priority"] == "high" and got["max_retry_count"] == 1 and got["timeout"] == 20
    assert got["name"] == "adder" and got["job"] == "tests.add" and got["args"] == ["k", 1, 2]
    assert got["type"] == "job"
    assert abs(got["creation_time_sec"] - time.time()) < 30

    http = rpc.call("jq.add_job", {"queue": queue, "type": "http", "url": "https://example.com/hook",
                                   "http_method": "POST", "http_body_vars": {"a": 1},
                                   "schedule": {"date_time": "+01:00:00"}})
    got = rpc.call("jq.get_job", {"id": http})
    assert got["status"] == "scheduled" and got["type"] == "http"
    assert abs(got["scheduled_time_sec"] - (time.time() + 3600)) < 30
    assert got["url"] == "https://example.com/hook" and got["http_method"] == "POST"
    assert got["http_body_vars"] == {"a": 1}
    assert got["schedule"] == {"unix_time": got["scheduled_time_sec"]}  # date_time is reported as unix_time
    past = rpc.call("jq.add_job", {"queue": queue, "type": "job", "job": "tests.noop",
                                   "schedule": {"date_time": "2023-04-30T13:20:00Z"}})
    assert rpc.call("jq.get_job", {"id": past})["schedule"] == {"unix_time": 1682860800}
    rpc.call("jq.delete_job", {"id": past})

    child = rpc.call("jq.add_job", {"queue": queue, "type": "job", "job": "tests.noop", "predecessor": http})
    assert rpc.call("jq.get_job", {"id": child})["status"] == "waiting-predecessor"
    assert rpc.call("jq.get_job", {"id": child})["predecessor"] == http

    listed = rpc.call("jq.get_jobs", {"queue": qid})
    assert [j["id"] for j in listed] == [job, http]  # pending first, then scheduled by time
    assert listed[0]["scheduled_time_sec"] <= listed[1]["scheduled_time_sec"]

    assert rpc.call("jq.update_job", {"id": job, "schedule": {"unix_time": int(time.time()) + 7200},
                                      "priority": "urgent", "args": ["k", 5, 5]}) == job
    got = rpc.call("jq.get_job", {"id": job})
    assert got["status"] == "scheduled" and got["priority"] == "urgent" and got["args"] == ["k", 5, 5]
    assert rpc.error("jq.update_job", {"id": job, "queue": "default"})["code"] == -32602

    assert rpc.call("jq.delete_job", {"id": http}) == "OK"
    assert rpc.call("jq.get_job", {"id": http})["status"] == "deleted"
    assert rpc.call("jq.get_job", {"id": child})["status"] == "deleted"  # cancelled with its parent
    assert rpc.error("jq.get_job", {"id": "no-such-job"})["code"] == -32602
    assert rpc.error("jq.add_job", {"queue": queue, "type": "http", "url": "ftp://x"})["code"] == -32602
    assert rpc.error("jq.add_job", {"queue": queue, "type": "job", "job": "tests.noop",
                                    "predecessor": "missing"})["code"] == -32602
    assert rpc.error("jq.add_job", {"queue": queue, "type": "job", "job": "tests.noop",
                                    "schedule": {"date_time": "tomorrow"}})["code"] == -32602
    assert rpc.error("jq.add_job", {"queue": "nowhere", "type": "job", "job": "tests.noop"})["code"] == -32602


def test_update_job_changes_what_runs(server: Server, session: Client) -> None:
    """update_job with `job` or `type` changes the job that runs (the seed: any add_job member
    but the queue can change); the old type's members do not carry over. Each job waits an hour,
    then update_job moves it to now (unix_time 0) and a worker runs it."""
    rpc = session
    later = {"date_time": "+01:00:00"}

    def run_now(job: str) -> dict[str, Any]:
        assert rpc.call("jq.update_job", {"id": job, "schedule": {"unix_time": 0}}) == job
        return wait_for(lambda: _finished_task(rpc, job), timeout=20, interval=0.1, message=f"{job} did not run")

    first, second = unique("first"), unique("second")
    job = rpc.call("jq.add_job", {"queue": "rpcjobs", "type": "job", "job": "tests.record",
                                  "kwargs": {"key": first, "value": "A"}, "schedule": later})
    assert rpc.call("jq.update_job", {"id": job, "job": "tests.add", "args": [second, 2, 3], "kwargs": {}}) == job
    got = rpc.call("jq.get_job", {"id": job})
    assert (got["type"], got["job"], got["args"], got["kwargs"]) == ("job", "tests.add", [second, 2, 3], {})
    task = run_now(job)
    assert task["status"] == "completed" and task["job"] == "tests.add", task
    assert server.redis.lrange(second, 0, -1) == ["5"] and not server.redis.exists(first)

    cli = rpc.call("jq.add_job", {"queue": "rpcjobs", "type": "job", "job": "tests.record",
                                  "kwargs": {"key": first}, "schedule": later})
    assert rpc.call("jq.update_job", {"id": cli, "type": "cli", "script": "echo switched to cli"}) == cli
    got = rpc.call("jq.get_job", {"id": cli})
    assert got["type"] == "cli" and got["script"] == "echo switched to cli" and "job" not in got
    task = run_now(cli)
    assert task["status"] == "completed" and task["type"] == "cli" and "switched to cli" in task["output"]

    http = rpc.call("jq.add_job", {"queue": "rpcjobs", "type": "http", "url": server.base + "/",
                                   "http_method": "POST", "http_body_vars": {"a": 1}, "schedule": later})
    assert rpc.error("jq.update_job", {"id": http, "type": "job"})["code"] == -32602  # no job named
    assert rpc.error("jq.update_job", {"id": http, "type": "carrier-pigeon"})["code"] == -32602
    assert rpc.call("jq.update_job", {"id": http, "type": "job", "job": "tests.add", "args": [second, 1, 1]}) == http
    got = rpc.call("jq.get_job", {"id": http})
    assert got["type"] == "job" and not {"url", "http_method", "http_body_vars"} & set(got), got
    assert run_now(http)["status"] == "completed"
    assert server.redis.lrange(second, 0, -1) == ["5", "2"]
    server.redis.delete(first, second)


def test_concurrent_update_job_calls_keep_both_changes(server: Server, session: Client) -> None:
    """Two connections update different members of the same job at once: both changes stay (the
    update is a compare-and-set of what it read, retried on a conflict), 20 times out of 20."""
    import threading

    clients = [Client(server.url) for _ in range(2)]
    try:
        for client in clients:
            client.login()
        queue = unique("race")
        session.call("jq.add_queue", {"name": queue, "suspended": True})
        lost = []
        for i in range(20):
            job = session.call("jq.add_job", {"queue": queue, "type": "job", "job": "tests.noop", "args": [0]})
            barrier = threading.Barrier(2)
            changes = ({"timeout": 100 + i}, {"max_retry_count": 5, "args": [i]})
            replies: list[Any] = [None, None]

            def update(n: int, job: str, barrier: threading.Barrier, changes: dict, replies: list) -> None:
                barrier.wait()
                replies[n] = clients[n].request("jq.update_job", {"id": job, **changes})

            threads = [threading.Thread(target=update, args=(n, job, barrier, changes[n], replies)) for n in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            assert all(r is not None and r.get("result") == job for r in replies), replies
            got = session.call("jq.get_job", {"id": job})
            if (got["timeout"], got["max_retry_count"], got["args"]) != (100 + i, 5, [i]):
                lost.append((i, got["timeout"], got["max_retry_count"], got["args"]))
        assert lost == [], f"lost updates: {lost}"
    finally:
        for client in clients:
            client.close()


def test_recurring_job(session: Client) -> None:
    rpc = session
    queue = unique("cron")
    rpc.call("jq.add_queue", {"name": queue, "suspended": True})
    job = rpc.call("jq.add_job", {"queue": queue, "type": "job", "job": "tests.noop", "name": unique("tick"),
                                  "schedule": {"cron": "0 0 3 * * *"}})
    assert job.startswith("schedule:")
    got = rpc.call("jq.get_job", {"id": job})
    assert got["recurring"] is True and got["schedule"] == {"cron": "0 0 3 * * *"}
    assert got["scheduled_time_sec"] > time.time()
    assert any(j["id"] == job and j["recurring"] for j in rpc.call("jq.get_jobs", {"queue": queue}))
    assert rpc.call("jq.update_job", {"id": job, "schedule": {"cron": "0 */3 * * * *"}}) == job
    assert rpc.call("jq.get_job", {"id": job})["schedule"] == {"cron": "0 */3 * * * *"}
    assert rpc.error("jq.add_job", {"queue": queue, "type": "job", "job": "tests.noop",
                                    "schedule": {"cron": "* * *"}})["code"] == -32602
    for member, value in (("priority", "high"), ("predecessor", job)):  # a schedule cannot carry them: refused
        error = rpc.error("jq.add_job", {"queue": queue, "type": "job", "job": "tests.noop", member: value,
                                         "schedule": {"cron": "0 0 3 * * *"}})
        assert error["code"] == -32602 and member in error["message"], (member, error)
    tried = rpc.call("jq.add_job", {"queue": queue, "type": "job", "job": "tests.noop", "timeout": 5,
                                    "max_retry_count": 3, "retry_delay": 2, "schedule": {"cron": "0 0 3 * * *"}})
    got = rpc.call("jq.get_job", {"id": tried})  # kept on the schedule (tests/test_rpc_recurring.py: its runs)
    assert (got["timeout"], got["max_retry_count"], got["retry_delay"]) == (5, 3, 2)
    assert rpc.call("jq.delete_job", {"id": tried}) == "OK"
    assert rpc.call("jq.delete_job", {"id": job}) == "OK"
    assert rpc.error("jq.get_job", {"id": job})["code"] == -32602


# --- jobs that really run, history, tasks, notifications ------------------------------------------
def test_subscription_sees_a_job_run_and_finish(server: Server, session: Client) -> None:
    rpc = session
    assert rpc.call("jq.subscribe", {"queue": ["rpcjobs"], "job_id": [], "task_id": []}) == "OK"
    key = unique("sum")
    job = rpc.call("jq.add_job", {"queue": "rpcjobs", "type": "job", "job": "tests.add", "args": [key, 2, 3]})
    mine = lambda event, status=None: lambda n: (  # noqa: E731
        n["event"] == event and (n["params"].get("id") == job or n["params"].get("job_id") == job)
        and (status is None or n["params"].get("status") == status))
    rpc.wait_event(mine("jq.job_status", "scheduled"))  # added
    running = rpc.wait_event(mine("jq.job_status", "running"))
    assert running["params"]["queue"]["name"] == "rpcjobs" and running["params"]["type"] == "job"
    done = rpc.wait_event(mine("jq.task_finished"))
    assert done["params"]["status"] == "completed" and done["params"]["id"] == job
    assert done["params"]["completion_time_sec"] >= done["params"]["start_time_sec"]
    rpc.wait_event(mine("jq.job_status", "completed"))
    rpc.wait_event(mine("jq.job_finished"))
    assert server.redis.lrange(key, 0, -1) == ["5"]
    server.redis.delete(key)

    rpc.call("jq.suspend_queue", {"queue": "rpcjobs"})
    try:
        note = rpc.wait_event(lambda n: n["event"] == "jq.queue_status" and n["params"]["status"] == "suspended")
        assert note["params"]["name"] == "rpcjobs"
    finally:
        rpc.call("jq.activate_queue", {"queue": "rpcjobs"})

    task = rpc.call("jq.get_task", {"id": job})
    assert task["status"] == "completed" and task["job_id"] == job and task["output"] == "5"
    history = rpc.call("jq.get_job_history", {"count": 5, "filter": {"queue": "rpcjobs", "status": "completed"}})
    assert history[0]["id"] == job
    assert rpc.call("jq.get_job_history", {"filter": {"job_id": job}})[0]["id"] == job
    for status, found in (("completed", [job]), ("failed", []), ("deleted", []), ("unknown", [])):
        tasks = rpc.call("jq.get_job_history", {"filter": {"job_id": job, "status": status}})
        assert [t["id"] for t in tasks] == found, status
    assert rpc.call("jq.unsubscribe") == "OK"


def test_failed_http_and_cli_tasks(server: Server, session: Client) -> None:
    rpc = session
    rpc.call("jq.subscribe")  # everything
    ok = rpc.call("jq.add_job", {"queue": "rpcjobs", "type": "http", "url": server.base + "/",
                                 "http_query_args": {"from": "rpc"}})
    cli = rpc.call("jq.add_job", {"queue": "rpcjobs", "type": "cli", "script": "echo 'hello rpc'"})
    bad = rpc.call("jq.add_job", {"queue": "rpcjobs", "type": "job", "job": "tests.fail",
                                  "args": [unique("fail")]})
    finished = {}
    for _ in range(3):
        note = rpc.wait_event(lambda n: n["event"] == "jq.task_finished" and n["params"]["id"] in (ok, cli, bad))
        finished[note["params"]["id"]] = note["params"]["status"]
    assert finished == {ok: "completed", cli: "completed", bad: "failed-worker-error"}
    task = rpc.call("jq.get_task", {"id": ok})
    assert task["type"] == "http" and task["http_method"] == "GET" and task["http_query_args"] == "from=rpc"
    assert '"status": 200' in task["output"] or '"status":200' in task["output"]
    assert "hello rpc" in rpc.call("jq.get_task", {"id": cli})["output"]
    assert rpc.call("jq.get_task", {"id": bad})["output"].count("boom") >= 1
    failed = rpc.call("jq.get_job_history", {"filter": {"status": "failed"}})
    assert bad in [t["id"] for t in failed]
    page1 = rpc.call("jq.get_job_history", {"count": 1})
    page2 = rpc.call("jq.get_job_history", {"count": 1, "last_id": page1[0]["id"]})
    assert page1[0]["id"] != page2[0]["id"]


def test_a_timed_out_job_reports_status_timeout(server: Server, session: Client) -> None:
    """The worker stops an attempt past its timeout; jq reports that task as `timeout`."""
    key = unique("slow")
    job = session.call("jq.add_job", {"queue": "rpcjobs", "type": "job", "job": "tests.sleep",
                                      "kwargs": {"key": key, "seconds": 30}, "timeout": 1})
    task = wait_for(lambda: _finished_task(session, job), timeout=20, interval=0.1,
                    message="the slow job did not finish")
    assert task["status"] == "timeout", task
    assert "JobTimeout" in task["output"]
    assert session.call("jq.get_job", {"id": job})["status"] == "timeout"
    server.redis.delete(key)


def _finished_task(rpc: Client, job: str) -> dict[str, Any] | None:
    reply = rpc.request("jq.get_task", {"id": job})
    task = reply.get("result")
    return task if task and task["status"] != "running" else None


def test_notifications_for_queue_and_job_changes(session: Client) -> None:
    rpc = session
    rpc.call("jq.subscribe", {})
    name = unique("watched")
    qid = rpc.call("jq.add_queue", {"name": name, "suspended": True})
    added = rpc.wait_event(lambda n: n["event"] == "jq.queue_status" and n["params"]["name"] == name)
    assert added["params"] == {"id": qid, "name": name, "jobs_count": 0, "priority": "normal", "status": "suspended"}
    job = rpc.call("jq.add_job", {"queue": name, "type": "job", "job": "tests.noop"})
    status = rpc.wait_event(lambda n: n["event"] == "jq.job_status" and n["params"]["id"] == job)
    assert status["params"]["status"] == "suspended" and status["params"]["queue"] == {"id": qid, "name": name}
    rpc.call("jq.delete_job", {"id": job})
    deleted = rpc.wait_event(lambda n: n["event"] == "jq.job_status" and n["params"]["id"] == job)
    assert deleted["params"]["status"] == "deleted"
    rpc.wait_event(lambda n: n["event"] == "jq.job_finished" and n["params"] == {"id": job})
    rpc.call("jq.delete_queue", {"queue": qid})
    gone = rpc.wait_event(lambda n: n["event"] == "jq.queue_status" and n["params"]["status"] == "deleted")
    assert gone["params"]["name"] == name and gone["params"]["id"] == qid
    assert rpc.call("jq.unsubscribe") == "OK"


def test_a_subscription_ends_with_its_session(server: Server, session: Client) -> None:
    """A subscribed connection whose session is destroyed from another connection (restore +
    destroy), or expires, gets no more notifications; a live subscriber sees the same job run."""
    def subscribed(duration: int) -> tuple[Client, str]:
        client = Client(server.url)
        sid = client.call("session.create", {"token": TOKEN, "duration": duration})["sid"]
        assert client.call("jq.subscribe", {"queue": ["rpcjobs"], "job_id": [], "task_id": []}) == "OK"
        return client, sid

    watcher, _ = subscribed(600)
    destroyed, sid = subscribed(600)
    other = Client(server.url)
    other.call("session.restore", {"sid": sid, "token": TOKEN})
    assert other.call("session.destroy") == "OK"
    expired, short_sid = subscribed(1)
    wait_for(lambda: not server.redis.exists(server.key("rpc", "session", short_sid)), timeout=5)
    try:
        job = session.call("jq.add_job", {"queue": "rpcjobs", "type": "job", "job": "tests.noop"})
        watcher.wait_event(lambda n: n["event"] == "jq.job_finished" and n["params"]["id"] == job)
        for client in (destroyed, expired):
            got = []
            with pytest.raises(TimeoutError):  # nothing more within 2 s (the reader reads every second)
                while True:
                    got.append(json.loads(client.ws.recv(timeout=2)))
            assert [n for n in got if job in json.dumps(n)] == [], got
            assert client.error("jq.version")["code"] == -32000
    finally:
        for client in (watcher, destroyed, other, expired):
            client.close()


def test_a_subscription_logs_a_redis_outage_once_and_resumes(tmp_path, caplog):
    """The subscription thread reads the event stream every second: while Redis is away it logs
    one warning (not a traceback a second), and once Redis is back it delivers new events."""
    from horizon.config import settings_from_dict
    from horizon.context import Horizon
    from horizon.embedded import EmbeddedRedis
    from web.rpc.session import Connection
    from web.rpc.subscriptions import Filter, Subscription

    server = EmbeddedRedis(str(tmp_path / "redis")).start()
    port, folder = server.port, server.dir
    hz = Horizon(settings_from_dict({"prefix": "sub", "redis": {"url": server.url}}))
    got: list[str] = []
    sub = Subscription(Connection(hz=hz), Filter(), lambda event, params: got.append(event))
    try:
        with caplog.at_level("WARNING"):
            server.stop()
            wait_for(lambda: "redis unavailable" in caplog.text, timeout=10)
            time.sleep(2.5)  # two more reads fail meanwhile (the outage itself, not synchronisation)
            server = EmbeddedRedis(str(folder), port=port).start()
            from horizon.queue import JobSpec

            hz.queue.push([JobSpec(name="tests.noop", queue="q", payload='{"args":[],"kwargs":{}}')])
            wait_for(lambda: bool(got), timeout=10, message="no notification after Redis came back")
    finally:
        sub.stop()
        hz.close()
        server.stop()
    assert caplog.text.count("redis unavailable") == 1 and "Traceback" not in caplog.text
