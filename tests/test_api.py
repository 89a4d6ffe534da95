"""Horizon-compatible routes (SPEC 9.1) against a real Redis, a real master and real workers."""

from __future__ import annotations

import json

import pytest

from tests import sample_jobs
from tests.api_fixtures import API, app, assert_error, client, get, post  # noqa: F401  (fixtures)
from tests.helpers import wait_for

JOB_FIELDS = {
    "id", "connection", "queue", "name", "status", "payload", "tags", "attempts", "exception", "context",
    "pushed_at", "reserved_at", "completed_at", "failed_at", "retried_by", "retry_of", "progress", "index",
}  # fmt: skip
STATS_FIELDS = {
    "jobsPerMinute", "processes", "queueWithMaxRuntime", "queueWithMaxThroughput", "recentJobs",
    "recentlyFailed", "failedJobs", "pausedMasters", "periods", "status", "wait",
}  # fmt: skip
FAST = {"HORIZON_HEARTBEAT_INTERVAL": "0.2", "HORIZON_LOOP_INTERVAL": "0.1", "HORIZON_MAINTAIN_INTERVAL": "0.5"}
NUMBER = (int, float)


def check_job(job: dict) -> None:
    assert JOB_FIELDS <= set(job), JOB_FIELDS - set(job)
    assert isinstance(job["id"], str) and job["connection"] == "redis"
    assert isinstance(job["payload"], dict) and isinstance(job["tags"], list)
    assert isinstance(job["attempts"], int) and isinstance(job["retried_by"], list)
    for field in ("pushed_at", "reserved_at", "completed_at", "failed_at", "progress"):
        assert job[field] is None or isinstance(job[field], NUMBER), field


def test_workload_shows_a_multi_queue_pool_once(hz, client):  # noqa: F811
    """GET workload lists a pool serving several queues (balance: false) as one "a,b" entry with
    split_queues, and its processes once. Before, the API split it into one entry per queue, each
    with the whole pool's processes (6 for a pool of 3)."""
    from horizon.repositories.supervisors import SupervisorRepository

    SupervisorRepository(hz).update({"name": "host-1:supervisor-1", "processes": {"redis:a,b": 3, "redis:c": 1}})
    sample_jobs.noop.options(queue="a").dispatch_many([((), {})] * 2)
    rows = {row["name"]: row for row in get(client, "/workload")}
    assert set(rows) == {"a,b", "c"}
    assert rows["a,b"]["processes"] == 3 and rows["a,b"]["length"] == 2
    assert [q["name"] for q in rows["a,b"]["split_queues"]] == ["a", "b"]
    assert get(client, "/queues/a")["processes"] == 3  # one queue's own view: the pool serves it


@pytest.fixture
def master(procs, proc_env):
    proc_env.update(FAST)
    procs.env = proc_env
    return procs.horizon("start")


