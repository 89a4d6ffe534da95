"""Horizon bookkeeping against a real redis-server: job lists, paging, trimming, expiry, metrics,
snapshots, waits, monitored tags, retries, forget and clear. Jobs run through the real Lua scripts
(``JobQueue.reserve``/``finish``, as the worker calls them) with chosen outcomes and runtimes."""

from __future__ import annotations

import json
import math

import pytest

from horizon.config import MetricsSettings, TrimSettings, TrimSnapshotsSettings
from horizon.context import Horizon
from horizon.queue import JobConflict, JobNotFound, JobSpec
from horizon.repositories.jobs import JobRepository
from horizon.repositories.metrics import MetricsRepository, percentile
from horizon.repositories.queues import QueueRepository
from horizon.repositories.tags import TagRepository
from horizon.repositories.workload import WorkloadRepository
from tests.helpers import wait_for

PAYLOAD = json.dumps({"args": [1], "kwargs": {"k": "v"}})


def push(hz, n=1, queue="default", name="tests.noop", tags=(), **kw) -> list[str]:
    return hz.queue.push([JobSpec(name=name, queue=queue, payload=PAYLOAD, tags=list(tags), **kw) for _ in range(n)])


def run(hz, n=1, queues=("default",), outcome="completed", runtime=5.0, detail=""):
    """Reserve and finish up to ``n`` jobs with the given outcome; returns the finished ids."""
    done = []
    for _ in range(n):
        job, _due = hz.queue.reserve(list(queues))
        if job is None:
            break
        if outcome != "completed" and not detail:
            detail = json.dumps({"class": "ValueError", "message": "boom", "traceback": "Traceback ..."})
        hz.queue.finish(job, outcome, runtime, detail)
        done.append(job.id)
    return done


def with_settings(hz, **changes) -> Horizon:
    return Horizon(hz.settings.with_overrides(**changes), client=hz.redis)


def seconds(n: int) -> float:
    """A trim setting (minutes) worth ``n`` whole seconds."""
    return n / 60


def all_pages(repo, list_name, limit):
    seen, cursor, totals = [], None, set()
    while True:
        jobs, total = repo.page(list_name, starting_at=cursor, limit=limit)
        totals.add(total)
        if not jobs:
            return seen, totals
        seen.extend(jobs)
        cursor = jobs[-1]["index"]


# --- job lists --------------------------------------------------------------------------------


def test_each_list_follows_the_job_life(hz):
    silenced_hz = with_settings(hz, silenced=("tests.quiet",))
    repo = JobRepository(hz)
    ok, bad, quiet, waiting = push(hz), push(hz), push(hz, name="tests.quiet"), push(hz)
    later = push(hz, available_at=9e9)
    assert [j["id"] for j in repo.page("pending")[0]] == later + waiting + quiet + bad + ok
    assert repo.page("pending")[0][0]["status"] == "scheduled"

    run(silenced_hz, 1)
    run(silenced_hz, 1, outcome="failed_final")
    run(silenced_hz, 1)

    assert [j["id"] for j in repo.page("completed")[0]] == ok
    assert [j["id"] for j in repo.page("silenced")[0]] == quiet
    assert [j["id"] for j in repo.page("failed")[0]] == bad
    assert [j["id"] for j in repo.page("recent_failed")[0]] == bad
    assert [j["id"] for j in repo.page("pending")[0]] == later + waiting
    recent, total = repo.page("recent")
    assert total == 5 and [j["id"] for j in recent] == later + waiting + quiet + bad + ok
    assert [j["status"] for j in recent] == ["scheduled", "pending", "completed", "failed", "completed"]

    failed = repo.page("failed")[0][0]
    assert failed["exception"] == {"class": "ValueError", "message": "boom", "traceback": "Traceback ..."}
    assert failed["payload"] == {"args": [1], "kwargs": {"k": "v"}}
    assert failed["attempts"] == 1 and failed["connection"] == "redis" and failed["queue"] == "default"
    assert failed["failed_at"] >= failed["reserved_at"] >= failed["pushed_at"] > 0
    assert failed["retried_by"] == [] and failed["retry_of"] is None and failed["tags"] == []
    done = repo.get(ok[0])
    assert done["status"] == "completed" and done["runtime"] == 5.0 and done["completed_at"]
    assert done["index"] == repo.page("recent")[0][-1]["index"]
    assert repo.get("no-such-job") is None
    with pytest.raises(ValueError, match="unknown job list 'bogus'"):
        repo.page("bogus")


