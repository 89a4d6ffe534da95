"""A mixed workload under chaos, then every job's end state and the bookkeeping checked (SPEC §3, §7, §8).

One `horizon start` (two supervisors, three queues, prefetch on one, workers recycled by
max_jobs and max_time, a schedule every second)
runs single, bulk, delayed, retried, failing and worker-killing jobs, batches with callbacks,
continuations and idempotent dispatches into queues one of which is rate limited and one paused
for a while, while a random worker is SIGKILLed every 300 ms, the master is SIGKILLed once and
replaced, the new master is reloaded (SIGHUP), and Redis (AOF) is stopped and started once. When the
dust settles: each job is in the state its kind must end in, nothing is left in a queue, a
reserved set or a delayed set, the indexes, metrics, monitored tag and API agree with the job
records, each batch ran the right callbacks, each schedule occurrence was dispatched once, and
the rate limit held.
"""

from __future__ import annotations

import bisect
import contextlib
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from horizon import workflows
from horizon.embedded import EmbeddedRedis
from horizon.repositories.queues import ParentTerminal, QueueRepository
from horizon.repositories.tags import TagRepository
from tests import chaos_jobs as jobs
from tests.conftest import Processes
from tests.helpers import supervised_workers, wait_for

pytestmark = pytest.mark.slow

QUEUES = ("high", "default", "low")
CHAOS_SECONDS = 15.0
RATE_LIMIT = 40  # starts per second on queue "low"
FINISHED = ("completed", "failed", "cancelled")


class RestartableRedis:
    """This test's own redis-server (AOF), which it stops and starts again on the same port."""

    def __init__(self, folder: Path) -> None:
        self.server = EmbeddedRedis(str(folder)).start()
        self.url = self.server.url

    def restart(self) -> None:
        port, folder = self.server.port, self.server.dir
        self.server.stop()
        self.server = EmbeddedRedis(str(folder), port=port).start()


@pytest.fixture
def own_redis(tmp_path: Path):
    server = RestartableRedis(tmp_path / "redis")
    yield server
    server.server.stop()


@pytest.fixture
def redis_url(own_redis: RestartableRedis) -> str:  # the conftest fixtures (hz, procs, ...) use this server
    return own_redis.url


@pytest.fixture
def config_data(redis_url: str, prefix: str) -> dict:
    return {
        "prefix": prefix,
        "redis": {"url": redis_url},
        "imports": ["tests.sample_jobs", "tests.chaos_jobs"],
        "reservation_margin": 0.5,
        "schedule": [{"name": "tick", "job": "chaos.tick", "every": 1, "queue": "high"}],
        "queues": {"low": {"rate_limit": {"jobs": RATE_LIMIT, "per": 1}}},
        "defaults": {
            "s1": {"queue": ["high", "default"], "balance": "auto", "min_processes": 1, "max_processes": 3,
                   "tries": 3, "timeout": 4, "prefetch": 16, "max_jobs": 200},  # workers recycle too
            "s2": {"queue": ["low"], "balance": False, "max_processes": 2, "tries": 3, "timeout": 4, "max_time": 5},
        },
    }


class Workload:
    """Dispatches a random mix and remembers what each job must end as."""

    def __init__(self) -> None:
        self.expect: dict[str, str] = {}  # job id -> end state
        self.runs_once: dict[str, str] = {}  # job id -> the tag its execution records (chaos:ran)
        self.tagged: set[str] = set()
        self.never_runs: set[str] = set()  # tags of continuations whose parent fails
        self.batches: dict[str, tuple[str, bool]] = {}  # batch id -> (tag, has a failing member)
        self.count = 0

    def tag(self) -> str:
        self.count += 1
        return f"c-{self.count}"

    def one(self) -> None:
        r, q = random.random(), random.choice(QUEUES)
        if r < 0.30:
            self._ok(jobs.ok.options(queue=q))
        elif r < 0.40:
            tags = [self.tag() for _ in range(20)]
            ids = retrying(lambda: jobs.tagged.options(queue=q).dispatch_many([((t,), {}) for t in tags]))
            for job_id, t in zip(ids, tags, strict=True):
                self.expect[job_id], self.runs_once[job_id] = "completed", t
                self.tagged.add(job_id)
        elif r < 0.50:
            self._ok(jobs.ok.options(queue=q, delay=random.uniform(0.2, 2)))
        elif r < 0.58:
            self._ok(jobs.flaky.options(queue=q, backoff=0.2))
        elif r < 0.63:
            t = self.tag()
            self.expect[retrying(lambda: jobs.bad.options(queue=q).dispatch(t))] = "failed"
        elif r < 0.645:
            t = self.tag()
            self.expect[retrying(lambda: jobs.crash.options(queue=q).dispatch(t))] = "failed"
        elif r < 0.72:
            failing = random.random() < 0.4
            calls = [jobs.ok.call(self.tag()) for _ in range(10)] + ([jobs.bad.call(self.tag())] if failing else [])
            t = self.tag()
            batch_id = retrying(lambda: workflows.batch(
                calls, name=t, then=jobs.callback.call("then:" + t), catch=jobs.callback.call("catch:" + t),
                finally_=jobs.callback.call("finally:" + t)))
            self.batches[batch_id] = (t, failing)
        elif r < 0.80:
            parent_fails = random.random() < 0.3
            t = self.tag()
            parent = retrying(lambda: (jobs.bad if parent_fails else jobs.ok).options(queue=q).dispatch(t))
            self.expect[parent] = "failed" if parent_fails else "completed"
            if not parent_fails:
                self.runs_once[parent] = t
            try:
                child = self._ok(jobs.ok.options(queue=q, after=parent))
            except ParentTerminal:  # the parent failed already: no continuation is created
                assert parent_fails
                return
            if parent_fails:
                self.expect[child] = "cancelled"
                self.never_runs.add(self.runs_once.pop(child))
        else:
            t, key = self.tag(), f"key-{self.count}"
            first = retrying(lambda: jobs.ok.options(queue=q, idempotency_key=key).dispatch(t))
            again = retrying(lambda: jobs.ok.options(queue=q, idempotency_key=key).dispatch(t))
            assert again == first
            self.expect[first], self.runs_once[first] = "completed", t

    def _ok(self, bound: Any) -> str:
        t = self.tag()
        job_id = retrying(lambda: bound.dispatch(t))
        self.expect[job_id], self.runs_once[job_id] = "completed", t
        return job_id


