"""Workers told to stop, with real processes and signals: a running job keeps its own timeout
(not its supervisor's), and the live workers, those finishing a job included, never exceed
max_processes (SPEC 6)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable

import psutil
import pytest

from horizon.context import Horizon
from horizon.worker import WorkerState
from supervisor import children, tuning
from supervisor.pool import ProcessPool
from supervisor.process import SharedState, WorkerProcess
from tests import sample_jobs
from tests.helpers import ignores_signal, wait_for
from tests.test_supervisor import FAST, masters, only_supervisor, start, stop, worker_pids, write_config

slow = pytest.mark.slow  # the tests that start a real master

SHORT = {"timeout": 2}  # the supervisor's timeout: a job's default, shorter than the jobs below
GRACE = "1"  # HORIZON_TERMINATE_GRACE: the old stop deadline was 2 + 1 s


@pytest.fixture
def env(proc_env):
    proc_env.update(FAST)
    proc_env["HORIZON_TERMINATE_GRACE"] = GRACE
    return proc_env


def start_logged(procs, env) -> tuple[subprocess.Popen, list[str]]:
    """A master whose log (stderr) is collected in the background."""
    master = start(procs, env, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(master.stderr), daemon=True).start()
    return master, lines


def long_job(hz: Horizon, key: str, seconds: float = 6, queue: str = "default") -> str:
    """A job with its own timeout (20 s) longer than its supervisor's (2 s), started: its id."""
    job_id = sample_jobs.sleep.options(queue=queue, timeout=20).dispatch(key, seconds)
    wait_for(lambda: hz.redis.llen(key) >= 1, timeout=15, message="the job did not start")
    return job_id


def ended(hz: Horizon, job_id: str) -> bool:
    return hz.redis.hget(hz.keys.job(job_id), "status") in ("completed", "failed")


def assert_completed_once(hz: Horizon, job_id: str) -> None:
    h = hz.redis.hgetall(hz.keys.job(job_id))
    assert (h["status"], h["attempts"]) == ("completed", "1"), json.loads(h.get("exception") or "null")


def assert_ran_through(hz: Horizon, key: str, jobs: int = 1) -> None:
    """The sleep jobs writing to ``key`` each started once and ran to their end (none was
    stopped and put back to run again: that costs no try, so ``attempts`` does not show it)."""
    runs = hz.redis.lrange(key, 0, -1)
    assert (len([r for r in runs if r.startswith("start:")]), runs.count("end")) == (jobs, jobs), runs


def assert_nothing_killed(lines: list[str]) -> None:
    assert not [line for line in lines if any(s in line for s in ("killing", "died (exit", "put back"))], lines


# --- bug 1: a stop waits for the running job's own timeout -----------------------------------------
def stubborn_worker() -> WorkerProcess:
    """A real child that ignores SIGTERM (a worker busy with its job); its shared state is what
    the test writes there, as a worker would."""
    shared = SharedState()
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(60)
        os._exit(0)
    wait_for(lambda: ignores_signal(pid, signal.SIGTERM), timeout=5)  # a TERM sent sooner kills it
    return WorkerProcess(pid=pid, queues=["default"], shared=shared)


@pytest.fixture
def told_to_stop():
    """Make a pool of one stubborn worker (``**pool`` options) whose kills are recorded, not sent,
    and tell its worker to stop at ``now``: (pool, worker, now, kills)."""
    made: list[WorkerProcess] = []

    def make(**options) -> tuple[ProcessPool, WorkerProcess, float, list[int]]:
        pool = ProcessPool(["default"], lambda queues: made.append(stubborn_worker()) or made[-1], **options)
        pool.scale(1)
        proc, kills = pool.processes[0], []
        proc.kill = lambda: kills.append(proc.pid)  # type: ignore[method-assign]
        now = time.time()
        pool.scale(0, now)
        assert pool.terminating == [proc]
        return pool, proc, now, kills

    yield make
    for proc in made:
        os.kill(proc.pid, signal.SIGKILL)
        os.waitpid(proc.pid, 0)


def test_a_stopping_worker_is_killed_only_past_its_running_jobs_own_deadline(told_to_stop):
    """Told to stop while its job (whose own timeout ends in 30 s) runs, a worker outlives the
    supervisor's stop_timeout; once the job ends it still has TERMINATE_GRACE past that job's
    kill-by time to acknowledge it and exit. Before, it was killed stop_timeout after it was told."""
    pool, proc, now, kills = told_to_stop(stop_timeout=0.5)
    proc.shared.write(WorkerState(status="processing", job="long", kill_at=time.monotonic() + 30))
    pool.monitor(now + 5)
    assert kills == []
    proc.shared.write(WorkerState(status="idle", jobs=1))  # its job is over: it acknowledges it
    pool.monitor(now + 5)
    assert kills == []
    assert pool.stop_deadline(proc, now, time.monotonic()) > now + 30 + tuning.TERMINATE_GRACE - 1