def test_pages_never_skip_or_repeat_while_jobs_arrive(hz):
    repo = JobRepository(hz)
    ids = push(hz, 237)
    seen, cursor = [], -1
    while True:
        jobs, _total = repo.page("recent", starting_at=cursor, limit=50)
        if not jobs:
            break
        assert len(jobs) <= 50
        seen.extend(j["id"] for j in jobs)
        assert [j["index"] for j in jobs] == sorted((j["index"] for j in jobs), reverse=True)
        cursor = jobs[-1]["index"]
        push(hz, 3)  # newer jobs land before the cursor: never shown on the following pages
    assert seen == list(reversed(ids))
    assert repo.page("recent")[1] == 237 + 3 * 5


def test_pages_skip_and_drop_expired_entries(hz, redis_client):
    repo = JobRepository(hz)
    ids = push(hz, 30)
    gone = set(ids[5:25])
    redis_client.delete(*(hz.keys.job(i) for i in gone))
    jobs, total = repo.page("pending", limit=8)
    assert [j["id"] for j in jobs] == list(reversed(ids[25:])) + [ids[4], ids[3], ids[2]]
    assert total == 10
    assert redis_client.zcard(hz.keys.index("pending")) == 10
    assert repo.page("pending", limit=0)[0] == repo.page("pending", limit=1)[0]  # clamped to 1


# --- trimming and expiry ------------------------------------------------------------------------


def test_finished_jobs_expire_and_indexes_trim(hz, redis_client):
    short = with_settings(hz, trim=TrimSettings(recent=seconds(1), pending=seconds(1), completed=seconds(1),
                                                 recent_failed=seconds(2), failed=seconds(2)))
    repo = JobRepository(short)
    done = push(short, 3)
    run(short, 2)
    run(short, 1, outcome="failed_final")
    waiting = push(short, 1, queue="other")
    assert redis_client.ttl(short.keys.job(done[0])) == 1
    assert redis_client.ttl(short.keys.job(done[2])) == 2
    assert redis_client.ttl(short.keys.job(waiting[0])) == -1  # pending jobs never expire
    wait_for(lambda: not redis_client.exists(short.keys.job(done[0])), timeout=5)
    wait_for(lambda: not redis_client.exists(short.keys.job(done[2])), timeout=6)
    queues = QueueRepository(short)
    counts = queues.detail("default")
    assert (counts["completed"], counts["failed"]) == (2, 1)
    short.queue.maintain()
    for name in ("recent", "pending", "completed", "failed", "recent_failed"):
        assert repo.page(name) == ([], 0), name
    # the queue's own counts too (GET queues/{name}): before, an idle queue kept them for ever
    counts = queues.detail("default")
    assert (counts["completed"], counts["failed"]) == (0, 0)
    assert redis_client.exists(short.keys.job(waiting[0]))
    assert redis_client.llen(short.keys.queue("other")) == 1


def test_memory_of_finished_jobs_is_bounded_by_trim(hz, redis_client):
    short = with_settings(hz, trim=TrimSettings(recent=seconds(1), pending=seconds(1), completed=seconds(1)))
    ids = push(short, 500)
    run(short, 500)
    keys = [short.keys.job(i) for i in ids]
    wait_for(lambda: redis_client.exists(*keys) == 0, timeout=6, interval=0.1)
    wait_for(lambda: push(short, 1) and run(short, 1) and redis_client.zcard(short.keys.index("completed")) == 1,
             timeout=5, interval=0.2)
    assert redis_client.zcard(short.keys.index("recent")) <= 2


# --- metrics and snapshots ------------------------------------------------------------------------


