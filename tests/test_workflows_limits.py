"""Per-queue rate limits across workers, and job progress, with real worker processes."""

from __future__ import annotations

import json
import time

import pytest

from horizon.repositories.jobs import JobRepository
from horizon.scripts import PREFETCH_MAX_RUNTIME_MS
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


def test_a_rate_limit_counts_starts_when_workers_prefetch(limited, hz, procs, redis_client):
    """A worker that prefetches (short jobs) takes one job at a time from a rate-limited queue, so
    the limit holds for the times the jobs start, not only for when they were reserved. Before,
    it reserved up to the limit at once and ran them one after another: the ones behind a slow
    job started late, and a window of starts held 4 where the limit is 3."""
    log = "stamps-" + hz.settings.prefix
    worker = procs.horizon("work", "--queue", "limited", "--prefetch", "16")
    warm = sample_jobs.stamp.options(queue="limited").dispatch(log)  # gives the queue a short runtime
    wait_for(lambda: redis_client.hget(hz.keys.job(warm), "status") == "completed", timeout=20)
    assert float(redis_client.hget(hz.keys.queue_metrics("limited"), "estimate")) <= PREFETCH_MAX_RUNTIME_MS
    slow = PER * 0.6
    ids = sample_jobs.stamp.options(queue="limited").dispatch_many([((log, slow), {})] + [((log,), {})] * 11)
    wait_for(lambda: all(redis_client.hget(hz.keys.job(i), "status") == "completed" for i in ids), timeout=30)
    starts = sorted(float(t) for t in redis_client.lrange(log, 0, -1))
    busiest = max(sum(1 for t in starts if s <= t < s + PER) for s in starts)
    print(f"rate limit {JOBS} per {PER}s, prefetch 16: busiest window {busiest} job starts")
    assert busiest <= JOBS, starts
    worker.terminate()
    redis_client.delete(log)


def test_an_early_reservation_leaves_a_rate_limited_queue_to_a_later_one(limited, hz, redis_client):
    """The reservation a worker makes while it still runs a prefetched batch (offset > 0) takes
    nothing when a rate-limited queue before the others has a job it may start: that job is taken
    by the worker's next reservation, made when it can start at once."""
    limited_id = sample_jobs.noop.options(queue="limited").dispatch()
    other = sample_jobs.noop.options(queue="other").dispatch_many([((), {})] * 3)
    early = hz.scripts.call("finish", 0, 16, "5.000", "w", "limited", "other")
    assert early == [0, "", ""]
    assert redis_client.hget(hz.keys.job(limited_id), "status") == "pending"
    jobs, _ = hz.queue.reserve_many(["limited", "other"], 16, worker="w")
    assert [job.id for job in jobs] == [limited_id]  # one at a time from a rate-limited queue
    jobs, _ = hz.queue.reserve_many(["limited", "other"], 16, worker="w")
    assert [job.id for job in jobs] == other[:1]  # (no runtime estimate yet: no prefetch)


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


def test_progress_reported_in_a_tight_loop_is_written_a_few_times_and_ends_at_its_last_value(
    hz, procs, redis_client
):
    """Every progress() call was a script call and an event: a job reporting 2,000 times wrote
    2,000 events and pushed the rest out of the capped stream. Writes now come at most every
    PROGRESS_INTERVAL, and the last value reported is written when the job ends."""
    from horizon.worker import PROGRESS_INTERVAL

    job_id = sample_jobs.progress_many.dispatch(2000)
    started = time.monotonic()
    result = procs.run("work", "--stop-when-empty")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    job = JobRepository(hz).get(job_id)
    assert job["status"] == "completed" and job["progress"] == 1.0
    events = [json.loads(e["data"]) for _, e in redis_client.xrange(hz.keys.events()) if e["event"] == "job:progress"]
    values = [e["progress"] for e in events if e["job_id"] == job_id]
    assert values[0] == 1 / 2000 and values[-1] == 1.0  # the first at once, the last at the end
    assert len(values) <= elapsed / PROGRESS_INTERVAL + 2, values
