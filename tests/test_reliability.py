"""Reliability under failure: real workers SIGKILLed, Redis restarted, poison jobs (SPEC §3, §7).

Every test runs real `horizon work` (or `horizon start`) processes, records each job execution
in Redis (tests.sample_jobs.record appends "value:pid"), and prints its figures: jobs, kills,
lost, duplicates, recovery time.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
import redis
import yaml

from horizon.config import settings_from_dict
from horizon.context import configure, reset
from horizon.embedded import EmbeddedRedis
from horizon.queue import JobSpec
from tests import sample_jobs
from tests.conftest import ROOT, Processes
from tests.helpers import supervised_workers, wait_for

pytestmark = pytest.mark.slow

FAST = {"timeout": 4, "tries": 3}  # short reservations so a killed worker's job comes back fast


def report(capsys: pytest.CaptureFixture, test: str, **figures: object) -> None:
    with capsys.disabled():
        print(f"\n[{test}] " + " ".join(f"{k}={v}" for k, v in figures.items()))


def fast_config(config_data: dict, **supervisor: object) -> dict:
    data = dict(config_data, reservation_margin=0.5)
    sup = {"queue": ["default"], "balance": False, "max_processes": 2, **FAST, **supervisor}  # 2 workers, fixed
    data["defaults"] = {"supervisor-1": sup}
    return data


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def executions(client: redis.Redis, key: str) -> list[str]:
    """The value of each recorded execution ("value:pid" -> "value")."""
    return [entry.rsplit(":", 1)[0] for entry in client.lrange(key, 0, -1)]


def statuses(hz, ids: list[str]) -> dict[str, int]:
    pipe = hz.redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(hz.keys.job(job_id), "status")
    counts: dict[str, int] = {}
    for status in pipe.execute():
        counts[str(status)] = counts.get(str(status), 0) + 1
    return counts


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


class Pool:
    """A test-run stand-in for a supervisor: keeps `size` real `horizon work` processes alive."""

    def __init__(self, procs: Processes, size: int, logs: Path | None = None) -> None:
        self.procs, self.size, self.logs = procs, size, logs
        self.workers: list[subprocess.Popen] = []
        self.restarts = 0

    def fill(self) -> None:
        self.workers = [w for w in self.workers if w.poll() is None]
        while len(self.workers) < self.size:
            stderr = subprocess.DEVNULL if self.logs is None else (self.logs / f"worker-{self.restarts}.log").open("w")
            self.workers.append(self.procs.horizon("work", stdout=subprocess.DEVNULL, stderr=stderr))
            self.restarts += 1

    def exits(self) -> str:
        """How each worker that is gone ended, with the tail of its log (when kept)."""
        ended = [(i, w) for i, w in enumerate(self.workers) if w.poll() is not None]
        lines = []
        for i, w in ended:
            tail = ""
            if self.logs is not None:
                tail = (self.logs / f"worker-{i}.log").read_text()[-3000:]
            lines.append(f"worker {w.pid} exited {w.returncode}:\n{tail}")
        return "\n".join(lines)

    def kill_one(self) -> None:
        victim = random.choice([w for w in self.workers if w.poll() is None])
        victim.kill()
        victim.wait(timeout=10)

    def stop(self) -> None:
        for w in self.workers:
            if w.poll() is None:
                w.terminate()
        for w in self.workers:
            w.wait(timeout=30)


# --- worker chaos ---------------------------------------------------------------------------
@pytest.fixture
def config_data(config_data: dict) -> dict:  # noqa: F811  (narrows the conftest fixture)
    return fast_config(config_data)


def test_worker_chaos_loses_nothing(hz, procs, redis_client, prefix, capsys):
    """SIGKILL a random worker every 150-400 ms while thousands of jobs flow in: 0 lost."""
    total, chunk = 10000, 200
    key = f"{prefix}:chaos"
    pool = Pool(procs, 3)
    pool.fill()
    ids: list[str] = []
    kills = 0
    next_kill = time.monotonic() + random.uniform(0.15, 0.4)
    next_maintain = time.monotonic()
    # feed jobs in faster than they run (workers stay busy) and keep killing until 90% are done
    deadline = time.monotonic() + 60
    while len(ids) < total or statuses(hz, ids).get("completed", 0) < total * 0.9:
        assert time.monotonic() < deadline, f"no progress under chaos: {statuses(hz, ids)}"
        if len(ids) < total:
            ids += sample_jobs.record.dispatch_many([((key, i), {}) for i in range(len(ids), len(ids) + chunk)])
        time.sleep(0.05)  # pacing of the producer and the killer (not synchronisation)
        now = time.monotonic()
        if now >= next_kill:
            pool.kill_one()
            kills += 1
            pool.fill()
            next_kill = now + random.uniform(0.15, 0.4)
        if now >= next_maintain:  # the master's periodic maintenance (recovers expired reservations)
            hz.queue.maintain()
            next_maintain = now + 0.5
    last_kill = time.monotonic()

    def all_done() -> bool:
        hz.queue.maintain()
        return statuses(hz, ids).get("completed", 0) == total

    wait_for(all_done, timeout=60, interval=0.2, message=f"not all jobs completed: {statuses(hz, ids)}")
    recovery = time.monotonic() - last_kill
    pool.stop()
    runs = executions(redis_client, key)
    lost = total - len(set(runs))
    duplicates = len(runs) - len(set(runs))
    report(capsys, "worker-chaos", jobs=total, kills=kills, lost=lost, duplicates=duplicates,
           recovery_s=round(recovery, 2), restarts=pool.restarts)
    assert set(runs) == {str(i) for i in range(total)}
    assert lost == 0
    assert duplicates <= kills  # a killed worker holds at most one job


# --- poison job -------------------------------------------------------------------------------
def test_supervised_worker_chaos_with_prefetch_loses_nothing(hz, procs, redis_client, prefix, capsys, config_data):
    """`horizon start` with prefetch 16 and 30 s timeouts, a random worker SIGKILLed every
    200-500 ms: each holds a batch whose windows run past 30 s, and its supervisor puts the batch
    back at once, so every job completes well before any window ends. 0 lost; a killed worker may
    have run jobs it had not yet acknowledged (up to a batch), so duplicates <= kills x 16."""
    total, prefetch = 30000, 16
    key = f"{prefix}:supervised-chaos"
    supervisor = {"queue": ["default"], "balance": False, "max_processes": 2, "prefetch": prefetch}
    procs.config.write_text(yaml.safe_dump(dict(config_data, defaults={"supervisor-1": supervisor})))
    procs.env["HORIZON_YOUNG"] = "0.05"  # killed workers are replaced without a cooldown
    hz.redis.hset(hz.keys.queue_metrics("default"), "estimate", 1.0)  # short jobs: prefetched
    ids = sample_jobs.record.options(timeout=30, tries=3).dispatch_many([((key, i), {}) for i in range(total)])
    master = procs.horizon("start", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: redis_client.llen(key) >= 100, timeout=30, message="workers did not start")
    kills = 0
    while redis_client.llen(key) < total * 0.8 and kills < 30:  # executions so far (a cheap read)
        time.sleep(random.uniform(0.2, 0.5))  # the killer's pacing (not synchronisation)
        workers = supervised_workers(master.pid)
        if workers:
            random.choice(workers).kill()
            kills += 1
    last_kill = time.monotonic()
    windows_end = time.time() + 30  # every batch reserved after the last kill outlives this
    wait_for(lambda: statuses(hz, ids).get("completed", 0) == total, timeout=25, interval=0.1,
             message=f"jobs waited for their reservation windows: {statuses(hz, ids)}")
    recovery = time.monotonic() - last_kill
    assert time.time() < windows_end
    master.terminate()
    assert master.wait(timeout=30) == 0
    runs = executions(redis_client, key)
    lost, duplicates = total - len(set(runs)), len(runs) - len(set(runs))
    report(capsys, "supervised-chaos", jobs=total, prefetch=prefetch, kills=kills, lost=lost,
           duplicates=duplicates, recovery_s=round(recovery, 2))
    assert kills >= 3
    assert set(runs) == {str(i) for i in range(total)}
    assert duplicates <= kills * prefetch


def test_poison_job_fails_with_worker_lost_and_pool_keeps_working(hz, procs, redis_client, prefix, capsys):
    """A job that kills its worker every time ends failed (WorkerLost) after its tries."""
    key, crash_key = f"{prefix}:poison", f"{prefix}:crashes"
    poison = sample_jobs.crash.options(tries=2, timeout=1).dispatch(crash_key)
    ids = sample_jobs.record.dispatch_many([((key, i), {}) for i in range(300)])
    pool = Pool(procs, 2)
    start = time.monotonic()

    def poison_failed() -> bool:
        pool.fill()  # the supervisor's job: replace dead workers
        hz.queue.maintain()
        return redis_client.hget(hz.keys.job(poison), "status") == "failed"

    wait_for(poison_failed, timeout=30, interval=0.1, message="poison job did not end failed")
    failed_after = time.monotonic() - start
    more = sample_jobs.record.dispatch_many([((key, i), {}) for i in range(300, 600)])
    wait_for(lambda: statuses(hz, ids + more).get("completed", 0) == 600, timeout=30, interval=0.1)
    pool.stop()
    h = redis_client.hgetall(hz.keys.job(poison))
    crashes = redis_client.llen(crash_key)
    runs = executions(redis_client, key)
    report(capsys, "poison-job", jobs=601, crashes=crashes, worker_restarts=pool.restarts - 2,
           lost=600 - len(set(runs)), duplicates=len(runs) - len(set(runs)), failed_after_s=round(failed_after, 2))
    assert h["attempts"] == "2"
    assert json.loads(h["exception"])["class"] == "WorkerLost"
    assert crashes == 2
    assert redis_client.zscore(hz.keys.index("failed"), poison) is not None
    assert set(runs) == {str(i) for i in range(600)}


def test_poison_jobs_under_a_real_supervisor_cost_tries_not_restart_cooldowns(
    hz, procs, redis_client, prefix, capsys, tmp_path
):
    """`horizon start` with the default restart cooldown: several jobs that each kill their worker
    end failed (WorkerLost) after their tries, every crash is replaced at once (no cooldown: the
    workers died running a job, not starting up), and the jobs around them all complete."""
    key, crash_key, poisons, tries = f"{prefix}:poisoned", f"{prefix}:crashed", 5, 2
    ids = sample_jobs.record.dispatch_many([((key, i), {}) for i in range(200)])
    bad = [sample_jobs.crash.options(tries=tries, timeout=1).dispatch(crash_key) for _ in range(poisons)]
    ids += sample_jobs.record.dispatch_many([((key, i), {}) for i in range(200, 400)])
    log_path = tmp_path / "master.log"
    with log_path.open("w") as log_file:
        master = procs.horizon("start", stdout=subprocess.DEVNULL, stderr=log_file)
    start = time.monotonic()
    # the old rule (a cooldown doubling from 1 s per young death, up to 30 s) needed > 100 s here
    wait_for(lambda: statuses(hz, bad).get("failed", 0) == poisons, timeout=40, interval=0.2,
             message=f"poison jobs not failed: {statuses(hz, bad)}")
    wait_for(lambda: statuses(hz, ids).get("completed", 0) == 400, timeout=30, interval=0.2,
             message=f"jobs around the poison ones: {statuses(hz, ids)}")
    elapsed = time.monotonic() - start
    master.terminate()
    assert master.wait(timeout=30) == 0
    log_text = log_path.read_text()
    crashes = redis_client.llen(crash_key)
    runs = executions(redis_client, key)
    report(capsys, "poison-jobs-supervised", jobs=400 + poisons, crashes=crashes,
           replaced=log_text.count("; replacing it"), lost=400 - len(set(runs)),
           duplicates=len(runs) - len(set(runs)), done_s=round(elapsed, 2))
    assert crashes == poisons * tries
    assert log_text.count("died with exit code 9; replacing it\n") == poisons * tries
    assert "replacing it in" not in log_text  # no cooldown
    for job_id in bad:
        h = redis_client.hgetall(hz.keys.job(job_id))
        assert (h["attempts"], json.loads(h["exception"])["class"]) == (str(tries), "WorkerLost")
    assert set(runs) == {str(i) for i in range(400)}


def test_a_job_that_ends_its_worker_with_status_0_is_put_back_at_once(hz, procs, redis_client, prefix, capsys):
    """A job that calls os._exit(0) ends its worker as a clean recycle would. The supervisor knows
    from the worker's shared state that a job was running, so it puts the job back at once, counting
    the try: after its 2 tries it fails with WorkerLost in about a second. Before, an exit 0 was
    taken as a clean exit and the job stayed reserved until its 60 s window ended, each time."""
    key = f"{prefix}:quit"
    job_id = sample_jobs.quit_.options(tries=2, timeout=60).dispatch(key)
    master = procs.horizon("start", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    wait_for(lambda: redis_client.hget(hz.keys.job(job_id), "status") == "failed", timeout=20, interval=0.1,
             message="the job did not fail within 20 s (its 60 s window would put it back)")
    failed_after = time.monotonic() - start
    after = sample_jobs.noop.dispatch()
    wait_for(lambda: redis_client.hget(hz.keys.job(after), "status") == "completed", timeout=20)
    master.terminate()
    assert master.wait(timeout=30) == 0
    h = redis_client.hgetall(hz.keys.job(job_id))
    report(capsys, "exit-0-mid-job", runs=redis_client.llen(key), failed_after_s=round(failed_after, 2))
    assert (h["attempts"], json.loads(h["exception"])["class"]) == ("2", "WorkerLost")
    assert redis_client.llen(key) == 2  # each try ran once


def test_jobs_prefetched_with_a_poison_job_never_lose_a_try_to_it(hz, procs, redis_client, prefix, capsys, config_data):
    """`horizon start`, one worker with prefetch 16: three jobs that kill their worker sit at the
    head of the queue, so each death takes down a batch of jobs with one try each. The supervisor
    knows which job was running: only the poison jobs use up tries; every other job completes."""
    key, crash_key, poisons, tries = f"{prefix}:mates", f"{prefix}:poison-runs", 3, 3
    supervisor = {"queue": ["default"], "balance": False, "max_processes": 1, "prefetch": 16}
    procs.config.write_text(yaml.safe_dump(dict(config_data, defaults={"supervisor-1": supervisor})))
    hz.redis.hset(hz.keys.queue_metrics("default"), "estimate", 1.0)  # short jobs: prefetched
    bad = [sample_jobs.crash.options(tries=tries, timeout=2).dispatch(crash_key) for _ in range(poisons)]
    ids = sample_jobs.record.options(tries=1).dispatch_many([((key, i), {}) for i in range(60)])
    master = procs.horizon("start", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: statuses(hz, bad).get("failed", 0) == poisons, timeout=60, interval=0.2,
             message=f"poison jobs not failed: {statuses(hz, bad)}")
    wait_for(lambda: set(statuses(hz, ids)) == {"completed"} or "failed" in statuses(hz, ids),
             timeout=30, interval=0.2, message=f"jobs around the poison ones: {statuses(hz, ids)}")
    master.terminate()
    assert master.wait(timeout=30) == 0
    runs = executions(redis_client, key)
    crashes = redis_client.llen(crash_key)
    report(capsys, "poison-batch-mates", jobs=60 + poisons, crashes=crashes, mates=statuses(hz, ids),
           lost=60 - len(set(runs)), duplicates=len(runs) - len(set(runs)))
    assert crashes == poisons * tries
    assert statuses(hz, ids) == {"completed": 60}
    assert set(runs) == {str(i) for i in range(60)}


def test_slow_consumer_stopped_by_hard_timeout_gives_back_its_batch(
    hz, procs, redis_client, prefix, capsys, config_data, tmp_path
):
    """A job that swallows its timeout, prefetched among short jobs under `horizon start`: the hard
    timeout stops its worker (exit 70), which first acknowledges what it ran and puts back the
    batch it had not started; the supervisor replaces it; the job ends failed after its tries,
    and every other job runs exactly once."""
    key, slow_key, prefetch = f"{prefix}:slow-consumer", f"{prefix}:stubborn", 16
    supervisor = {"queue": ["default"], "balance": False, "max_processes": 2, "prefetch": prefetch}
    procs.config.write_text(yaml.safe_dump(dict(config_data, defaults={"supervisor-1": supervisor})))
    procs.env["HORIZON_YOUNG"] = "0.05"  # replaced without a cooldown
    hz.redis.hset(hz.keys.queue_metrics("default"), "estimate", 1.0)  # short jobs: prefetched
    ids = sample_jobs.record.dispatch_many([((key, i), {}) for i in range(300)])
    slow = sample_jobs.stubborn.options(timeout=0.5, tries=2).dispatch(slow_key, 600)
    ids += sample_jobs.record.dispatch_many([((key, i), {}) for i in range(300, 900)])
    log = tmp_path / "master.log"
    with log.open("w") as stderr:
        master = procs.horizon("start", stdout=subprocess.DEVNULL, stderr=stderr)
    start = time.monotonic()
    wait_for(lambda: redis_client.hget(hz.keys.job(slow), "status") == "failed", timeout=45, interval=0.1,
             message=f"the stubborn job did not end failed: {redis_client.hgetall(hz.keys.job(slow))}")
    failed_after = time.monotonic() - start
    wait_for(lambda: statuses(hz, ids).get("completed", 0) == 900, timeout=30, interval=0.1,
             message=f"short jobs left behind: {statuses(hz, ids)}")
    workers = wait_for(lambda: len(supervised_workers(master.pid)) == 2, timeout=15, message="pool not refilled")
    master.terminate()
    assert master.wait(timeout=30) == 0
    hard_timeouts = log.read_text().count("died with exit code 70")
    runs = executions(redis_client, key)
    h = redis_client.hgetall(hz.keys.job(slow))
    report(capsys, "slow-consumer", jobs=901, prefetch=prefetch, hard_timeouts=hard_timeouts,
           lost=900 - len(set(runs)), duplicates=len(runs) - len(set(runs)), failed_after_s=round(failed_after, 2))
    assert workers
    assert (h["attempts"], redis_client.llen(slow_key)) == ("2", 2)
    assert "ignored its timeout" in json.loads(h["exception"])["message"]
    assert hard_timeouts == 2
    assert sorted(runs, key=int) == [str(i) for i in range(900)]  # each exactly once


# --- redis restart ----------------------------------------------------------------------------
@pytest.fixture
def own_redis(tmp_path: Path):
    server = EmbeddedRedis(str(tmp_path / "redis")).start()
    yield server
    server.stop()


@pytest.fixture
def on_own_redis(own_redis, tmp_path, proc_env, prefix, monkeypatch):
    """``setup(**supervisor)``: the processes, the configured horizon and a client for a config on
    this test's own Redis (its ``imports`` and supervisor options given); all closed afterwards."""
    monkeypatch.setenv("HORIZON_TEST_REDIS", own_redis.url)  # the jobs run in this process too
    made = []

    def setup(imports: tuple[str, ...] = ("tests.sample_jobs",), **supervisor: object):
        data = fast_config({"prefix": prefix, "redis": {"url": own_redis.url}, "imports": list(imports)},
                           **supervisor)
        config = write_config(tmp_path / "config.yaml", data)
        procs = Processes(dict(proc_env, HORIZON_TEST_REDIS=own_redis.url), config)
        hz = configure(settings_from_dict(data, base_dir=str(ROOT)))
        client = redis.Redis.from_url(own_redis.url, decode_responses=True)
        made.append((procs, hz, client))
        return procs, hz, client

    yield setup
    for procs, hz, client in made:
        client.close()
        hz.close()
        reset()
        procs.cleanup()