def test_snapshots_record_intervals_and_keep_the_newest(hz):
    snap_hz = with_settings(hz, metrics=MetricsSettings(trim_snapshots=TrimSnapshotsSettings(job=3, queue=2)))
    metrics = MetricsRepository(snap_hz)
    for interval in range(5):
        push(snap_hz, interval + 1)
        run(snap_hz, interval + 1, runtime=100.0 * (interval + 1))
        metrics.snapshot()
    jobs = metrics.job_snapshots("tests.noop")
    assert [s["throughput"] for s in jobs] == [3, 4, 5]
    assert [s["runtime"] for s in jobs] == pytest.approx([0.3, 0.4, 0.5])
    assert jobs[0]["time"] < jobs[1]["time"] < jobs[2]["time"]
    queues = metrics.queue_snapshots("default")
    assert [s["throughput"] for s in queues] == [4, 5] and all(s["wait"] == 0 for s in queues)
    assert metrics.measured_jobs() == ["tests.noop"] and metrics.measured_queues() == ["default"]
    assert metrics.runtime_estimate_ms("default") > 300  # survives every snapshot
    metrics.snapshot()  # an idle interval records zero, never a stale figure
    assert metrics.job_snapshots("tests.noop")[-1]["throughput"] == 0
    assert metrics.runtime_estimate_ms("default") > 300


def test_a_snapshot_run_again_records_nothing(hz):
    """A snapshot call whose reply was lost may be run again by the client: it must not record a
    second, empty snapshot of the interval the first run just reset."""
    metrics = MetricsRepository(hz)
    push(hz, 2)
    run(hz, 2, runtime=50.0)
    args = ('{"default": 0}', 10, 10, "call-1")
    assert hz.scripts.call("snapshot", *args) == [1, 1]
    assert hz.scripts.call("snapshot", *args) == [0, 0]  # the same call again
    assert [s["throughput"] for s in metrics.job_snapshots("tests.noop")] == [2]
    assert [s["throughput"] for s in metrics.queue_snapshots("default")] == [2]
    metrics.snapshot()  # a new call records the (empty) next interval
    assert [s["throughput"] for s in metrics.job_snapshots("tests.noop")] == [2, 0]


def test_queue_with_max_runtime_and_throughput_read_the_latest_snapshot(hz):
    metrics = MetricsRepository(hz)
    assert metrics.queue_with_max_runtime() is None and metrics.queue_with_max_throughput() is None
    # 'slow' leads early on; 'busy' leads in the latest of many snapshots
    for i in range(30):
        slow_lead = i < 29
        push(hz, 3 if slow_lead else 1, queue="slow")
        push(hz, 1 if slow_lead else 4, queue="busy")
        run(hz, 5, queues=("slow",), runtime=900.0 if slow_lead else 10.0)
        run(hz, 5, queues=("busy",), runtime=10.0 if slow_lead else 2000.0)
        metrics.snapshot()
        expected = "slow" if slow_lead else "busy"
        assert metrics.queue_with_max_runtime() == expected
        assert metrics.queue_with_max_throughput() == expected
    assert len(metrics.queue_snapshots("slow")) == 24


def test_a_queue_without_a_snapshot_compares_its_runtime_in_the_snapshots_unit(hz):
    """A queue with no snapshot yet competes with its current interval's runtime: in seconds, as
    snapshots hold it. Before, that was milliseconds, so any such queue beat every snapshotted one
    by a factor of 1000 (10 ms jobs 'slower' than 200 ms ones)."""
    metrics = MetricsRepository(hz)
    push(hz, 2, queue="slow")
    run(hz, 2, queues=("slow",), runtime=200.0)
    metrics.snapshot()
    push(hz, 2, queue="fast")
    run(hz, 2, queues=("fast",), runtime=10.0)
    assert metrics.queue_snapshots("fast") == []
    assert metrics.queue_with_max_runtime() == "slow"


def test_jobs_per_minute_counts_the_last_sixty_seconds(hz, redis_client):
    metrics = MetricsRepository(hz)
    push(hz, 30)
    run(hz, 30)
    assert 28 <= metrics.jobs_per_minute() <= 30
    now = 1_800_000_030.0  # half-way through a minute nobody wrote to
    minute = math.floor(now / 60)
    redis_client.set(hz.keys.throughput(minute), 10)
    redis_client.set(hz.keys.throughput(minute - 1), 40)
    assert metrics.jobs_per_minute(now=now) == 10 + 40 * 0.5
    ttl = redis_client.ttl(hz.keys.throughput(math.floor(redis_client.time()[0] / 60)))
    assert 0 < ttl <= 7200


