"""Per-queue rate limits across workers, and job progress, with real worker processes."""

from __future__ import annotations

import json

import pytest

from horizon.repositories.jobs import JobRepository
from tests import sample_jobs
from tests.helpers import wait_for

JOBS, PER = 3, 0.5


@pytest.fixture
def limited(config_data):
    config_data["queues"] = {"limited": {"rate_limit": {"jobs": JOBS, "per": PER}}}
    return config_data


def test_rate_limited_queue_never_exceeds_its_limit(limited, hz, procs, redis_client):
    ids = sample_jobs.noop.options(queue="limited").dispatch_many([((), {})] * 12)
    procs.horizon("work", "--queue", "limited")
    procs.horizon("work", "--queue", "limited")
    procs.horizon("work", "--queue", "limited")

    def done():
        return all(redis_client.hget(hz.keys.job(i), "status") == "completed" for i in ids)

    wait_for(done, timeout=30)
    starts = sorted(float(redis_client.hget(hz.keys.job(i), "reserved_at")) for i in ids)
    busiest = max(sum(1 for t in starts if s <= t < s + PER) for s in starts)
    span = starts[-1] - starts[0]
    print(f"rate limit {JOBS} per {PER}s, 3 workers: busiest window {busiest} starts, span {span:.3f}s")
    assert busiest <= JOBS, starts
    # the limit paces, it does not stall: 12 jobs at 3 per 0.5 s span at least 1.5 s
    assert starts[-1] - starts[0] >= (len(ids) / JOBS - 1) * PER - 0.01


def test_progress_is_stored_and_sent_as_an_event(hz, procs, redis_client):
    job_id = sample_jobs.report_progress.dispatch("progress-log")
    result = procs.run("work", "--stop-when-empty")
    assert result.returncode == 0, result.stderr
    job = JobRepository(hz).get(job_id)
    assert job["status"] == "completed" and job["progress"] == 0.5
    events = [e for _, e in redis_client.xrange(hz.keys.events()) if e["event"] == "job:progress"]
    assert [json.loads(e["data"])["progress"] for e in events] == [0.5]
    assert json.loads(events[0]["data"])["job_id"] == job_id
    redis_client.delete("progress-log")