@pytest.mark.slow
def test_horizon_routes_with_a_real_master(hz, client, master, procs):  # noqa: F811
    masters = wait_for(lambda: get(client, "/masters"), timeout=20, message="no master record")
    wait_for(lambda: get(client, "/stats")["processes"] >= 1, timeout=20)
    ok = [sample_jobs.add.dispatch("api-sum", i, 1) for i in range(3)]
    bad = sample_jobs.fail.options(tries=1).dispatch("api-fail")
    wait_for(lambda: get(client, "/jobs/completed")["total"] == 3, timeout=20)
    wait_for(lambda: get(client, "/jobs/failed")["total"] == 1, timeout=20)
    hz.redis.delete("api-sum", "api-fail")

    # masters: keyed by name, the seed's fields
    masters = get(client, "/masters")
    (name, record), = masters.items()
    assert record["name"] == name and record["status"] == "running" and isinstance(record["pid"], int)
    sup = record["supervisors"][0]
    assert {"name", "master", "pid", "status", "processes", "options"} <= set(sup)
    assert sup["master"] == name and sup["processes"]["redis:default"] >= 1

    stats = get(client, "/stats")
    assert STATS_FIELDS <= set(stats)
    assert stats["status"] == "running" and stats["pausedMasters"] == 0
    assert stats["recentlyFailed"] == stats["failedJobs"] == 1
    assert isinstance(stats["jobsPerMinute"], NUMBER) and stats["jobsPerMinute"] >= 3
    assert stats["recentJobs"] >= 4 and stats["processes"] >= 1
    assert stats["periods"] == {"recentJobs": 60, "failedJobs": 10080}
    assert isinstance(stats["wait"]["redis:default"], NUMBER)

    (default,) = [q for q in get(client, "/workload") if q["name"] == "default"]
    assert set(default) >= {"name", "length", "wait", "processes", "split_queues"}
    assert default["length"] == 0 and default["processes"] >= 1

    recent = get(client, "/jobs/recent")
    assert recent["total"] == 4 and len(recent["jobs"]) == 4
    for job in recent["jobs"]:
        check_job(job)
    indexes = [j["index"] for j in recent["jobs"]]
    assert indexes == sorted(indexes, reverse=True)  # newest first
    completed = get(client, "/jobs/completed")["jobs"]
    assert {j["id"] for j in completed} == set(ok) and all(j["status"] == "completed" for j in completed)

    failed = get(client, f"/jobs/failed/{bad}")
    check_job(failed)
    assert failed["status"] == "failed" and failed["exception"]["class"] == "ValueError"
    assert failed["payload"] == {"args": ["api-fail"], "kwargs": {}}
    assert get(client, f"/jobs/{ok[0]}")["status"] == "completed"

    # retry a failed job: a copy runs (and fails again), the original records it
    copy = post(client, f"/jobs/retry/{bad}", status=201)
    assert copy["retry_of"] == bad and copy["name"] == "tests.fail"
    wait_for(lambda: get(client, f"/jobs/{copy['id']}")["status"] == "failed", timeout=20)
    (entry,) = get(client, f"/jobs/{bad}")["retried_by"]
    assert entry["id"] == copy["id"] and entry["status"] == "failed" and isinstance(entry["retried_at"], NUMBER)
    hz.redis.delete("api-fail")

    # metrics: measured names, then snapshots after `horizon snapshot`
    assert get(client, "/metrics/jobs") == ["tests.add", "tests.fail"]  # failures are measured too
    assert get(client, "/metrics/queues") == ["default"]
    assert procs.run("snapshot").returncode == 0
    (snap,) = get(client, "/metrics/jobs/tests.add")
    assert snap["throughput"] == 3 and isinstance(snap["runtime"], NUMBER) and isinstance(snap["time"], NUMBER)
    pct = get(client, "/metrics/percentiles/jobs/tests.add")
    assert set(pct) == {"p50", "p95", "p99"} and 0 <= pct["p50"] <= pct["p95"] <= pct["p99"]
    assert set(get(client, "/metrics/percentiles/queues/default")) == {"p50", "p95", "p99"}
    exposition = client.get("/horizon/metrics")
    assert exposition.status_code == 200 and exposition.mimetype == "text/plain"
    assert "horizon_recent_failed_jobs 2" in exposition.get_data(as_text=True)
    (qsnap,) = get(client, "/metrics/queues/default")
    assert {"throughput", "runtime", "time", "wait"} <= set(qsnap)


def test_paging_with_starting_at_never_skips(hz, client):  # noqa: F811
    ids = sample_jobs.noop.dispatch_many([((), {})] * 120)
    seen, start, pages = [], -1, 0
    while True:
        page = get(client, f"/jobs/pending?starting_at={start}")
        assert page["total"] == 120
        if not page["jobs"]:
            break
        seen += [j["id"] for j in page["jobs"]]
        start, pages = page["jobs"][-1]["index"], pages + 1
    assert pages == 3 and seen == ids[::-1]
    assert len(get(client, "/jobs/pending?limit=100000")["jobs"]) == 120  # clamped to 200
    assert len(get(client, "/jobs/pending?limit=0")["jobs"]) == 1
    assert len(get(client, "/jobs/pending?limit=7")["jobs"]) == 7