def test_runtime_percentiles_from_histogram(hz):
    metrics = MetricsRepository(hz)
    push(hz, 100)
    for ms in range(1, 101):
        run(hz, 1, runtime=float(ms))
    p = metrics.percentiles("job", "tests.noop")
    assert 25 < p["p50"] <= 50 and 50 < p["p95"] <= 100 and p["p95"] <= p["p99"] <= 100
    assert metrics.percentiles("queue", "default") == p
    assert metrics.percentiles("queue", "never") == {"p50": 0, "p95": 0, "p99": 0}
    assert percentile([0, 4], 0.5) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="metrics kind"):
        metrics.percentiles("host", "x")


def test_counts_of_recent_and_failed(hz):
    metrics = MetricsRepository(hz)
    push(hz, 4)
    run(hz, 2, outcome="failed_final")
    assert metrics.recent_jobs_count() == 4 and metrics.failed_jobs_count() == 2


# --- workload and waits ---------------------------------------------------------------------------


def test_wait_is_length_times_runtime_estimate_over_processes(hz):
    push(hz, 1, queue="emails")
    run(hz, 1, queues=("emails",), runtime=2000.0)
    push(hz, 10, queue="emails")
    push(hz, 4, queue="a")
    push(hz, 2, queue="b")
    push(hz, 1, queue="a", available_at=9e9)  # scheduled: not waiting for a process
    processes = {"redis:emails": 4, "redis:a,b": 2, "redis:idle": 1}
    workload = WorkloadRepository(hz, lambda: processes)
    assert workload.waits() == {"redis:a": 0, "redis:b": 0, "redis:emails": 5.0, "redis:idle": 0}
    rows = workload.workload()
    assert [r["name"] for r in rows] == ["a,b", "emails", "idle"]
    assert rows[0]["length"] == 6 and rows[0]["processes"] == 2
    assert [s["name"] for s in rows[0]["split_queues"]] == ["a", "b"]
    assert rows[1] == {"name": "emails", "length": 10, "wait": 5.0, "processes": 4, "split_queues": []}
    assert WorkloadRepository(hz).waits()["redis:emails"] == 20.0  # no live supervisor: as if one process


def test_workload_reads_processes_from_live_supervisors(hz):
    from horizon.repositories.supervisors import SupervisorRepository

    SupervisorRepository(hz).update({"name": "host-1:supervisor-1", "processes": {"redis:a,b": 2, "redis:c": 3}})
    SupervisorRepository(hz).update({"name": "host-2:supervisor-1", "processes": {"redis:c": 1}})
    push(hz, 1, queue="c")
    run(hz, 1, queues=("c",), runtime=1000.0)
    push(hz, 8, queue="c")
    rows = {r["name"]: r for r in WorkloadRepository(hz).workload()}
    assert set(rows) == {"a,b", "c"}
    assert rows["c"]["processes"] == 4 and rows["c"]["wait"] == 2.0
    assert WorkloadRepository(hz).waits() == {"redis:a": 0, "redis:b": 0, "redis:c": 2.0}


def test_long_wait_is_logged_and_recorded_once_per_interval(hz, redis_client, caplog):
    slow = with_settings(hz, waits={"redis:default": 1, "redis:other": 0})
    push(slow, 1)
    run(slow, 1, runtime=1500.0)
    push(slow, 2)
    push(slow, 5, queue="other")
    workload = WorkloadRepository(slow)
    with caplog.at_level("WARNING"):
        assert workload.long_waits() == [{"name": "redis:default", "wait": 3.0, "threshold": 1.0}]
        assert workload.long_waits() == [{"name": "redis:default", "wait": 3.0, "threshold": 1.0}]
    events = [e for _id, e in redis_client.xrange(slow.keys.events()) if e["event"] == "queue:long_wait"]
    assert len(events) == 1
    assert json.loads(events[0]["data"])["queue"] == "default"
    assert sum("long wait on redis:default" in r.message for r in caplog.records) == 1
    assert 0 < redis_client.ttl(slow.keys.wait_alert("redis:default")) <= 300


# --- tags ---------------------------------------------------------------------------------------


