"""Workflow routes (batches, schedules, job children) and the built-in http and cli job types, with real workers."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from horizon.schedules import ScheduleRepository, fire_due
from tests import api_fixtures, sample_jobs
from tests.api_fixtures import API, assert_error, get, post
from tests.helpers import wait_for

app, client = api_fixtures.app, api_fixtures.client  # fixtures


def status(hz, job_id):
    return hz.redis.hget(hz.keys.job(job_id), "status")


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        length = int(self.headers.get("Content-Length") or 0)
        received = self.rfile.read(length).decode()
        self.server.seen.append((self.path, self.headers.get("X-Test"), received))
        code = 201 if self.path.startswith("/ok") else 500
        body = json.dumps({"echo": received, "pad": "x" * 10000}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_http_job_records_status_and_bounded_body(hz, client, procs, http_server):
    url = f"http://127.0.0.1:{http_server.server_port}"
    ok = post(client, "/jobs", {"type": "http", "http": {
        "method": "POST", "url": url + "/ok", "query": {"a": "1"}, "headers": {"X-Test": "yes"},
        "json": {"hello": "world"}, "timeout": 5}}, status=201)  # fmt: skip
    bad_spec = {"method": "POST", "url": url + "/bad", "body": "x"}
    bad = post(client, "/jobs", {"type": "http", "http": bad_spec}, status=201)
    procs.horizon("work")
    wait_for(lambda: status(hz, ok["id"]) == "completed", timeout=20)
    wait_for(lambda: status(hz, bad["id"]) == "failed", timeout=20)
    job = get(client, f"/jobs/{ok['id']}")
    assert job["name"] == "horizon.http"
    assert job["output"]["status"] == 201
    assert job["output"]["body"].startswith('{"echo": "{\\"hello\\": \\"world\\"}"')
    assert len(job["output"]["body"].encode()) <= 4096 + 3
    assert ("/ok?a=1", "yes", '{"hello": "world"}') in http_server.seen
    failed = get(client, f"/jobs/{bad['id']}")
    assert "answered 500" in failed["exception"]["message"]


def test_cli_job_refused_while_disabled(hz, client, procs, redis_client):
    message = assert_error(
        client.post(API + "/jobs", json={"type": "cli", "cli": {"argv": ["true"]}}), 403, "FORBIDDEN"
    )
    assert "job_types.cli.enabled" in message
    # a cli job that reaches a worker anyway (pushed from Python) is refused there too
    from horizon import builtin_jobs

    marker = f"/tmp/horizon-cli-{uuid.uuid4().hex}"
    job_id = builtin_jobs.cli.options(tries=3).dispatch(argv=["touch", marker])
    procs.horizon("work")
    wait_for(lambda: status(hz, job_id) == "failed", timeout=20)
    exc = json.loads(redis_client.hget(hz.keys.job(job_id), "exception"))
    assert exc["class"] == "horizon.builtin_jobs.CliDisabled"
    assert "job_types.cli.enabled" in exc["message"]
    assert redis_client.hget(hz.keys.job(job_id), "attempts") == "1"  # refused for good, not retried
    import os

    assert not os.path.exists(marker)


@pytest.fixture
def http_disabled(config_data):
    config_data["job_types"] = {"http": {"enabled": False}}
    return config_data


def test_http_job_refused_by_the_worker_while_disabled(http_disabled, hz, procs, redis_client):
    """An http job that reaches a worker by name (pushed from Python or straight to Redis) while
    job_types.http.enabled is false fails for good there. Before, the worker made the request."""
    from horizon import builtin_jobs

    job_id = builtin_jobs.http.options(tries=3).dispatch(url="http://127.0.0.1:9/never")
    procs.horizon("work")
    wait_for(lambda: status(hz, job_id) == "failed", timeout=20)
    exc = json.loads(redis_client.hget(hz.keys.job(job_id), "exception"))
    assert exc["class"] == "horizon.builtin_jobs.HttpDisabled"
    assert "job_types.http.enabled" in exc["message"]
    assert redis_client.hget(hz.keys.job(job_id), "attempts") == "1"


@pytest.fixture
def cli_enabled(config_data):
    config_data["job_types"] = {"cli": {"enabled": True}}
    return config_data


def test_cli_job_runs_when_enabled(cli_enabled, hz, client, procs, tmp_path):
    ok = post(client, "/jobs", {"type": "cli", "cli": {
        "argv": ["sh", "-c", "echo out-$GREETING; echo err >&2; pwd"], "env": {"GREETING": "hi"},
        "cwd": str(tmp_path)}}, status=201)  # fmt: skip
    bad = post(client, "/jobs", {"type": "cli", "cli": {"argv": ["sh", "-c", "echo nope >&2; exit 3"]}}, status=201)
    procs.horizon("work")
    wait_for(lambda: status(hz, ok["id"]) == "completed", timeout=20)
    out = get(client, f"/jobs/{ok['id']}")["output"]
    assert out == {"exit_code": 0, "stdout": f"out-hi\n{tmp_path}\n", "stderr": "err\n"}
    wait_for(lambda: status(hz, bad["id"]) == "failed", timeout=20)
    assert "exited with 3: nope" in get(client, f"/jobs/{bad['id']}")["exception"]["message"]


def test_job_lists_its_children(hz, client):
    parent = post(client, "/jobs", {"name": "tests.noop", "delay": 60}, status=201)
    child = post(client, "/jobs", {"name": "tests.noop", "after": parent["id"]}, status=201)
    other = sample_jobs.noop.options(after=parent["id"]).dispatch()
    job = get(client, f"/jobs/{parent['id']}")
    assert job["children"] == sorted([child["id"], other])
    assert get(client, f"/jobs/{child['id']}")["after"] == parent["id"]


def test_batch_routes(hz, client, procs, redis_client):
    log = "wf-" + uuid.uuid4().hex[:8]
    body = {
        "name": "api-batch",
        "jobs": [{"name": "tests.record", "args": [log, 1]}, {"name": "tests.fail", "args": [log]}],
        "then": {"name": "tests.record", "args": [log, "then"]},
        "finally": {"name": "tests.record", "args": [log, "finally"]},
    }
    batch = post(client, "/batches", body, status=201)
    assert batch["name"] == "api-batch" and batch["totalJobs"] == 2 and batch["pendingJobs"] == 2
    assert set(batch["options"]) == {"then", "finally"}
    procs.horizon("work")
    wait_for(lambda: get(client, f"/batches/{batch['id']}")["batch"]["finishedAt"], timeout=20)
    shown = get(client, f"/batches/{batch['id']}")
    assert shown["batch"]["failedJobs"] == 1 and shown["batch"]["progress"] == 100
    assert [j["name"] for j in shown["failedJobs"]] == ["tests.fail"]
    wait_for(lambda: status(hz, batch["options"]["finally"]) == "completed", timeout=20)
    assert status(hz, batch["options"]["then"]) == "cancelled"
    assert [b["id"] for b in get(client, "/batches")["batches"]] == [batch["id"]]
    retried = post(client, f"/batches/retry/{batch['id']}", status=200)
    assert len(retried["retried"]) == 1  # (the running worker may already have run the copy)
    assert hz.redis.hget(hz.keys.job(retried["retried"][0]), "retry_of") == shown["failedJobs"][0]["id"]
    wait_for(lambda: status(hz, retried["retried"][0]) == "failed", timeout=20)
    after = wait_for(lambda: (b := get(client, f"/batches/{batch['id']}")["batch"])["finishedAt"] and b)
    assert (after["pendingJobs"], after["failedJobs"]) == (0, 1)
    assert_error(client.get(API + "/batches/nope"), 404, "NOT_FOUND")
    assert_error(client.post(API + "/batches", json={"jobs": [{"name": "no.such"}]}), 422, "UNPROCESSABLE")
    message = assert_error(client.post(API + "/batches", json={"jobs": [{"name": "tests.noop", "after": "x"}]}),
                           400, "BAD_REQUEST")  # fmt: skip
    assert "jobs[0]" in message
    redis_client.delete(log)


def test_schedule_routes(hz, client):
    created = post(client, "/schedules", {"name": "api-s", "job": "tests.noop", "cron": "*/5 * * * * *"}, status=201)
    assert created["source"] == "api" and created["cron"] == "*/5 * * * * *" and created["next_run_at"] > 0
    assert [s["name"] for s in get(client, "/schedules")] == ["api-s"]
    assert_error(
        client.post(API + "/schedules", json={"name": "api-s", "job": "tests.noop", "every": 1}), 409, "CONFLICT"
    )
    message = assert_error(
        client.post(API + "/schedules", json={"name": "b", "job": "tests.noop", "cron": "* * *"}), 400, "BAD_REQUEST"
    )
    assert "cron" in message
    unknown = {"name": "c", "job": "no.such", "every": 1}
    assert_error(client.post(API + "/schedules", json=unknown), 422, "UNPROCESSABLE")
    assert client.delete(API + "/schedules/api-s").status_code == 204
    assert_error(client.delete(API + "/schedules/api-s"), 404, "NOT_FOUND")
    assert get(client, "/schedules") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"every": 1e-300}, "every"),  # was saved, then every listing raised OverflowError
        ({"every": 10**400}, "every"),  # an int beyond any float
        ({"every": 1e12}, "every"),  # next_run_at beyond what datetime shows
        ({"every": 0.5}, "every"),
        ({"name": "a/b"}, "name"),  # routes take <name>: it could never be shown or deleted
        ({"name": "a\nb"}, "name"),
        ({"name": "n" * 201}, "name"),
    ],
    ids=["every-tiny", "every-huge-int", "every-1e12", "every-half", "name-slash", "name-newline", "name-long"],
)
def test_an_invalid_schedule_is_refused_and_not_saved(hz, client, body, field):
    schedule = {"name": "bad", "job": "tests.noop", "every": 5, **body}
    message = assert_error(client.post(API + "/schedules", json=schedule), 400, "BAD_REQUEST")
    assert message.startswith(f"{field}: expected"), message
    assert hz.redis.hlen(hz.keys.schedules()) == 0
    assert get(client, "/schedules") == []


def test_a_schedules_run_options_are_stored_shown_and_applied(hz, client):
    body = {"name": "nightly", "job": "tests.noop", "every": 1, "queue": "sched", "tries": 4, "timeout": 900,
            "backoff": [30, 300]}
    created = post(client, "/schedules", body, status=201)
    assert (created["tries"], created["timeout"], created["backoff"]) == (4, 900.0, [30.0, 300.0])
    post(client, "/schedules", {"name": "plain", "job": "tests.noop", "every": 1, "backoff": 5}, status=201)
    shown = {s["name"]: s for s in get(client, "/schedules")}
    assert (shown["nightly"]["tries"], shown["nightly"]["timeout"], shown["nightly"]["backoff"]) == (4, 900.0,
                                                                                                     [30.0, 300.0])
    assert (shown["plain"]["tries"], shown["plain"]["timeout"], shown["plain"]["backoff"]) == (None, None, [5.0])
    assert get(client, "/schedules/nightly") == shown["nightly"]
    ScheduleRepository(hz).advance("nightly", 1_800_000_000.2 - 1)
    (fired,) = [f for f in fire_due(hz, 1_800_000_000.2, owner="t") if f.schedule == "nightly"]
    record = hz.redis.hgetall(hz.keys.job(fired.job_id))
    assert (record["tries"], float(record["timeout"]), json.loads(record["backoff"])) == ("4", 900.0, [30.0, 300.0])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"tries": 0}, "tries: tries must be an integer from 1 to 1000, got 0"),
        ({"tries": "3"}, "tries: tries must be an integer from 1 to 1000, got '3'"),
        ({"timeout": 0}, "timeout: timeout must be from 0.001 to 86400 seconds, got 0"),
        ({"timeout": 86400.5}, "timeout: timeout must be from 0.001 to 86400 seconds, got 86400.5"),
        ({"backoff": []}, "backoff: backoff must be a number or a list of 1 to 100 numbers"),
        ({"backoff": [1, -2]}, "backoff: backoff must be from 0 to 604800 seconds, got -2"),
    ],
    ids=["tries-zero", "tries-text", "timeout-zero", "timeout-over-a-day", "backoff-empty", "backoff-negative"],
)
def test_an_invalid_run_option_is_a_400_and_not_saved(hz, client, body, message):
    schedule = {"name": "bad", "job": "tests.noop", "every": 5, **body}
    assert assert_error(client.post(API + "/schedules", json=schedule), 400, "BAD_REQUEST") == message
    assert hz.redis.hlen(hz.keys.schedules()) == 0


def test_schedule_bounds_and_names_that_are_accepted(hz, client):
    name = "nightly report ü" + "n" * 184  # 200 characters, spaces and non-ASCII allowed
    created = post(client, "/schedules", {"name": name, "job": "tests.noop", "every": 31622400}, status=201)
    assert created["every"] == 31622400 and created["next_run_at"] > 0
    assert get(client, "/schedules/" + name)["name"] == name
    post(client, "/schedules", {"name": "each-second", "job": "tests.noop", "every": 1}, status=201)
    assert client.delete(API + "/schedules/" + name).status_code == 204


def test_a_stored_schedule_now_invalid_is_left_out(hz, client):
    # written by an older version that accepted it
    hz.redis.hset(hz.keys.schedules(), "tiny", json.dumps({"name": "tiny", "job": "tests.noop", "every": 1e-300}))
    post(client, "/schedules", {"name": "ok", "job": "tests.noop", "every": 5}, status=201)
    assert [s["name"] for s in get(client, "/schedules")] == ["ok"]