def test_a_dispatch_to_a_hung_redis_gives_up_after_one_socket_timeout(own_redis, tmp_path, prefix):
    """A Redis that hangs (SIGSTOP: the socket stays open, nothing answers): a dispatch raises
    TimeoutError after the client's socket timeout. It used to try the script again through the
    client on a timeout, so a web request waited twice the timeout (60 s with the default 30)."""
    from horizon.context import Horizon

    settings = settings_from_dict({"prefix": prefix, "redis": {"url": own_redis.url + "?socket_timeout=1"}})
    hz = Horizon(settings)
    spec = JobSpec(name="tests.noop", queue="default", payload='{"args":[],"kwargs":{}}')
    hz.queue.push([spec])  # connected, scripts loaded
    os.kill(own_redis.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            hz.queue.push([JobSpec(name="tests.noop", queue="default", payload='{"args":[],"kwargs":{}}')])
        waited = time.monotonic() - started
    finally:
        os.kill(own_redis.pid, signal.SIGCONT)
        hz.close()
    print(f"gave up after {waited:.2f} s (socket_timeout 1 s)")
    assert waited < 1.9  # one timeout, not two


def test_redis_restart_mid_run(own_redis, on_own_redis, tmp_path, prefix, capsys):
    """Stop Redis mid-run and start it again on the same port and dir (AOF): a master, its pool and
    standalone workers all ride it out (same pids), and nothing acknowledged before it is lost."""
    procs, hz, client = on_own_redis(tries=5)
    key, total = f"{prefix}:restart", 3000
    pool = Pool(procs, 2, logs=tmp_path)
    pool.fill()
    pids = [w.pid for w in pool.workers]
    master = procs.horizon("start", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(descendants(master.pid)) >= 3, timeout=30, message="no supervisor and 2 workers")
    tree = {p.pid for p in descendants(master.pid)}
    ids = sample_jobs.record.dispatch_many([((key, i), {}) for i in range(total // 2)])
    wait_for(lambda: client.llen(key) >= 200, timeout=30, message="workers did not start")
    port, folder = own_redis.port, own_redis.dir
    own_redis.stop()
    down_at = time.monotonic()
    time.sleep(0.5)  # the outage itself (not synchronisation)
    server = EmbeddedRedis(str(folder), port=port).start()
    up_at = time.monotonic()
    try:
        client.ping()
        ids += sample_jobs.record.dispatch_many([((key, i), {}) for i in range(total // 2, total)])

        def all_done() -> bool:
            hz.queue.maintain()
            return statuses(hz, ids).get("completed", 0) == total

        wait_for(all_done, timeout=60, interval=0.2, message="jobs lost across the restart")
        recovery = time.monotonic() - up_at
        alive = [w.poll() is None for w in pool.workers]
        exits = pool.exits()
        master_alive, tree_after = master.poll() is None, {p.pid for p in descendants(master.pid)}
        master.terminate()
        master.wait(timeout=30)
        pool.stop()
        runs = executions(client, key)
        report(capsys, "redis-restart", jobs=total, outage_s=round(up_at - down_at, 2),
               lost=total - len(set(runs)), duplicates=len(runs) - len(set(runs)),
               recovery_s=round(recovery, 2), workers_alive=sum(alive), master_alive=master_alive,
               master_tree_restarts=len(tree_after - tree))
        assert [w.pid for w in pool.workers] == pids and all(alive), exits  # no crash, no restart
        assert master_alive and tree_after == tree  # the master's supervisor and workers too
        assert set(runs) == {str(i) for i in range(total)}
    finally:
        server.stop()


@pytest.fixture
def gated_worker(on_own_redis, tmp_path):
    """A job that holds its worker until the test lets it return (tests.gate, 2 min timeout) on
    this test's own Redis; yields (start the worker, the job id, the gate path, hz)."""
    from tests import supervisor_jobs

    procs, hz, _ = on_own_redis(imports=("tests.sample_jobs", "tests.supervisor_jobs"))
    gate = str(tmp_path / "gate")

    def start(*args: str) -> subprocess.Popen:
        worker = procs.horizon("work", *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: os.path.exists(gate + ".started"), timeout=20, message="the job did not start")
        return worker

    yield start, supervisor_jobs.gate.options(timeout=120).dispatch(gate), gate, hz


def test_a_worker_recycling_while_redis_is_away_acknowledges_once_it_is_back(gated_worker, own_redis):
    """`horizon work --max-jobs 1` finishes its job while Redis is down: it waits for Redis to
    acknowledge the job, then exits 0. Before, a stopping worker gave up on Redis at once: it
    died with a traceback (exit 1) and left the job reserved until its window ended (here 2 min)."""
    start, job_id, gate, hz = gated_worker
    worker = start("--max-jobs", "1")
    port, folder = own_redis.port, own_redis.dir
    own_redis.stop()
    Path(gate + ".go").touch()  # the job returns; the worker, at max_jobs, acknowledges and stops
    time.sleep(1.0)  # the outage itself (not synchronisation)
    server = EmbeddedRedis(str(folder), port=port).start()
    try:
        code, log = worker.wait(timeout=30), worker.stderr.read()
        assert code == 0, log[-3000:]
        assert "Traceback" not in log
        assert hz.redis.hget(hz.keys.job(job_id), "status") == "completed"
    finally:
        server.stop()


def test_a_worker_told_to_stop_while_redis_is_away_exits_cleanly_without_waiting(gated_worker, own_redis):
    """SIGTERM to a worker that retries its acknowledgement while Redis is down: it does not wait
    for Redis. It exits 75 (EX_TEMPFAIL) with one warning naming the unacknowledged job, so a
    supervisor puts the job back once it reaches Redis. Before, the job was dropped from the
    worker's list and it exited 0, as if everything had been acknowledged."""
    start, _, gate, _ = gated_worker
    worker = start()
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(worker.stderr), daemon=True).start()
    own_redis.stop()
    Path(gate + ".go").touch()
    wait_for(lambda: any("redis unavailable" in line for line in lines), timeout=20)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 75
    log = "".join(lines)
    assert "stopping with 1 job(s) unacknowledged" in log and "Traceback" not in log


def test_redis_out_of_memory_mid_run(on_own_redis, tmp_path, capsys):
    """Redis reaches maxmemory (noeviction) while both workers of a real `horizon start` run a job:
    every write is refused, so is their acknowledgement. The master, its supervisor and the workers
    ride it out (same pids) and each loop says so once, with no traceback; a dispatch raises
    WritesRefused and the API answers 503, naming the cause. Once memory is freed, both jobs are
    acknowledged and the pool goes on. Before, each worker died with a traceback on its refused
    acknowledgement (exit 1) and the supervision loops logged a traceback per pass."""
    import horizon
    from horizon.connection import WritesRefused
    from tests import supervisor_jobs
    from web import create_app

    procs, hz, client = on_own_redis(imports=("tests.sample_jobs", "tests.supervisor_jobs"))
    log_path = tmp_path / "master.log"
    gates = [str(tmp_path / f"gate{i}") for i in range(2)]

    def logged(owner: str) -> int:
        return sum(owner in line and "redis refuses writes" in line for line in log_path.read_text().splitlines())

    try:
        with log_path.open("w") as log_file:
            master = procs.horizon("start", stdout=log_file, stderr=subprocess.STDOUT)
        wait_for(lambda: len(descendants(master.pid)) >= 3, timeout=30, message="no supervisor and 2 workers")
        tree = {p.pid for p in descendants(master.pid)}
        held = [supervisor_jobs.gate.dispatch(gate) for gate in gates]
        wait_for(lambda: all(os.path.exists(g + ".started") for g in gates), timeout=30, message="jobs not started")
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", str(max(used - 2**20, 2**20)))  # well below: every write refused
        refused_at = time.monotonic()
        try:
            for gate in gates:
                Path(gate + ".go").touch()  # both jobs return; their acknowledgements are refused
            wait_for(lambda: logged("horizon.worker") >= 2 and logged("supervisor.supervisor") >= 1
                     and logged("supervisor.master") >= 1, timeout=30, message="the refusal was not logged")
            with pytest.raises(WritesRefused, match="out of memory"):
                sample_jobs.noop.dispatch()
            with pytest.raises(WritesRefused, match="out of memory"):  # a batch too (was a ResponseError)
                horizon.batch([sample_jobs.noop.call()])
            response = create_app(hz.settings, hz).test_client().post("/horizon/api/jobs", json={"name": "tests.noop"})
            assert response.status_code == 503, response.get_data(as_text=True)
            assert response.get_json()["error"]["message"] == (
                "redis refuses writes: out of memory (maxmemory reached); retry shortly")
            assert statuses(hz, held) == {"reserved": 2}  # run, not yet acknowledged
            time.sleep(2.0)  # the refusal goes on for a few loop passes (not synchronisation)
        finally:
            client.config_set("maxmemory", "0")
        freed_at = time.monotonic()
        wait_for(lambda: statuses(hz, held) == {"completed": 2}, timeout=30, message="jobs not acknowledged")
        acknowledged = time.monotonic() - freed_at
        key = f"{hz.settings.prefix}:after"
        after = sample_jobs.record.dispatch_many([((key, i), {}) for i in range(200)])
        wait_for(lambda: statuses(hz, after) == {"completed": 200}, timeout=30, message="pool stopped working")
        tree_after = {p.pid for p in descendants(master.pid)}
        log = log_path.read_text()
        report(capsys, "redis-oom", refused_s=round(freed_at - refused_at, 2), acknowledged_s=round(acknowledged, 2),
               jobs_after=200, master_tree_restarts=len(tree_after - tree),
               refusal_lines={o: logged(o) for o in ("horizon.worker", "supervisor.supervisor", "supervisor.master")})
        assert master.poll() is None and tree_after == tree, log[-3000:]  # nothing died or was replaced
        assert "Traceback" not in log, log[-3000:]
        assert logged("supervisor.master") == 1 and logged("supervisor.supervisor") == 1  # once, not per pass
        assert logged("horizon.worker") == 2 and log.count("redis available again") == 2  # once per worker
        assert sorted(int(v) for v in executions(client, key)) == list(range(200))
    finally:
        client.config_set("maxmemory", "0")


# --- master chaos -----------------------------------------------------------------------------
def test_master_chaos_new_master_recovers_everything(hz, procs, redis_client, prefix, capsys):
    """SIGKILL the master mid-run: its descendants exit within seconds; a new master finishes every job."""
    key, total = f"{prefix}:master", 3000
    master = procs.horizon("start", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(descendants(master.pid)) >= 3, timeout=30, message="no supervisor and 2 workers")
    ids = sample_jobs.record.dispatch_many([((key, i), {}) for i in range(total)])
    wait_for(lambda: redis_client.llen(key) >= 300, timeout=30, message="workers did not start")
    tree = descendants(master.pid)
    master.kill()
    master.wait(timeout=10)
    killed_at = time.monotonic()
    gone, alive = psutil.wait_procs(tree, timeout=15)
    orphans_exit = time.monotonic() - killed_at
    assert not alive, f"descendants outlived the master: {[p.pid for p in alive]}"
    before = statuses(hz, ids)
    restarted_at = time.monotonic()
    successor = procs.horizon("start", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: statuses(hz, ids).get("completed", 0) == total, timeout=60, interval=0.2,
             message=f"the new master did not finish every job: {statuses(hz, ids)}")
    recovery = time.monotonic() - restarted_at
    successor.terminate()
    successor.wait(timeout=30)
    runs = executions(redis_client, key)
    report(capsys, "master-chaos", jobs=total, killed_processes=len(tree) + 1, orphans_exit_s=round(orphans_exit, 2),
           reserved_at_kill=before.get("reserved", 0), lost=total - len(set(runs)),
           duplicates=len(runs) - len(set(runs)), recovery_s=round(recovery, 2))
    assert set(runs) == {str(i) for i in range(total)}
    assert len(runs) - len(set(runs)) <= len(tree)  # at most one job per killed process


def test_a_new_master_puts_back_at_once_what_a_killed_process_group_held(hz, procs, redis_client, prefix, capsys):
    """SIGKILL to the whole process group (the OOM killer, systemd's final kill): the workers die
    mid-job, their supervisor with them, and nobody is left to put their jobs back. A new master on
    the same machine sees from the dead master's record (host, boot, pid) and from the workers'
    pids that they are gone, and puts the jobs back at once. Before, they waited out their 60 s
    reservations."""
    key = f"{prefix}:held"
    master = procs.horizon("start", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(descendants(master.pid)) >= 3, timeout=30, message="no supervisor and 2 workers")
    ids = [sample_jobs.sleep.options(timeout=60, tries=3).dispatch(key, 1.0) for _ in range(2)]
    wait_for(lambda: redis_client.llen(key) >= 2, timeout=30, message="the jobs did not start")
    tree = descendants(master.pid)
    os.killpg(master.pid, signal.SIGKILL)
    master.wait(timeout=10)
    _, alive = psutil.wait_procs(tree, timeout=10)
    assert not alive and statuses(hz, ids) == {"reserved": 2}
    restarted_at = time.monotonic()
    successor = procs.horizon("start", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: statuses(hz, ids) == {"completed": 2}, timeout=30, interval=0.2,
             message=f"the held jobs waited for their reservations: {statuses(hz, ids)}")
    recovery = time.monotonic() - restarted_at
    successor.terminate()
    assert successor.wait(timeout=30) == 0
    starts = [entry for entry in redis_client.lrange(key, 0, -1) if entry.startswith("start:")]
    report(capsys, "process-group-kill", jobs=2, killed_processes=len(tree) + 1, recovery_s=round(recovery, 2),
           runs=len(starts))
    assert len(starts) == 4  # each job: the killed try, then one more