def test_monitored_tag_lifecycle(hz, redis_client):
    tags, jobs = TagRepository(hz), JobRepository(hz)
    before = push(hz, 1, tags=["user:1"])
    assert tags.jobs("user:1") == ([], 0)
    tags.monitor("user:1")
    assert tags.monitoring() == [{"tag": "user:1", "count": 0}]
    tagged = push(hz, 3, tags=["user:1", "vip"])
    push(hz, 2, tags=["user:2"])
    run(hz, 1)  # `before` completes: monitored from now on, indexed at its push score
    run(hz, 1)
    run(hz, 1, outcome="failed_final")
    listed, total = tags.jobs("user:1")
    assert total == 4 and [j["id"] for j in listed] == list(reversed(tagged)) + before
    assert [j["status"] for j in listed] == ["pending", "failed", "completed", "completed"]
    assert tags.monitoring() == [{"tag": "user:1", "count": 4}]
    month = hz.settings.trim.monitored * 60
    assert redis_client.ttl(hz.keys.job(tagged[0])) > hz.settings.trim.completed * 60  # kept while monitored
    assert redis_client.ttl(hz.keys.job(tagged[0])) <= month
    assert [j["id"] for j in jobs.page_failed_by_tag("vip")[0]] == [tagged[1]]
    assert [j["id"] for j in jobs.page_failed_by_tag("user:1")[0]] == [tagged[1]]

    tags.stop_monitoring("user:1")
    assert tags.monitoring() == [] and tags.jobs("user:1") == ([], 0)
    assert not redis_client.exists(hz.keys.tag_jobs("user:1"))
    assert 0 < redis_client.ttl(hz.keys.job(tagged[0])) <= hz.settings.trim.completed * 60  # released
    assert redis_client.ttl(hz.keys.job(tagged[2])) == -1  # still pending
    push(hz, 1, tags=["user:1"])
    assert not redis_client.exists(hz.keys.tag_jobs("user:1"))
    with pytest.raises(ValueError, match="tag must be a non-empty string"):
        tags.monitor(" ")


def test_monitored_tags_with_slash_colon_and_trim(hz, redis_client):
    short = with_settings(hz, trim=TrimSettings(monitored=seconds(1)))
    tags = TagRepository(short)
    tags.monitor("team/a:b")
    first = push(short, 2, tags=["team/a:b"])
    assert [j["id"] for j in tags.jobs("team/a:b")[0]] == list(reversed(first))
    assert 0 < redis_client.ttl(short.keys.tag_jobs("team/a:b")) <= 1

    def first_trimmed():
        newest = push(short, 1, tags=["team/a:b"])  # each push trims the tag's index
        listed = [j["id"] for j in tags.jobs("team/a:b", limit=1000)[0]]
        return newest[0] in listed and not set(first) & set(listed)

    wait_for(first_trimmed, timeout=5, interval=0.3)


def test_tag_pages_are_paged_like_lists(hz):
    tags = TagRepository(hz)
    tags.monitor("bulk")
    ids = push(hz, 120, tags=["bulk"])
    seen, cursor = [], None
    while True:
        page, total = tags.jobs("bulk", starting_at=cursor, limit=50)
        if not page:
            break
        assert total == 120
        seen += [j["id"] for j in page]
        cursor = page[-1]["index"]
    assert seen == list(reversed(ids))


# --- retries --------------------------------------------------------------------------------------