def test_a_stopping_worker_that_runs_no_job_or_outlives_the_bound_is_killed(told_to_stop):
    """The waits for a worker told to stop: stop_timeout when it runs no job, and never more than
    longest_stop (whatever a worker's shared memory says)."""
    pool, proc, now, kills = told_to_stop(stop_timeout=0.5, longest_stop=10)
    pool.monitor(now + 0.4)
    assert kills == []
    pool.monitor(now + 1)  # idle: killed past stop_timeout
    assert kills == [proc.pid]
    proc.shared.write(WorkerState(status="processing", job="x", kill_at=time.monotonic() + 1e9))
    kills.clear()
    pool.monitor(now + 5)
    assert kills == []
    pool.monitor(now + 11)  # past longest_stop
    assert kills == [proc.pid]


def test_a_pool_starts_a_worker_only_while_its_supervisor_has_room(told_to_stop):
    """``room`` (the supervisor's max_processes less its live workers): a restart's fresh worker
    starts once the old one, finishing its job, has exited."""
    live: list[WorkerProcess] = []
    pool, proc, now, kills = told_to_stop(stop_timeout=30, room=lambda: 1 - len(live))
    live.append(proc)
    pool.scale(1, now)
    assert pool.size() == 0 and pool.terminating == [proc]  # no room while the old one runs
    live.clear()
    pool.monitor(now)
    assert pool.size() == 1


@slow
def test_a_stop_lets_a_job_longer_than_the_supervisors_timeout_finish(hz, procs, env, config_file, config_data):
    """SIGTERM (systemctl stop) while a job with timeout 20 s runs 6 s under a supervisor whose
    timeout is 2 s. Before, the supervisor killed its worker 3 s later (timeout + grace) and the
    master gave up on the supervisor at 4 s: the job failed with WorkerLost."""
    write_config(config_file, config_data, max_processes=1, **SHORT)
    key = f"stop-{time.time()}"
    master, lines = start_logged(procs, env)
    wait_for(lambda: worker_pids(hz), timeout=15)
    job_id = long_job(hz, key)
    started = time.monotonic()
    assert stop(master, timeout=30) == 0
    assert time.monotonic() - started > 4  # it did wait for the job
    assert hz.redis.lrange(key, 1, -1) == ["end"]
    assert_completed_once(hz, job_id)
    assert_nothing_killed(lines)
    assert masters(hz) == {}
    hz.redis.delete(key)


@slow
def test_a_paused_supervisors_worker_finishes_a_job_longer_than_its_timeout(hz, procs, env, config_file, config_data):
    """A worker told to stop by its pool (here a pause: the same path as a scale-down) while it
    runs a job whose own timeout is longer than the supervisor's: it finishes the job."""
    write_config(config_file, config_data, max_processes=1, **SHORT)
    key = f"pause-{time.time()}"
    master, lines = start_logged(procs, env)
    wait_for(lambda: worker_pids(hz), timeout=15)
    job_id = long_job(hz, key)
    assert procs.run("pause-supervisor", "supervisor-1").returncode == 0
    wait_for(lambda: [w["status"] for w in only_supervisor(hz)["workers"]] == ["terminating"], timeout=10)
    wait_for(lambda: ended(hz, job_id), timeout=20)
    assert_completed_once(hz, job_id)
    assert_ran_through(hz, key)
    wait_for(lambda: only_supervisor(hz)["workers"] == [], timeout=10)
    assert_nothing_killed(lines)
    assert stop(master) == 0
    hz.redis.delete(key)


@slow
def test_a_reload_lets_a_job_longer_than_the_supervisors_timeout_finish(hz, procs, env, config_file, config_data):
    """SIGHUP (systemctl reload): the old run waits for the job, then runs again with fresh workers.
    (The job is longer here: the reload's check of the new run comes before the stop.)"""
    write_config(config_file, config_data, max_processes=1, **SHORT)
    key = f"reload-{time.time()}"
    master, lines = start_logged(procs, env)
    before = wait_for(lambda: worker_pids(hz), timeout=15)
    (old_name,) = masters(hz)
    job_id = long_job(hz, key, seconds=9)
    master.send_signal(signal.SIGHUP)
    wait_for(lambda: ended(hz, job_id), timeout=20)
    assert_completed_once(hz, job_id)
    assert_ran_through(hz, key)
    wait_for(lambda: list(masters(hz)) not in ([], [old_name]) and worker_pids(hz), timeout=20)
    assert worker_pids(hz).isdisjoint(before) and master.poll() is None
    assert_nothing_killed(lines)
    assert stop(master) == 0
    hz.redis.delete(key)