def retrying(call: Callable[[], Any]) -> Any:
    """Dispatch through the Redis restart: a refused connection is retried (the call did not run)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return call()
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # Redis is restarting: wait for it, as any client would


def statuses(client: redis.Redis, prefix: str, ids: list[str]) -> dict[str, str | None]:
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(f"{{{prefix}}}:job:{job_id}", "status")
    return dict(zip(ids, pipe.execute(), strict=True))


def test_mixed_workload_under_chaos_keeps_every_record_consistent(
    hz, procs: Processes, own_redis: RestartableRedis, prefix: str, capsys, tmp_path: Path
):
    client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    TagRepository(hz).monitor("chaos:c")
    log_path = tmp_path / "master.log"
    log_file = log_path.open("w")
    master = procs.horizon("start", stdout=log_file, stderr=log_file)
    wait_for(lambda: len(supervised_workers(master.pid)) >= 3, timeout=30, message="no workers")
    work, kills, queues = Workload(), 0, QueueRepository(hz)
    master_killed = redis_restarted = paused = resumed = reloaded = False
    start = last_kill = time.monotonic()
    while (elapsed := time.monotonic() - start) < CHAOS_SECONDS:
        work.one()
        if time.monotonic() - last_kill > 0.3:  # the killer's pacing (not synchronisation)
            last_kill = time.monotonic()
            if victims := supervised_workers(master.pid):
                with contextlib.suppress(psutil.NoSuchProcess):  # it exited meanwhile (recycled, crashed)
                    random.choice(victims).kill()
                    kills += 1
        if not paused and elapsed > CHAOS_SECONDS * 0.15:
            paused = retrying(lambda: queues.pause("default")) or True
        if not resumed and elapsed > CHAOS_SECONDS * 0.3:
            resumed = retrying(lambda: queues.resume("default")) or True
        if not reloaded and elapsed > CHAOS_SECONDS * 0.55 and supervised_workers(master.pid):
            reloaded = True  # systemctl reload of the running (replacement) master: it execs itself again
            master.send_signal(signal.SIGHUP)
        if not master_killed and elapsed > CHAOS_SECONDS * 0.4:
            master_killed = True
            tree = psutil.Process(master.pid).children(recursive=True)
            master.kill()
            master.wait(timeout=10)
            psutil.wait_procs(tree, timeout=20)
            master = procs.horizon("start", stdout=log_file, stderr=log_file)
        if not redis_restarted and elapsed > CHAOS_SECONDS * 0.7:
            redis_restarted = True
            own_redis.restart()
        time.sleep(random.uniform(0.005, 0.03))  # the dispatcher's pacing

    if not reloaded:  # the replacement master came up after the chaos window: reload it now
        wait_for(lambda: supervised_workers(master.pid), timeout=30, message="the replacement master has no workers")
        master.send_signal(signal.SIGHUP)
    ids = list(work.expect)
    callbacks_due = 2 * len(work.batches)

    def settled() -> bool:
        done = all(s in FINISHED for s in statuses(client, prefix, ids).values())
        return done and len(set(client.lrange("chaos:callbacks", 0, -1))) >= callbacks_due

    try:
        wait_for(settled, timeout=60, interval=0.5)  # 1-6 s here; a throttled pool took 80-95 s
    except AssertionError:
        log_file.flush()
        raise AssertionError(f"not settled: {Counter(statuses(client, prefix, ids).values())}; reloaded="
                             f"{reloaded}; master {master.poll()}; log tail:\n{log_path.read_text()[-4000:]}") from None
    settled_after = time.monotonic() - start - CHAOS_SECONDS
    master.terminate()
    assert master.wait(timeout=30) == 0
    log_file.close()
    key = f"{{{prefix}}}"

    # every job ended as its kind must; every job that completed ran
    ended = statuses(client, prefix, ids)
    wrong = {job_id: (ended[job_id], want) for job_id, want in work.expect.items() if ended[job_id] != want}
    assert not wrong, f"{len(wrong)} jobs in the wrong state, e.g. {list(wrong.items())[:5]}"
    ran = Counter(client.lrange("chaos:ran", 0, -1))
    never = [job_id for job_id, t in work.runs_once.items() if ran[t] == 0]
    assert not never, f"{len(never)} completed jobs never ran"
    assert not [t for t in work.never_runs if ran[t]], "a cancelled continuation ran"

    # batches: then xor catch, and finally, each at least once
    callbacks = Counter(client.lrange("chaos:callbacks", 0, -1))
    for t, failing in work.batches.values():
        assert callbacks["finally:" + t] >= 1
        assert (callbacks["catch:" + t] >= 1, callbacks["then:" + t] >= 1) == (failing, not failing), t

    # nothing left waiting, held or scheduled (but a tick the schedule dispatched while the master
    # stopped: its maintenance runs until its workers are gone)
    for q in QUEUES:
        left = [client.hget(f"{key}:job:{job_id}", "name") for job_id in client.lrange(f"{key}:queue:{q}", 0, -1)]
        assert set(left) <= {"chaos.tick"} and len(left) <= 2, (q, left)
        assert client.zcard(f"{key}:queue:{q}:reserved") == 0
        assert client.zcard(f"{key}:queue:{q}:delayed") == 0

    # the indexes agree with the job records
    recent = client.zrange(f"{key}:index:recent", 0, -1)
    by_state = Counter(statuses(client, prefix, recent).values())
    pending_index = statuses(client, prefix, client.zrange(f"{key}:index:pending", 0, -1))
    assert not [s for s in pending_index.values() if s in FINISHED or s is None]
    completed_index = set(client.zrange(f"{key}:index:completed", 0, -1))
    failed_index = set(client.zrange(f"{key}:index:failed", 0, -1))
    assert {i for i, s in ended.items() if s == "completed"} <= completed_index
    assert {i for i, s in ended.items() if s == "failed"} <= failed_index
    assert not completed_index & failed_index
    assert set(client.zrange(f"{key}:tag:chaos:c:jobs", 0, -1)) == work.tagged

    # metrics count each job once, however often it ran
    throughput = failures = 0
    for name in client.smembers(f"{key}:measured:jobs"):
        h = client.hgetall(f"{key}:metrics:job:{name}")
        throughput += int(h.get("throughput", 0))
        failures += int(h.get("failed", 0))
    assert (throughput, failures) == (by_state["completed"], by_state["failed"])

    # one job per schedule occurrence (late ones after the master's restart included)
    pipe = client.pipeline(transaction=False)
    for job_id in recent:
        pipe.hmget(f"{key}:job:{job_id}", "name", "scheduled_for")
    occurrences = [when for name, when in pipe.execute() if name == "chaos.tick"]
    assert len(occurrences) >= CHAOS_SECONDS / 2 and len(occurrences) == len(set(occurrences))

    # the rate limit held: no window [t, t + 1 s) holds more starts (here: last attempts) than it allows
    pipe = client.pipeline(transaction=False)
    for job_id in recent:
        pipe.hmget(f"{key}:job:{job_id}", "queue", "reserved_at")
    starts = sorted(float(at) for queue, at in pipe.execute() if queue == "low" and at)
    busiest = max(bisect.bisect_left(starts, t + 1.0) - k for k, t in enumerate(starts))
    assert busiest <= RATE_LIMIT

    # the API sees the same
    from web import create_app

    api = create_app(hz.settings).test_client()
    assert [w["length"] for w in api.get("/horizon/api/workload").get_json()] == [0, 0, 0]
    stats = api.get("/horizon/api/stats").get_json()
    assert stats["failedJobs"] == by_state["failed"]

    with capsys.disabled():
        print(f"\n[chaos-consistency] jobs={len(ids)} batches={len(work.batches)} kills={kills} master_kills=1 "
              f"redis_restarts=1 states={dict(Counter(ended.values()))} lost={len(never)} "
              f"duplicates={sum(ran.values()) - len(ran)} schedule_runs={len(occurrences)} "
              f"busiest_second_low={busiest} "
              f"settled_s={settled_after:.1f}")