def test_retry_tracks_the_copy_status_on_the_original(hz):
    jobs, tags = JobRepository(hz), TagRepository(hz)
    tags.monitor("t")
    original = push(hz, 1, tags=["t"])[0]
    run(hz, 1, outcome="failed_final")
    first = hz.queue.retry(original)
    copy = jobs.get(first)
    assert copy["retry_of"] == original and copy["status"] == "pending" and copy["tags"] == ["t"]
    assert copy["payload"] == {"args": [1], "kwargs": {"k": "v"}} and copy["attempts"] == 0
    entry = jobs.get(original)["retried_by"]
    assert [(e["id"], e["status"]) for e in entry] == [(first, "pending")] and entry[0]["retried_at"] > 0

    run(hz, 1, outcome="failed_final")
    assert [e["status"] for e in jobs.get(original)["retried_by"]] == ["failed"]
    assert jobs.get(first)["status"] == "failed"

    second = hz.queue.retry(original)
    run(hz, 1)
    retried = jobs.get(original)["retried_by"]
    assert [(e["id"], e["status"]) for e in retried] == [(first, "failed"), (second, "completed")]
    assert jobs.get(original)["status"] == "failed"  # the original stays in the failed list
    assert [j["id"] for j in jobs.page("failed")[0]] == [first, original]
    assert [j["id"] for j in jobs.page("completed")[0]] == [second]
    assert [j["id"] for j in tags.jobs("t")[0]] == [second, first, original]  # copies carry the tag

    with pytest.raises(JobConflict, match="completed, not failed"):
        hz.queue.retry(second)
    with pytest.raises(JobNotFound):
        hz.queue.retry("missing")


def test_retry_copy_with_tries_left_stays_pending_on_the_original(hz):
    jobs = JobRepository(hz)
    original = push(hz, 1, tries=2)[0]
    run(hz, 2, outcome="failed")
    copy = hz.queue.retry(original)
    run(hz, 1, outcome="failed")  # first of two tries: back to pending, not failed yet
    assert jobs.get(copy)["status"] == "pending"
    assert jobs.get(original)["retried_by"][0]["status"] == "pending"
    run(hz, 1, outcome="failed")
    assert jobs.get(original)["retried_by"][0]["status"] == "failed"
    hz.redis.delete(hz.keys.job(original))  # the original expired: the copy still finishes cleanly
    copy2_parent = push(hz, 1)[0]
    run(hz, 1, outcome="failed_final")
    copy2 = hz.queue.retry(copy2_parent)
    hz.redis.delete(hz.keys.job(copy2_parent))
    run(hz, 1)
    assert jobs.get(copy2)["status"] == "completed"


# --- forget and clear -----------------------------------------------------------------------------


def test_forget_one_failed_job_from_every_index(hz, redis_client):
    jobs = JobRepository(hz)
    TagRepository(hz).monitor("m")
    failed = push(hz, 2, tags=["m", "x"])
    run(hz, 2, outcome="failed_final")
    done = push(hz, 1)
    run(hz, 1)
    assert jobs.forget(failed[0]) is True
    assert not redis_client.exists(hz.keys.job(failed[0]))
    for key in (hz.keys.index("failed"), hz.keys.index("recent_failed"), hz.keys.index("recent"),
                hz.keys.tag_failed("x"), hz.keys.tag_jobs("m"), hz.keys.queue_index("default", "failed")):
        assert redis_client.zscore(key, failed[0]) is None, key
    assert [j["id"] for j in jobs.page("failed")[0]] == [failed[1]]
    assert jobs.forget(failed[0]) is False
    assert jobs.forget(done[0]) is False and jobs.get(done[0])["status"] == "completed"
    assert jobs.forget("unknown") is False


def test_the_batch_list_keeps_a_running_batch_past_the_trim(hz, redis_client):
    """The list of batches dropped every entry older than trim.failed by its creation time, so a
    batch still running (a member delayed for long, a retry) vanished from GET batches while its
    record said pending 1. Now it forgets only batches whose record is gone (finished, then kept
    trim.failed)."""
    import time

    from horizon.repositories.batches import BatchRepository
    from horizon.workflows import _spec, push_batch
    from tests import sample_jobs

    short = with_settings(hz, trim=TrimSettings(failed=seconds(1)))
    running = push_batch(short, [_spec(sample_jobs.noop.options(delay=3600).call(), short)], callbacks={})
    finished = push_batch(short, [], callbacks={})  # no member: finished at once, kept 1 s
    created = time.time()
    wait_for(lambda: not redis_client.exists(short.keys.batch(finished)), timeout=5)
    wait_for(lambda: time.time() > created + 1.1, timeout=5)  # both entries older than the trim
    newest = push_batch(short, [], callbacks={})  # a creation trims the list
    listed = [b["id"] for b in BatchRepository(short).page()]
    assert listed == [newest, running]
    assert BatchRepository(short).page(before_id=newest)[0]["id"] == running