# --- bug 4: never more live workers than max_processes --------------------------------------------
def live_workers(supervisor_pid: int) -> int:
    """The supervisor's worker processes still running (a reaped or zombie one does not count)."""
    try:
        kids = psutil.Process(supervisor_pid).children()
    except psutil.NoSuchProcess:
        return 0
    count = 0
    for kid in kids:
        try:
            count += kid.name() == children.WORKER_COMM and kid.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            pass
    return count


def sample_until(supervisor_pid: int, done: Callable[[], bool], timeout: float) -> list[int]:
    """Count the supervisor's live workers every few ms until ``done()``; the counts."""
    counts: list[int] = []

    def sampled() -> bool:
        counts.append(live_workers(supervisor_pid))
        return done()

    wait_for(sampled, timeout=timeout, interval=0.005)
    return counts


@slow
def test_a_supervisor_restart_never_runs_more_workers_than_max_processes(hz, procs, env, config_file, config_data):
    """A restart (SIGHUP to a supervisor: what the master sends under `horizon up`) while both
    workers run a job: each fresh worker starts once an old one has finished its job and exited.
    Before, two fresh ones started at once beside the two old ones: 4 live workers, max 2."""
    write_config(config_file, config_data, max_processes=2, balance="false")
    key = f"restart-{time.time()}"
    master = start(procs, env)
    old = wait_for(lambda: len(worker_pids(hz)) == 2 and worker_pids(hz), timeout=15)
    sup = only_supervisor(hz)["pid"]
    jobs = [sample_jobs.sleep.options(timeout=20).dispatch(key, 3) for _ in range(2)]
    wait_for(lambda: hz.redis.llen(key) == 2, timeout=10)
    os.kill(sup, signal.SIGHUP)
    fresh = lambda: (pids := worker_pids(hz)) and len(pids) == 2 and pids.isdisjoint(old)  # noqa: E731
    counts = sample_until(sup, lambda: all(not psutil.pid_exists(p) for p in old) and fresh(), timeout=20)
    assert max(counts) <= 2, f"up to {max(counts)} live workers, max_processes 2"
    for job_id in jobs:
        assert_completed_once(hz, job_id)
    assert_ran_through(hz, key, jobs=2)
    assert stop(master) == 0
    hz.redis.delete(key)


@slow
def test_an_auto_balance_shift_never_runs_more_workers_than_max_processes(hz, procs, env, config_file, config_data):
    """Two long jobs on q1 (its two workers busy, its backlog empty), then a backlog on q2: the
    balancer moves the processes to q2; q1's workers finish their jobs (whose own timeout is
    longer than the supervisor's) and q2's start as they exit. Before, q2's started at once
    (up to 4 live workers, max 2), and q1's were killed mid-job 3 s after the scale-down."""
    write_config(
        config_file, config_data, queue=["q1", "q2"], balance="auto", auto_scaling_strategy="size",
        min_processes=0, max_processes=2, balance_cooldown=0.3, balance_max_shift=1, **SHORT,
    )
    key, quick = f"shift-{time.time()}", f"shift-quick-{time.time()}"
    master, lines = start_logged(procs, env)
    wait_for(lambda: worker_pids(hz), timeout=15)
    sup = only_supervisor(hz)["pid"]
    slow = [sample_jobs.sleep.options(queue="q1", timeout=20).dispatch(key, 5) for _ in range(2)]
    wait_for(lambda: hz.redis.llen(key) == 2, timeout=15, message="q1 did not get two workers")
    fast = sample_jobs.sleep.options(queue="q2").dispatch_many([((quick, 0.2), {}) for _ in range(6)])

    counts = sample_until(sup, lambda: all(ended(hz, j) for j in [*slow, *fast]), timeout=40)
    assert max(counts) <= 2, f"up to {max(counts)} live workers, max_processes 2"
    for job_id in [*slow, *fast]:
        assert_completed_once(hz, job_id)
    assert_ran_through(hz, key, jobs=2)
    assert_nothing_killed(lines)
    assert stop(master) == 0
    hz.redis.delete(key, quick)