def test_pending_includes_scheduled_and_failed_by_tag(hz, client):  # noqa: F811
    later = sample_jobs.noop.options(delay=3600).dispatch()
    page = get(client, "/jobs/pending")
    assert [j["status"] for j in page["jobs"]] == ["scheduled"] and page["jobs"][0]["id"] == later
    assert get(client, "/jobs/failed?tag=nothing") == {"jobs": [], "total": 0}


@pytest.mark.parametrize("tag", ["key:a/b", "/lead", "//x/"])
def test_monitoring_tags_with_slashes_and_colons(hz, client, tag):  # noqa: F811
    """Tags hold '/' and ':'. Before, a tag starting with '/' could be monitored (201) but never
    read or unmonitored: Werkzeug's path converter cannot start with '/' (a 404)."""
    from urllib.parse import quote

    assert post(client, "/monitoring", {"tag": tag}, status=201) == {"tag": tag}
    job_id = sample_jobs.record.options(tags=[tag]).dispatch("a/b")
    assert get(client, "/monitoring") == [{"tag": tag, "count": 1}]
    for path in (tag, quote(tag, safe="")):  # as written, and as curl sends it (%2F)
        page = get(client, f"/monitoring/{path}")
        assert page["total"] == 1 and page["jobs"][0]["id"] == job_id and tag in page["jobs"][0]["tags"]
    assert client.delete(f"{API}/monitoring/{quote(tag, safe='')}").status_code == 204
    assert get(client, "/monitoring") == []
    assert get(client, "/monitoring/never-monitored") == {"jobs": [], "total": 0}
    for dots in (".", ".."):  # a browser drops such a path segment: the dashboard could not reach it
        assert "must not be" in assert_error(client.post(f"{API}/monitoring", json={"tag": dots}), 400, "BAD_REQUEST")
    assert client.post(f"{API}/monitoring", data=json.dumps({"tag": "   "})).status_code == 400


def test_unknown_ids_are_404_and_retry_of_a_live_job_409(hz, client):  # noqa: F811
    from tests.api_fixtures import assert_error

    for path in ("/jobs/nope", "/jobs/failed/nope"):
        assert "nope" in assert_error(client.get(API + path), 404, "NOT_FOUND")
    assert_error(client.post(API + "/jobs/retry/nope"), 404, "NOT_FOUND")
    pending = sample_jobs.noop.dispatch()
    assert_error(client.get(f"{API}/jobs/failed/{pending}"), 404, "NOT_FOUND")
    assert "not failed" in assert_error(client.post(f"{API}/jobs/retry/{pending}"), 409, "CONFLICT")


def test_a_job_id_naming_another_key_of_the_job_is_unknown(hz, client):  # noqa: F811
    """job:<id>:children is a set: GET jobs/<id>:children read it as a job hash (WRONGTYPE, a 500),
    and so did retry, cancel, delete and a child 'after' it. Ids hold no ':': unknown (404/422)."""
    parent = sample_jobs.noop.options(delay=600).dispatch()
    sample_jobs.noop.options(after=parent).dispatch()
    other = f"{parent}:children"
    assert hz.redis.type(hz.keys.job(other)) == "set"
    for method, path in (("get", f"/jobs/{other}"), ("get", f"/jobs/failed/{other}"),
                         ("post", f"/jobs/retry/{other}"), ("post", f"/jobs/{other}/cancel"),
                         ("delete", f"/jobs/{other}")):
        assert_error(getattr(client, method)(API + path), 404, "NOT_FOUND")
    refused = client.post(f"{API}/jobs", json={"name": "tests.noop", "after": other})
    assert "does not exist" in assert_error(refused, 422, "UNPROCESSABLE")