def test_forget_all_failed_in_batches(hz, redis_client):
    jobs = JobRepository(hz)
    push(hz, 1203)
    run(hz, 1200, outcome="failed_final")
    redis_client.delete(hz.keys.job(jobs.page("failed", limit=1)[0][0]["id"]))  # one record already expired
    assert jobs.forget_all_failed() == 1200
    assert jobs.page("failed") == ([], 0) and jobs.page("recent_failed") == ([], 0)
    assert jobs.page("pending")[1] == 3


def test_clear_queue_deletes_pending_and_scheduled_jobs_only(hz, redis_client):
    jobs = JobRepository(hz)
    push(hz, 1, queue="q")
    running, _ = hz.queue.reserve(["q"])
    waiting = push(hz, 1500, queue="q")
    later = push(hz, 3, queue="q", available_at=9e9)
    other = push(hz, 2, queue="other")
    assert jobs.clear_queue("q") == 1503
    assert redis_client.llen(hz.keys.queue("q")) == 0 and redis_client.zcard(hz.keys.delayed("q")) == 0
    assert not redis_client.exists(hz.keys.job(waiting[0])) and not redis_client.exists(hz.keys.job(later[0]))
    assert [j["id"] for j in jobs.page("pending")[0]] == list(reversed(other)) + [running.id]
    hz.queue.finish(running, "completed", 1.0)
    assert jobs.get(running.id)["status"] == "completed"
    assert jobs.clear_queue("q") == 0


def test_one_finish_call_for_many_jobs_records_what_one_call_per_job_does(hz, redis_client):
    """finish_many writes metrics once per name and queue: the figures match job-by-job finishing."""
    runtimes = [0.5, 3.0, 3.0, 40.0, 700.0]
    one = with_settings(hz, prefix=hz.settings.prefix + "-one")
    for target in (hz, one):
        push(target, len(runtimes), name="tests.noop")
        push(target, 1, name="tests.other")
    for runtime in [*runtimes, 9.0]:  # one at a time
        job, _ = one.queue.reserve(["default"])
        one.queue.finish(job, "completed", runtime)
    reserved = [hz.queue.reserve(["default"])[0] for _ in range(len(runtimes) + 1)]
    done = [(job, "completed", ms, "") for job, ms in zip(reserved, [*runtimes, 9.0], strict=True)]
    states, _, _ = hz.queue.finish_many(done)
    assert states == ["completed"] * 6
    for kind, name in (("job", "tests.noop"), ("job", "tests.other"), ("queue", "default")):
        key = {"job": "job_metrics", "queue": "queue_metrics"}[kind]
        many = redis_client.hgetall(getattr(hz.keys, key)(name))
        single = redis_client.hgetall(getattr(one.keys, key)(name))
        # job by job, the estimate is rounded to 3 decimals after each job; in one call, once
        assert float(many.pop("estimate")) == pytest.approx(float(single.pop("estimate")), abs=0.01)
        assert many == single and int(many["throughput"]) in (1, 5, 6)
    minute = math.floor(redis_client.time()[0] / 60)  # the call ran in this minute or the one before
    counts = [redis_client.get(hz.keys.throughput(m)) for m in (minute, minute - 1)]
    assert sorted(counts, key=str) == sorted(["6", None], key=str)
    assert MetricsRepository(hz).measured_jobs() == ["tests.noop", "tests.other"]
    assert redis_client.zcard(hz.keys.index("completed")) == 6
    for key in redis_client.scan_iter(match=f"{{{one.settings.prefix}}}:*"):
        redis_client.delete(key)


def _queue_keys(hz, redis_client, queue: str) -> list[str]:
    """The keys kept for ``queue`` alone (its indexes, metrics, snapshots, reservations)."""
    k = hz.keys
    keys = [k.queue_index(queue, "completed"), k.queue_index(queue, "failed"), k.queue_metrics(queue),
            k.queue_snapshots(queue), k.reserved(queue)]
    return [key for key in keys if redis_client.exists(key)]


