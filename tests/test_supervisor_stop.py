"""Workers told to stop, with real processes and signals: a running job keeps its own timeout
(not its supervisor's) (SPEC 6)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from horizon.context import Horizon
from horizon.worker import WorkerState
from supervisor import tuning
from supervisor.pool import ProcessPool
from supervisor.process import SharedState, WorkerProcess
from tests import sample_jobs
from tests.helpers import wait_for
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
