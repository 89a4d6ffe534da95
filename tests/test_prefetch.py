"""Prefetch: a worker reserves several short jobs per round trip and acknowledges them together."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import yaml

from horizon.queue import JobSpec
from tests import sample_jobs
from tests.helpers import wait_for

NOOP = '{"args":[],"kwargs":{}}'


def push(hz, queue: str, n: int, **options) -> list[str]:
    return hz.queue.push([JobSpec(name="tests.noop", queue=queue, payload=NOOP, **options) for _ in range(n)])


def short_estimate(hz, queue: str, ms: float = 1.0) -> None:
    """Give the queue a runtime estimate, as its finished jobs would."""
    hz.redis.hset(hz.keys.queue_metrics(queue), "estimate", ms)


def test_no_prefetch_without_a_short_runtime_estimate(hz):
    push(hz, "fresh", 5)
    jobs, _ = hz.queue.reserve_many(["fresh"], 4)
    assert len(jobs) == 1
    short_estimate(hz, "fresh", 500.0)  # long jobs: never prefetched
    jobs, _ = hz.queue.reserve_many(["fresh"], 4)
    assert len(jobs) == 1


def test_prefetched_reservations_wait_their_turn(hz, redis_client):
    short_estimate(hz, "short")
    ids = push(hz, "short", 6, timeout=2)
    before = float(redis_client.time()[0])
    jobs, _ = hz.queue.reserve_many(["short"], 4)
    assert [j.id for j in jobs] == ids[:4]
    deadlines = [redis_client.zscore(hz.keys.reserved("short"), j.id) for j in jobs]
    # whole seconds, rounded up (stored as integers: cheap to compare in a small sorted set)
    assert all(d == int(d) for d in deadlines) and deadlines[0] >= before + 2 + hz.settings.reservation_margin
    # each later job's window covers the ones before it (timeout + grace each)
    gaps = [b - a for a, b in zip(deadlines, deadlines[1:], strict=False)]
    assert all(g == pytest.approx(2 + 5, abs=0.01) for g in gaps), gaps
    assert redis_client.llen(hz.keys.queue("short")) == 2
    states, more, _ = hz.queue.finish_many([(j, "completed", 0.5, "") for j in jobs], ["short"], 4)
    assert states == ["completed"] * 4
    assert [j.id for j in more] == ids[4:]


def test_release_puts_prefetched_jobs_back_without_counting(hz):
    short_estimate(hz, "rel")
    ids = push(hz, "rel", 3)
    jobs, _ = hz.queue.reserve_many(["rel"], 3)
    states, _, _ = hz.queue.finish_many([(j, "release", 0.0, "") for j in jobs])
    assert states == ["pending"] * 3
    for job_id in ids:
        h = hz.queue.get(job_id)
        assert (h["status"], h["attempts"]) == ("pending", "0")


def test_lost_prefetched_jobs_do_not_lose_a_try(hz, redis_client):
    short_estimate(hz, "lost")
    ids = push(hz, "lost", 3, tries=1)
    jobs, _ = hz.queue.reserve_many(["lost"], 3)
    assert len(jobs) == 3
    # the worker dies holding them: every deadline passes
    redis_client.zadd(hz.keys.reserved("lost"), {j.id: time.time() - 1 for j in jobs})
    assert hz.queue.maintain()[1] == 3
    first = hz.queue.get(ids[0])
    assert first["status"] == "failed"  # it was running: that try counts (tries=1)
    assert json.loads(first["exception"])["class"] == "WorkerLost"
    for job_id in ids[1:]:
        h = hz.queue.get(job_id)
        assert (h["status"], h["attempts"], h["lost_prefetched"]) == ("pending", "0", "1")
    # a job that keeps dying while prefetched still ends failed after `tries` such losses
    job, _ = hz.queue.reserve(["lost"])
    redis_client.hset(hz.keys.job(job.id), mapping={"prefetched": job.attempts})
    redis_client.zadd(hz.keys.reserved("lost"), {job.id: time.time() - 1})
    hz.queue.maintain()
    assert hz.queue.get(job.id)["status"] == "failed"


def test_worker_with_prefetch_runs_every_job_once(hz, procs, redis_client):
    key = f"prefetch-{time.time()}"
    short_estimate(hz, "default")
    ids = sample_jobs.record.dispatch_many([((key, i), {}) for i in range(400)])
    result = procs.run("work", "--stop-when-empty", "--prefetch", "8")
    assert result.returncode == 0, result.stderr
    values = sorted(int(v.split(":")[0]) for v in redis_client.lrange(key, 0, -1))
    assert values == list(range(400))
    assert {hz.queue.get(i)["status"] for i in ids} == {"completed"}
    redis_client.delete(key)


def test_prefetch_never_takes_a_worker_past_max_jobs(hz, procs, redis_client):
    """A worker recycles at max_jobs. With prefetch it used to run the whole batch in hand first:
    16-17 jobs for max_jobs 3 (a reservation now takes at most the jobs left)."""
    key = f"prefetch-max-{time.time()}"
    short_estimate(hz, "default")
    ids = sample_jobs.record.dispatch_many([((key, i), {}) for i in range(40)])
    for _ in range(2):  # two workers in turn, each recycled at 3 jobs
        result = procs.run("work", "--max-jobs", "3", "--prefetch", "16")
        assert result.returncode == 0, result.stderr
    assert redis_client.llen(key) == 6
    statuses = [hz.queue.get(i)["status"] for i in ids]
    assert (statuses.count("completed"), statuses.count("pending")) == (6, 34)
    redis_client.delete(key)


def test_term_puts_unstarted_prefetched_jobs_back(hz, procs, redis_client):
    key = f"prefetch-term-{time.time()}"
    short_estimate(hz, "default", 10.0)
    ids = sample_jobs.sleep.dispatch_many([((key, 0.03), {}) for _ in range(40)])
    worker = procs.horizon("work", "--prefetch", "16")
    wait_for(lambda: redis_client.llen(key) >= 2)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    states = [hz.queue.get(i) for i in ids]
    done = [h for h in states if h["status"] == "completed"]
    back = [h for h in states if h["status"] == "pending"]
    assert len(done) + len(back) == 40
    assert done and back
    assert all(h["attempts"] == "0" for h in back)
    assert redis_client.zcard(hz.keys.reserved("default")) == 0
    redis_client.delete(key)


@pytest.mark.parametrize(("value", "ok"), [(1, True), (16, True), (0, False), (65, False), ("8", False)])
def test_prefetch_setting_is_validated(value, ok):
    from horizon.config import ConfigError, settings_from_dict

    data = {"defaults": {"supervisor-1": {"prefetch": value}}}
    if ok:
        assert settings_from_dict(data).supervisor("supervisor-1").prefetch == value
    else:
        with pytest.raises(ConfigError, match=r"defaults\.supervisor-1\.prefetch"):
            settings_from_dict(data)


def test_an_early_acknowledgement_reserves_the_next_batch_after_the_held_one(hz, redis_client):
    """finish_many_start writes the call and returns; the reply is read later. The jobs it reserves
    wait for the batch the worker still holds: their windows start after its timeouts + grace."""
    short_estimate(hz, "early")
    ids = push(hz, "early", 6, timeout=2)
    held, _ = hz.queue.reserve_many(["early"], 2)
    offset = sum(j.timeout + 5 for j in held)  # what the worker still has to run
    connection = hz.scripts.new_connection()
    done = [(held[0], "completed", 0.5, "")]
    before = float(redis_client.time()[0])
    pending = hz.queue.finish_many_start(connection, done, ["early"], 3, offset)
    hz.redis.ping()  # the caller goes on meanwhile (here: another command on another connection)
    states, more, _ = hz.queue.finish_many_collect(pending)
    assert states == ["completed"]
    assert [j.id for j in more] == ids[2:5]
    deadlines = [redis_client.zscore(hz.keys.reserved("early"), j.id) for j in more]
    assert deadlines[0] >= before + offset + 2  # after the held batch, then its own timeout
    for job in more:  # every one counts as prefetched: lost with the worker, no try is counted
        assert hz.queue.get(job.id)["prefetched"] == "1"
    connection.disconnect()


def test_recover_worker_puts_back_only_what_that_worker_held(hz, redis_client):
    short_estimate(hz, "held")
    ids = push(hz, "held", 5, tries=2)
    batch, _ = hz.queue.reserve_many(["held"], 4, worker="sup:101")
    other, _ = hz.queue.reserve(["held"], worker="sup:102")
    assert hz.queue.get(batch[1].id)["worker"] == "sup:101"
    assert hz.queue.recover_worker("sup:999", ["held"]) == 0
    assert hz.queue.recover_worker("sup:101", ["held"]) == 4
    first = hz.queue.get(ids[0])
    assert (first["status"], first["attempts"]) == ("pending", "1")  # it may have been running: a try
    for job_id in ids[1:4]:  # prefetched, most likely never started: no try counted
        h = hz.queue.get(job_id)
        assert (h["status"], h["attempts"], h["lost_prefetched"]) == ("pending", "0", "1")
    assert hz.queue.get(other.id)["status"] == "reserved"
    assert redis_client.zrange(hz.keys.reserved("held"), 0, -1) == [other.id]
    assert redis_client.llen(hz.keys.queue("held")) == 4
    stalled = [json.loads(f["data"]) for _, f in redis_client.xrange(hz.keys.events()) if f["event"] == "job:stalled"]
    assert sorted(e["job_id"] for e in stalled) == sorted(ids[:4])


def test_recover_worker_that_says_which_job_ran_counts_a_try_for_that_job_only(hz, redis_client):
    """A supervisor knows from its worker's shared state which job was running when it died: that
    attempt counts a try; the rest of the batch is released without one, however often it happens
    (before, a batch-mate of a job that kills its worker failed with WorkerLost, never having run)."""
    short_estimate(hz, "ran")
    poison = push(hz, "ran", 1, tries=3)[0]
    mates = push(hz, "ran", 3, tries=1)
    for round_ in (1, 2, 3):
        batch, _ = hz.queue.reserve_many(["ran"], 4, worker="sup:7")
        assert sorted(j.id for j in batch) == sorted([poison, *mates])
        assert hz.queue.recover_worker("sup:7", ["ran"], running=poison) == 4
        h = hz.queue.get(poison)
        assert (h["status"], h["attempts"]) == ("failed" if round_ == 3 else "pending", str(round_))
        for job_id in mates:
            h = hz.queue.get(job_id)
            assert (h["status"], h["attempts"]) == ("pending", "0")
    assert json.loads(hz.queue.get(poison)["exception"])["class"] == "WorkerLost"
    assert redis_client.zcard(hz.keys.reserved("ran")) == 0
    assert sorted(redis_client.lrange(hz.keys.queue("ran"), 0, -1)) == sorted(mates)


def test_recover_worker_with_no_job_running_releases_everything(hz, redis_client):
    short_estimate(hz, "idle")
    ids = push(hz, "idle", 3, tries=1)
    batch, _ = hz.queue.reserve_many(["idle"], 3, worker="sup:8")
    assert len(batch) == 3
    assert hz.queue.recover_worker("sup:8", ["idle"], keep=[ids[2]], running="") == 2
    assert [hz.queue.get(i)["status"] for i in ids] == ["pending", "pending", "reserved"]
    assert [hz.queue.get(i)["attempts"] for i in ids] == ["0", "0", "1"]


def test_the_api_job_object_names_the_worker_that_reserved_it(hz):
    from horizon.repositories.jobs import job_object

    (job_id,) = push(hz, "named", 1)
    assert job_object(hz.queue.get(job_id), None)["worker"] is None
    hz.queue.reserve(["named"], worker="host-1:supervisor-1:4242")
    assert job_object(hz.queue.get(job_id), None)["worker"] == "host-1:supervisor-1:4242"


@pytest.mark.slow
def test_the_supervisor_puts_back_at_once_what_a_killed_worker_held(hz, procs, redis_client, config_data):
    """prefetch 16 and 60 s timeouts: a killed worker's batch would wait out windows of minutes.
    Its supervisor reaps it and puts the jobs back at once; every job still runs."""
    key = f"prefetch-kill-{time.time()}"
    supervisor = {"queue": ["default"], "balance": False, "max_processes": 2, "prefetch": 16}
    procs.config.write_text(yaml.safe_dump(dict(config_data, defaults={"supervisor-1": supervisor})))
    short_estimate(hz, "default", 10.0)
    ids = sample_jobs.sleep.options(timeout=60, tries=3).dispatch_many([((key, 0.02), {}) for _ in range(300)])
    master = procs.horizon("start", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def a_worker_holding_a_batch() -> tuple[int, dict[str, float]] | None:
        held: dict[int, dict[str, float]] = {}
        for job_id, deadline in redis_client.zrange(hz.keys.reserved("default"), 0, -1, withscores=True):
            worker = redis_client.hget(hz.keys.job(job_id), "worker") or ""
            held.setdefault(int(worker.rsplit(":", 1)[1]), {})[job_id] = deadline
        pid, jobs = max(held.items(), key=lambda item: len(item[1]), default=(0, {}))
        return (pid, jobs) if len(jobs) >= 4 else None

    pid, held = wait_for(a_worker_holding_a_batch, timeout=30, message="no worker held a prefetched batch")
    victim = redis_client.hget(hz.keys.job(next(iter(held))), "worker")
    assert victim.endswith(f":{pid}")
    os.kill(pid, signal.SIGKILL)

    def back() -> bool:
        states = [redis_client.hmget(hz.keys.job(j), "status", "worker") for j in held]
        return all(status != "reserved" or worker != victim for status, worker in states)

    wait_for(back, timeout=20, interval=0.05, message="the killed worker's jobs were not put back")
    assert time.time() < min(held.values())  # before any of their reservation windows ended
    wait_for(lambda: statuses_of(hz, ids) == {"completed"}, timeout=60, interval=0.2,
             message="not every job completed after the kill")
    starts = [v for v in redis_client.lrange(key, 0, -1) if v.startswith("start:")]
    # again: the job it was running and those it ran but had not acknowledged (within one batch)
    assert 300 <= len(starts) <= 300 + 16
    master.terminate()
    assert master.wait(timeout=30) == 0


def statuses_of(hz, ids: list[str]) -> set[str]:
    return {hz.queue.get(i)["status"] for i in ids}


def test_a_lost_early_acknowledgement_puts_back_the_batch_it_reserved(hz, redis_client):
    """The reply of an early acknowledgement (which also reserved the next batch) is lost with its
    connection: the worker puts that batch back at once, not when its windows end (here up to
    4 x 65 s), and keeps the jobs it ran, which it acknowledges again."""
    from horizon.worker import Worker, WorkerOptions

    short_estimate(hz, "lostack")
    ids = push(hz, "lostack", 8, timeout=60)
    worker = Worker(hz, WorkerOptions(queues=["lostack"], prefetch=4, name="sup:lost"))
    worker.batch, _ = hz.queue.reserve_many(["lostack"], 4, worker="sup:lost")
    hz.queue.finish_many([])  # the finish script is loaded (as in any running deployment)
    worker.send_early()  # reserves the next 4 while the worker runs these
    wait_for(lambda: hz.queue.get(ids[7])["status"] == "reserved", message="the early acknowledgement did not run")
    worker.done = [(job, "completed", 1.0, "") for job in worker.batch]  # ran them
    worker.batch = []
    worker._ack_connection.disconnect()  # the reply is lost with the connection
    assert worker.collect_early() == []
    for job_id in ids[4:]:  # prefetched and never started: back, no try counted
        h = hz.queue.get(job_id)
        assert (h["status"], h["attempts"]) == ("pending", "0")
    assert sorted(redis_client.lrange(hz.keys.queue("lostack"), 0, -1)) == sorted(ids[4:])
    assert all(hz.queue.get(job_id)["status"] == "reserved" for job_id in ids[:4])  # still its own
    worker.acknowledge(want_next=False)
    assert all(hz.queue.get(job_id)["status"] == "completed" for job_id in ids[:4])


def test_a_lost_acknowledgement_reply_leaves_no_batch_behind(hz, redis_client, config_data, redis_url):
    """The reply of a worker's acknowledgement, which also reserved its next batch, is lost on the
    network after Redis ran it: the worker puts that batch back before it acknowledges again, so
    no job stays reserved in its name but the batch it then holds."""
    from horizon.config import settings_from_dict
    from horizon.context import Horizon
    from horizon.worker import Worker, WorkerOptions
    from tests.helpers import ReplyCuttingProxy

    short_estimate(hz, "cut")
    ids = push(hz, "cut", 12, timeout=60)
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    proxy = ReplyCuttingProxy(port)
    through = Horizon(settings_from_dict(dict(config_data, redis={"url": proxy.url})))
    try:
        worker = Worker(through, WorkerOptions(queues=["cut"], prefetch=4, name="sup:cut"))
        ran, _ = through.queue.reserve_many(["cut"], 4, worker="sup:cut")
        through.queue.finish_many([])  # the finish script is loaded (as in any running deployment)
        worker.done = [(job, "completed", 1.0, "") for job in ran]
        proxy.cut_next_reply()
        worker.acknowledge(want_next=True)  # the first reply (batch ids[4:8]) is lost; retried
        assert proxy.cuts == 1
        held = [job.id for job in worker.batch]
        assert len(held) == 4 and all(hz.queue.get(i)["status"] == "completed" for i in ids[:4])
        reserved = redis_client.zrange(hz.keys.reserved("cut"), 0, -1)
        assert sorted(reserved) == sorted(held)  # nothing else left reserved in its name
        back = [i for i in ids[4:] if i not in held]  # never started: released, no try counted
        assert [(hz.queue.get(i)["status"], hz.queue.get(i)["attempts"]) for i in back] == [("pending", "0")] * 4
    finally:
        through.close()
        proxy.close()