def test_a_deleted_or_renamed_jq_queue_leaves_no_bookkeeping(hz, redis_client):
    """jq.delete_queue / a rename took the queue out of the queues set, which is all maintenance
    trims; its indexes, metrics and snapshots stayed for ever (and the metrics were snapshotted
    every interval) while the jobs they named expired."""
    from horizon.repositories.metrics import MetricsRepository
    from horizon.repositories.queue_meta import QueueMetaRepository

    meta, queues = QueueMetaRepository(hz), QueueRepository(hz)
    for name in ("tenant-a", "tenant-b"):
        meta.add(name, "normal", {}, suspended=False)
        push(hz, 3, queue=name)
        run(hz, 2, queues=(name,))
        run(hz, 1, queues=(name,), outcome="failed_final")
    MetricsRepository(hz).snapshot()
    assert len(_queue_keys(hz, redis_client, "tenant-a")) == 4  # indexes, metrics, snapshots
    queues.pause("tenant-a")
    meta.delete("tenant-a")
    meta.update("tenant-b", "tenant-c", None, None)
    for gone in ("tenant-a", "tenant-b"):
        assert _queue_keys(hz, redis_client, gone) == []
        assert not redis_client.sismember(hz.keys.measured_queues(), gone)


def test_a_jq_queue_with_a_running_job_is_not_deleted(hz, redis_client):
    """Deleting a queue whose job runs: maintenance no longer visited it, so if the worker died the
    job stayed reserved for ever (lost)."""
    from horizon.repositories.queue_meta import QueueMetaError, QueueMetaRepository

    meta, queues = QueueMetaRepository(hz), QueueRepository(hz)
    meta.add("busy", "normal", {}, suspended=False)
    job_id = push(hz, 1, queue="busy")[0]
    job, _ = hz.queue.reserve(["busy"])
    queues.pause("busy")
    with pytest.raises(QueueMetaError, match="1 job.s. of the queue are running; delete it once they end"):
        meta.delete("busy")
    hz.queue.finish(job, "completed", 1.0, "")
    meta.delete("busy")
    assert redis_client.hget(hz.keys.job(job_id), "status") == "completed"


def test_maintenance_forgets_batches_whose_record_is_gone(hz, redis_client):
    """The batches list forgot a batch whose record had expired only when another batch was
    created; once batches stopped coming, their ids stayed listed for ever."""
    import horizon
    from tests import sample_jobs

    bid = horizon.batch([sample_jobs.noop.call()])
    running = horizon.batch([sample_jobs.noop.call()])
    old = 1_000_000  # µs stamps: both listed long ago, past trim.failed
    redis_client.zadd(hz.keys.batches(), {bid: old, running: old + 1})
    redis_client.delete(hz.keys.batch(bid))  # as when its record expired
    hz.queue.maintain()
    assert redis_client.zrange(hz.keys.batches(), 0, -1) == [running]  # a batch still there stays


def test_a_deleted_api_schedule_gets_no_marker_back(hz, redis_client):
    """A master reads the schedules, a delete comes, then the master moves the schedule's marker:
    the marker came back, without an expiry, for a schedule that no longer existed."""
    from horizon.config import ScheduleSettings
    from horizon.schedules import ScheduleRepository

    repo = ScheduleRepository(hz)
    repo.save(ScheduleSettings(name="gone", job="tests.noop", every=60))
    assert repo.delete("gone")
    repo.advance("gone", 1_800_000_000.0, stored=True)
    assert not redis_client.exists(hz.keys.schedule_fired("gone"))
    repo.advance("config-one", 1_800_000_000.0)  # a config schedule is not stored: always marked
    assert redis_client.get(hz.keys.schedule_fired("config-one")) == "1800000000.0"


def test_retrying_a_queue_retries_each_failing_job_once_per_round(hz, redis_client):
    """POST queues/{name}/retry retried a failed job again once its copy had failed, and the
    failed copy too: a job that keeps failing ran 1, 2, 4, 8, 16 times in five rounds."""
    queues = QueueRepository(hz)
    original = push(hz, 1, queue="flaky")[0]
    assert run(hz, 1, queues=("flaky",), outcome="failed_final") == [original]
    for round_ in range(4):
        created = queues.retry_all("flaky")
        assert len(created) == 1, (round_, created)
        assert run(hz, 5, queues=("flaky",), outcome="failed_final") == created  # one run per round
    assert redis_client.zcard(hz.keys.queue_index("flaky", "failed")) == 5
