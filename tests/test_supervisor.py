"""Master, supervisors and pools with real processes and real signals (SPEC 5-6)."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import psutil
import pytest
import yaml

from horizon.repositories.supervisors import MasterRepository, SupervisorRepository
from tests import sample_jobs, supervisor_jobs  # noqa: F401  (registers the jobs)
from tests.conftest import ROOT
from tests.helpers import wait_for

pytestmark = pytest.mark.slow

FAST = {
    "HORIZON_HEARTBEAT_INTERVAL": "0.2",
    "HORIZON_LOOP_INTERVAL": "0.1",
    "HORIZON_MEMORY_INTERVAL": "0.3",
    "HORIZON_MAINTAIN_INTERVAL": "0.5",
    "HORIZON_RESTART_COOLDOWN": "0.2",
}


@pytest.fixture
def env(proc_env):
    proc_env.update(FAST)
    return proc_env


def write_config(config_file: Path, data: dict, **supervisor) -> None:
    data = json.loads(json.dumps(data))
    data["imports"] = ["tests.sample_jobs", "tests.supervisor_jobs"]
    data["defaults"]["supervisor-1"].update(supervisor)
    config_file.write_text(yaml.safe_dump(data))


def start(procs, env, **popen) -> subprocess.Popen:
    procs.env = env
    return procs.horizon("start", **popen)


def masters(hz) -> dict:
    return MasterRepository(hz).all()


def only_supervisor(hz) -> dict | None:
    sups = [s for m in masters(hz).values() for s in m["supervisors"]]
    return sups[0] if len(sups) == 1 else None


def processes(hz) -> dict:
    sup = only_supervisor(hz)
    return sup["processes"] if sup else {}


def worker_pids(hz) -> set[int]:
    sup = only_supervisor(hz)
    return {w["pid"] for w in sup["workers"]} if sup else set()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def stop(proc: subprocess.Popen, timeout: float = 20) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout)


# --- records ----------------------------------------------------------------------------------
def test_masters_record_shape_and_processes_by_queue(hz, procs, env, config_file, config_data):
    write_config(config_file, config_data, queue=["default", "emails"], balance="simple", max_processes=3)
    master = start(procs, env)
    wait_for(lambda: sum(processes(hz).values()) == 3 and len(worker_pids(hz)) == 3, timeout=15)
    (name, record), = masters(hz).items()
    assert record["name"] == name and record["pid"] == master.pid
    assert record["status"] == "running" and record["environment"] == "production"
    sup = record["supervisors"][0]
    assert sup["name"] == f"{name}:supervisor-1" and sup["master"] == name
    assert sup["status"] == "running" and isinstance(sup["pid"], int)
    assert sup["processes"] == {"redis:default": 2, "redis:emails": 1}
    assert sup["options"]["balance"] == "simple" and sup["options"]["maxProcesses"] == 3
    assert sup["options"]["queue"] == "default,emails" and sup["options"]["name"] == sup["name"]
    worker = wait_for(lambda: [w for w in only_supervisor(hz)["workers"] if w["status"] == "idle"], timeout=10)[0]
    assert set(worker) == {"pid", "queue", "status", "started_at", "jobs", "memory"}
    assert isinstance(worker["started_at"], float) and worker["jobs"] == 0
    wait_for(lambda: all(w["memory"] > 0 for w in only_supervisor(hz)["workers"]), timeout=10)
    assert SupervisorRepository(hz).processes_by_queue() == {"redis:default": 2, "redis:emails": 1}
    assert stop(master) == 0
    assert masters(hz) == {}


def test_cli_list_supervisors_status(hz, procs, env, config_file, config_data):
    write_config(config_file, config_data)
    assert procs.run("status").returncode == 1
    master = start(procs, env)
    wait_for(lambda: processes(hz), timeout=15)
    status = procs.run("status")
    assert (status.returncode, status.stdout.strip()) == (0, "running")
    listed = json.loads(procs.run("list", "--json").stdout)
    assert list(listed) == list(masters(hz))
    out = procs.run("supervisors").stdout
    assert ":supervisor-1" in out and "redis:default=" in out
    assert stop(master) == 0


# --- balancing ----------------------------------------------------------------------------------
def test_auto_balance_follows_a_backlog_and_scales_back(hz, procs, env, config_file, config_data):
    write_config(
        config_file, config_data, queue=["default", "emails"], balance="auto", min_processes=1,
        max_processes=4, balance_cooldown=0.3, balance_max_shift=1,
    )
    master = start(procs, env)
    wait_for(lambda: processes(hz) == {"redis:default": 1, "redis:emails": 1}, timeout=15)
    sample_jobs.sleep.options(queue="emails").dispatch_many([(("bal", 0.15), {}) for _ in range(60)])
    wait_for(lambda: processes(hz) == {"redis:default": 1, "redis:emails": 3}, timeout=15)
    wait_for(lambda: processes(hz) == {"redis:default": 1, "redis:emails": 1}, timeout=30)
    assert hz.redis.llen(hz.keys.queue("emails")) == 0
    assert stop(master) == 0
    hz.redis.delete("bal")


def feed(job: Callable[[], object], rate: float, stop_feeding: threading.Event) -> None:
    """Call ``job`` ``rate`` times a second, on a fixed schedule, until ``stop_feeding`` is set."""
    due = time.monotonic()
    while not stop_feeding.wait(max(0.0, due - time.monotonic())):
        job()
        due += 1 / rate


def pool_sizes(hz, queue: str, seconds: float) -> list[int]:
    """The supervisor record's process count for ``queue``, sampled every 50 ms for ``seconds``."""
    sizes, deadline, tick = [], time.monotonic() + seconds, threading.Event()
    while time.monotonic() < deadline:
        sizes.append(processes(hz).get(f"redis:{queue}", 0))
        tick.wait(0.05)
    return sizes


def test_auto_balance_settles_on_a_steady_load(hz, procs, env, config_file, config_data):
    """10 jobs/s of 0.3 s keep 3 processes busy while the list is mostly empty: after the ramp the
    pool keeps its size (one change at most over 10 cooldowns), where it cycled 2-3-4-5-4-3-2 as
    long as the load lasted when the balancer saw only the list length."""
    write_config(
        config_file, config_data, queue=["default"], balance="auto", auto_scaling_strategy="time",
        min_processes=1, max_processes=6, balance_cooldown=1, balance_max_shift=1,
    )
    key = f"steady-{time.time()}"
    master = start(procs, env)
    wait_for(lambda: processes(hz) == {"redis:default": 1}, timeout=15)
    stop_feeding = threading.Event()
    feeder = threading.Thread(target=feed, args=(lambda: sample_jobs.stamp.dispatch(key, 0.3), 10, stop_feeding))
    feeder.start()
    try:  # the ramp: a backlog builds at 1 and 2 processes, then the pool catches up
        wait_for(lambda: processes(hz)["redis:default"] >= 3 and not hz.redis.llen(hz.keys.queue("default")), 20)
        sizes = pool_sizes(hz, "default", 10.0)
    finally:
        stop_feeding.set()
        feeder.join(5)
    assert min(sizes) >= 3 and sum(a != b for a, b in pairwise(sizes)) <= 1, sizes
    assert stop(master) == 0
    hz.redis.delete(key)


def test_simple_balance_splits_evenly(hz, procs, env, config_file, config_data):
    write_config(config_file, config_data, queue=["a", "b", "c"], balance="simple", max_processes=4)
    master = start(procs, env)
    wait_for(lambda: processes(hz) == {"redis:a": 2, "redis:b": 1, "redis:c": 1}, timeout=15)
    assert stop(master) == 0


def test_balance_false_works_queues_in_priority_order(hz, procs, env, config_file, config_data):
    write_config(config_file, config_data, queue=["high", "low"], balance="false", max_processes=1)
    key = f"order-{time.time()}"
    sample_jobs.record.options(queue="low").dispatch_many([((key, f"low{i}"), {}) for i in range(3)])
    sample_jobs.record.options(queue="high").dispatch_many([((key, f"high{i}"), {}) for i in range(3)])
    master = start(procs, env)
    wait_for(lambda: hz.redis.llen(key) == 6, timeout=15)
    order = [v.split(":")[0] for v in hz.redis.lrange(key, 0, -1)]
    assert order == ["high0", "high1", "high2", "low0", "low1", "low2"]
    # the supervisor's record is written by its heartbeat, which may come after the jobs ran
    wait_for(lambda: processes(hz) == {"redis:high,low": 1}, timeout=10)
    assert SupervisorRepository(hz).processes_by_queue() == {"redis:high": 1, "redis:low": 1}
    assert stop(master) == 0
    hz.redis.delete(key)


# --- liveness -----------------------------------------------------------------------------------
def test_term_lets_the_running_job_finish_and_leaves_no_process(hz, procs, env, config_file, config_data):
    write_config(config_file, config_data, max_processes=2, balance="simple")
    key = f"term-{time.time()}"
    master = start(procs, env)
    wait_for(lambda: len(worker_pids(hz)) == 2, timeout=15)
    tree = [p.pid for p in psutil.Process(master.pid).children(recursive=True)]
    assert len(tree) == 3  # one supervisor, two workers
    job_id = sample_jobs.sleep.dispatch(key, 1.0)
    wait_for(lambda: hz.redis.llen(key) == 1, timeout=10)
    assert stop(master) == 0
    assert hz.redis.lrange(key, 1, -1) == ["end"]
    assert hz.redis.hget(hz.keys.job(job_id), "status") == "completed"
    wait_for(lambda: all(gone(pid) for pid in tree), timeout=5)
    with pytest.raises(ProcessLookupError):
        os.killpg(master.pid, 0)
    hz.redis.delete(key)


def test_killed_worker_is_replaced_and_its_job_recovered(hz, procs, env, config_file, config_data):
    config_data = {**config_data, "reservation_margin": 0.5}
    write_config(config_file, config_data, max_processes=1)
    key = f"kill-{time.time()}"
    master = start(procs, env)
    first = wait_for(lambda: worker_pids(hz), timeout=15)
    job_id = sample_jobs.sleep.options(tries=3, timeout=1.5).dispatch(key, 0.5)
    started = wait_for(lambda: hz.redis.lrange(key, 0, -1), timeout=10)
    victim = int(started[0].split(":")[1])
    assert {victim} == first
    os.kill(victim, signal.SIGKILL)
    replaced = wait_for(lambda: (worker_pids(hz) - first), timeout=10)
    assert len(replaced) == 1
    wait_for(lambda: hz.redis.hget(hz.keys.job(job_id), "status") == "completed", timeout=15)
    runs = [v for v in hz.redis.lrange(key, 0, -1) if v.startswith("start:")]
    assert runs[0] == f"start:{victim}" and runs[-1] == f"start:{replaced.pop()}"
    assert stop(master) == 0
    hz.redis.delete(key)


def test_a_job_that_defeats_its_hard_timeout_is_killed_before_its_reservation_ends(
    hz, procs, env, config_file, config_data, tmp_path
):
    """A job that takes over SIGALRM (as some timeout libraries do) cannot be stopped by its
    worker's timeouts. The worker tells its supervisor, in their shared memory, when the running
    job must be over (halfway between its hard timeout and its reservation deadline); past that
    the supervisor kills the worker, so the job is never run twice at once: each try is killed
    and the job fails with JobTimeout (it was recorded as WorkerLost). Before, it ran on; its
    reservation ended, and a second worker ran it while the first still did."""
    config_data["reservation_margin"] = 2  # grace 1 s, kill 1.5 s after the timeout
    write_config(config_file, config_data, max_processes=2, balance=False)
    key = f"{hz.settings.prefix}:alarm"
    log_path = tmp_path / "master.log"
    with log_path.open("w") as log_file:
        master = start(procs, env, stderr=log_file)
    wait_for(lambda: len(worker_pids(hz)) == 2, timeout=15)
    job_id = supervisor_jobs.ignores_alarm.options(timeout=1, tries=2).dispatch(key, 8)
    wait_for(lambda: hz.redis.hget(hz.keys.job(job_id), "status") == "failed", timeout=20,
             message="the job did not fail")
    runs = hz.redis.lrange(key, 0, -1)
    assert all(gone(int(run.split(":")[1])) for run in runs)  # neither try is still running
    h = hz.redis.hgetall(hz.keys.job(job_id))
    exception = json.loads(h["exception"])  # a timeout, not a lost worker (what it was before)
    assert (h["attempts"], exception["class"]) == ("2", "horizon.worker.JobTimeout")
    assert "ran past its timeout and its hard timeout" in exception["message"]
    assert [r.split(":")[0] for r in runs] == ["start", "start"]  # each try killed before its end
    assert log_path.read_text().count("ran past its timeout and hard timeout; killing the worker") == 2
    assert stop(master) == 0


def test_killed_master_takes_supervisors_and_workers_with_it(hz, procs, env, config_file, config_data):
    write_config(config_file, config_data, max_processes=2, balance="simple")
    master = start(procs, env)
    wait_for(lambda: len(worker_pids(hz)) == 2, timeout=15)
    tree = [p.pid for p in psutil.Process(master.pid).children(recursive=True)]
    assert len(tree) == 3
    os.kill(master.pid, signal.SIGKILL)
    master.wait(5)
    wait_for(lambda: all(gone(pid) for pid in tree), timeout=10, message="children outlived the master")


def test_memory_limit_recycles_a_leaking_worker(hz, procs, env, config_file, config_data):
    write_config(config_file, config_data, max_processes=1, memory=40)
    key = f"leak-{time.time()}"
    master = start(procs, env)
    wait_for(lambda: worker_pids(hz), timeout=15)
    supervisor_jobs.leak.dispatch_many([((key, 25), {}) for _ in range(6)])
    wait_for(lambda: hz.redis.llen(key) == 6, timeout=20)
    pids = hz.redis.lrange(key, 0, -1)
    assert len(set(pids)) >= 2, pids  # the worker over 40 MB finished its job and was replaced
    assert stop(master) == 0
    hz.redis.delete(key)


def test_an_idle_worker_is_recycled_at_max_time(hz, procs, env, config_file, config_data):
    """max_time bounds a worker's life whether or not jobs come: an idle worker blocked on Redis
    wakes when its time is up, exits, and a fresh worker takes its place (which then runs jobs)."""
    write_config(config_file, config_data, max_processes=1, max_time=1)
    master = start(procs, env)
    wait_for(lambda: worker_pids(hz), timeout=15)
    first = worker_pids(hz)
    started = time.monotonic()
    wait_for(lambda: worker_pids(hz) and not worker_pids(hz) & first, timeout=10,
             message="the idle worker outlived max_time")
    assert all(gone(pid) for pid in first)
    print(f"idle worker replaced {time.monotonic() - started:.2f}s after it was first seen (max_time 1 s)")
    job_id = sample_jobs.noop.dispatch()
    wait_for(lambda: hz.redis.hget(hz.keys.job(job_id), "status") == "completed", timeout=10)
    assert stop(master) == 0


# --- control ------------------------------------------------------------------------------------
def master_status(hz) -> str | None:
    found = list(masters(hz).values())
    return found[0]["status"] if found else None


def test_pause_and_continue_by_signal_and_by_cli(hz, procs, env, config_file, config_data):
    write_config(config_file, config_data, max_processes=1)
    master = start(procs, env)
    wait_for(lambda: worker_pids(hz), timeout=15)
    master.send_signal(signal.SIGUSR2)
    wait_for(lambda: master_status(hz) == "paused" and only_supervisor(hz)["status"] == "paused", timeout=10)
    wait_for(lambda: worker_pids(hz) == set(), timeout=10)
    paused = procs.run("status")
    assert (paused.returncode, paused.stdout.strip()) == (1, "paused")
    job_id = sample_jobs.noop.dispatch()
    master.send_signal(signal.SIGCONT)
    wait_for(lambda: master_status(hz) == "running" and worker_pids(hz), timeout=10)
    wait_for(lambda: hz.redis.hget(hz.keys.job(job_id), "status") == "completed", timeout=10)

    assert procs.run("pause").returncode == 0
    wait_for(lambda: master_status(hz) == "paused" and worker_pids(hz) == set(), timeout=10)
    assert procs.run("continue").returncode == 0
    wait_for(lambda: master_status(hz) == "running" and worker_pids(hz), timeout=10)

    assert procs.run("pause-supervisor", "supervisor-1").returncode == 0
    wait_for(lambda: only_supervisor(hz)["status"] == "paused", timeout=10)
    assert master_status(hz) == "running"
    assert procs.run("continue-supervisor", "supervisor-1").returncode == 0
    wait_for(lambda: only_supervisor(hz)["status"] == "running" and worker_pids(hz), timeout=10)
    assert procs.run("pause-supervisor", "nope").returncode == 1
    assert procs.run("terminate").returncode == 0
    assert master.wait(20) == 0


def test_two_masters_listed_and_each_periodic_task_runs_once_per_interval(
    hz, procs, env, config_file, config_data, tmp_path
):
    write_config(config_file, config_data, max_processes=1)
    env["HORIZON_LOG_LEVEL"] = "DEBUG"
    logs = [open(tmp_path / f"m{i}.log", "w+") for i in range(2)]
    first, second = (start(procs, env, stderr=log) for log in logs)
    wait_for(lambda: len(masters(hz)) == 2 and all(m["supervisors"] for m in masters(hz).values()), timeout=15)
    assert {m["pid"] for m in masters(hz).values()} == {first.pid, second.pid}
    time.sleep(0)  # the masters keep running while we read their logs

    def slots() -> list[list[str]]:
        found = []
        for log in logs:
            text = (tmp_path / Path(log.name).name).read_text()
            found.append([line.rsplit("slot ", 1)[1].rstrip(")") for line in text.splitlines()
                          if "task maintain ran" in line])
        return found

    wait_for(lambda: sum(len(s) for s in slots()) >= 8, timeout=20)
    per_master = slots()
    everything = per_master[0] + per_master[1]
    assert len(everything) == len(set(everything)), per_master  # no slot ran twice
    assert stop(first) == 0 and stop(second) == 0
    assert masters(hz) == {}
    for log in logs:
        log.close()


def test_master_notifies_systemd(hz, procs, env, config_file, config_data, tmp_path):
    write_config(config_file, config_data, max_processes=1)
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(15)
        env["NOTIFY_SOCKET"] = path
        env["WATCHDOG_USEC"] = "400000"
        master = start(procs, env)
        assert sock.recv(4096).decode().startswith("READY=1")
        assert wait_for(lambda: sock.recv(4096).decode() == "WATCHDOG=1", timeout=5)
        assert stop(master) == 0
        messages = []
        sock.settimeout(0.5)
        try:
            while True:
                messages.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
        assert "STOPPING=1" in messages


def start_logged(procs, env, hz) -> tuple[subprocess.Popen, Callable[[str], None]]:
    """A master with its workers up, whose log (stderr) is read in the background; returns it and
    ``until(text)``, which waits (20 s at most) for the next log line containing ``text``."""
    master = start(procs, env, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in master.stderr], daemon=True).start()
    wait_for(lambda: worker_pids(hz), timeout=15)

    seen: list[str] = []

    def until(text: str) -> None:
        deadline = time.monotonic() + 20
        while True:
            seen.append(lines.get(timeout=max(deadline - time.monotonic(), 0.01)))
            if text in seen[-1]:
                return

    until.seen = seen  # type: ignore[attr-defined]  (the lines read so far)
    return master, until


@pytest.mark.parametrize(
    "moment",
    [
        # the old run waits for its supervisors: before, the TERM was dropped and the master ran again
        "supervisor.master: restart",
        # the new interpreter starts: before, the default action killed the master (exit -15); now the
        # TERM stays blocked across the exec until the new run's handlers exist
        "restarting: exec",
    ],
)
def test_a_term_during_a_restart_stops_the_master(hz, procs, env, config_file, config_data, moment):
    write_config(config_file, config_data, max_processes=1)
    master, until = start_logged(procs, env, hz)
    master.send_signal(signal.SIGHUP)
    until(moment)
    master.send_signal(signal.SIGTERM)  # at that moment of the restart
    assert master.wait(20) == 0
    assert masters(hz) == {}


def test_a_second_hup_while_the_restarted_master_starts_restarts_it_again(hz, procs, env, config_file, config_data):
    """Two reloads close together: the second HUP lands while the new interpreter starts. It waits,
    blocked across the exec, for the new run (before, SIGHUP's default action ended the master)."""
    write_config(config_file, config_data, max_processes=1)
    master, until = start_logged(procs, env, hz)
    master.send_signal(signal.SIGHUP)
    until("restarting: exec")
    master.send_signal(signal.SIGHUP)
    until("restarting: exec")  # the new run restarts once more, then runs
    wait_for(lambda: masters(hz) and worker_pids(hz), timeout=20)
    assert master.poll() is None
    assert stop(master) == 0


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_a_signal_while_the_master_imports_its_jobs_waits_for_its_handlers(
    hz, procs, env, config_file, config_data, tmp_path, signum
):
    """A reload or stop sent while a fresh master still imports the config's modules (before its
    handlers exist): before, the signal's default action ended the master (exit -1 / -15); now it
    is held, then handled: a HUP restarts the master, a TERM stops it cleanly."""
    write_config(config_file, config_data, max_processes=1)
    gate = str(tmp_path / "gate")
    env["HORIZON_TEST_IMPORT_GATE"] = gate
    master = start(procs, env)
    entered = Path(gate + ".entered")
    wait_for(lambda: entered.exists() and len(entered.read_text().split()) == 1, timeout=20,
             message="the master never reached its imports")
    master.send_signal(signum)  # the master is inside the import of tests.supervisor_jobs
    Path(gate + ".open").touch()
    if signum == signal.SIGTERM:
        assert master.wait(20) == 0
        return
    wait_for(lambda: len(entered.read_text().split()) == 2, timeout=20, message="no restart")  # imported again
    wait_for(lambda: masters(hz) and worker_pids(hz), timeout=20)
    assert master.poll() is None
    assert stop(master) == 0


def test_hup_restarts_the_master_with_fresh_workers(hz, procs, env, config_file, config_data):
    write_config(config_file, config_data, max_processes=1)
    master = start(procs, env)
    before = wait_for(lambda: worker_pids(hz), timeout=15)
    (old_name,) = masters(hz)
    master.send_signal(signal.SIGHUP)
    wait_for(lambda: list(masters(hz)) not in ([], [old_name]) and worker_pids(hz), timeout=20)
    (new,) = masters(hz).values()
    assert new["pid"] == master.pid and new["name"] != old_name  # same process, executed again
    assert worker_pids(hz).isdisjoint(before)
    job_id = sample_jobs.noop.dispatch()
    wait_for(lambda: hz.redis.hget(hz.keys.job(job_id), "status") == "completed", timeout=10)
    assert stop(master) == 0


def test_a_worker_finishing_its_job_after_a_pause_is_listed_as_terminating(hz, procs, env, config_file, config_data):
    """Before, a paused supervisor listed no worker while one still ran a long job (and a
    scale-down or restart hid them the same way): an operator could not see what was finishing."""
    write_config(config_file, config_data, max_processes=1)
    master = start(procs, env)
    wait_for(lambda: worker_pids(hz), timeout=15)
    key = f"finishing-{time.time()}"
    job_id = sample_jobs.sleep.dispatch(key, 3)
    wait_for(lambda: hz.redis.llen(key) == 1, timeout=10)  # it started
    assert procs.run("pause-supervisor", "supervisor-1").returncode == 0
    workers = wait_for(lambda: only_supervisor(hz)["status"] == "paused" and only_supervisor(hz)["workers"], timeout=10)
    assert [w["status"] for w in workers] == ["terminating"]
    assert only_supervisor(hz)["processes"] == {"redis:default": 0}
    wait_for(lambda: hz.redis.hget(hz.keys.job(job_id), "status") == "completed", timeout=15)
    wait_for(lambda: only_supervisor(hz)["workers"] == [], timeout=10)
    assert stop(master) == 0
    hz.redis.delete(key)


@pytest.mark.parametrize("paused", ["master", "supervisor"])
def test_a_reload_keeps_what_was_paused(hz, procs, env, config_file, config_data, paused):
    """A pause (of the master, or of one supervisor) outlives a reload (HUP). Before, the master run
    again came back running and worked the queue it had been told to leave alone."""
    write_config(config_file, config_data, max_processes=1)
    master = start(procs, env)
    wait_for(lambda: worker_pids(hz), timeout=15)
    (old_name,) = masters(hz)
    assert procs.run(*(["pause"] if paused == "master" else ["pause-supervisor", "supervisor-1"])).returncode == 0
    wait_for(lambda: only_supervisor(hz) and only_supervisor(hz)["status"] == "paused", timeout=10)
    wait_for(lambda: worker_pids(hz) == set(), timeout=10)
    job_id = sample_jobs.noop.dispatch()
    master.send_signal(signal.SIGHUP)
    wait_for(lambda: list(masters(hz)) not in ([], [old_name]) and only_supervisor(hz), timeout=30)
    wait_for(lambda: only_supervisor(hz)["status"] == "paused", timeout=10)
    assert master_status(hz) == ("paused" if paused == "master" else "running")
    assert worker_pids(hz) == set() and hz.redis.hget(hz.keys.job(job_id), "status") == "pending"
    assert procs.run(*(["continue"] if paused == "master" else ["continue-supervisor", "supervisor-1"])).returncode == 0
    wait_for(lambda: hz.redis.hget(hz.keys.job(job_id), "status") == "completed", timeout=15)
    assert stop(master) == 0


@pytest.mark.parametrize(
    ("breakage", "error"),
    [
        ("yaml", "invalid YAML at line"),
        ("value", "defaults.supervisor-1.max_processes: expected an integer >= 1, got 'lots'"),
        ("module", "imports: cannot import 'tests_reload_broken': invalid syntax"),
        # before, these passed the check, and the master run again exited 1: no workers left
        ("port", "its port is not a number from 0 to 65535"),
        ("password", "refuses the credentials"),
    ],
)
def test_a_reload_whose_new_configuration_cannot_start_keeps_the_master_running(
    hz, procs, env, config_file, config_data, tmp_path, breakage, error
):
    """A reload (SIGHUP) after config.yaml or a job module was broken: the master checks the new
    run in a child first, logs why it cannot start and goes on with the same workers. Before, it
    stopped every worker, ran again and exited 2, leaving the host without workers. Once the
    configuration is mended, a reload runs again as usual."""
    write_config(config_file, config_data, max_processes=1)
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env['PYTHONPATH']}"
    master, until = start_logged(procs, env, hz)
    before = worker_pids(hz)
    good = config_file.read_text()
    if breakage == "yaml":
        config_file.write_text(good + "\nimports: [unclosed\n")
    elif breakage == "value":
        config_file.write_text(good.replace("max_processes: 1", "max_processes: lots"))
    elif breakage in ("port", "password"):
        data = yaml.safe_load(good)
        host_port = data["redis"]["url"].split("//", 1)[1].split("/", 1)[0]
        data["redis"]["url"] = (f"redis://{host_port}99/0" if breakage == "port"
                                else f"redis://ghost:Secret-pw@{host_port}/0")  # no such user
        config_file.write_text(yaml.safe_dump(data))
    else:
        (tmp_path / "tests_reload_broken.py").write_text("def job(:\n")
        data = yaml.safe_load(good)
        data["imports"].append("tests_reload_broken")
        config_file.write_text(yaml.safe_dump(data))
    master.send_signal(signal.SIGHUP)
    until("reload refused")
    until(error)  # the check's own message, in the master's log
    assert not [line for line in until.seen if "Secret-pw" in line]  # a password is never logged
    assert master.poll() is None and worker_pids(hz) == before  # the same workers go on
    job_id = sample_jobs.noop.dispatch()
    wait_for(lambda: hz.redis.hget(hz.keys.job(job_id), "status") == "completed", timeout=10)
    config_file.write_text(good)
    master.send_signal(signal.SIGHUP)
    until("restarting: exec")
    wait_for(lambda: worker_pids(hz) and worker_pids(hz).isdisjoint(before), timeout=20, message="no fresh workers")
    assert stop(master) == 0


def test_dead_supervisor_is_restarted_and_its_workers_exit(hz, procs, env, config_file, config_data):
    write_config(config_file, config_data, max_processes=1)
    master = start(procs, env)
    first = wait_for(lambda: only_supervisor(hz) if worker_pids(hz) else None, timeout=15)
    os.kill(first["pid"], signal.SIGKILL)
    replaced = lambda: (s := only_supervisor(hz)) and s["pid"] != first["pid"] and s["workers"] and s  # noqa: E731
    second = wait_for(replaced, timeout=15)
    assert psutil.Process(second["pid"]).ppid() == master.pid
    wait_for(lambda: all(gone(w["pid"]) for w in first["workers"]), timeout=10)
    assert stop(master) == 0


def test_master_over_memory_limit_exits_12_and_takes_its_children(hz, procs, env, config_file, config_data):
    write_config(config_file, {**config_data, "memory_limit": 1}, max_processes=1)
    env["HORIZON_MASTER_MEMORY_INTERVAL"] = "0.5"
    master = start(procs, env)
    assert master.wait(20) == 12
    with pytest.raises(ProcessLookupError):
        os.killpg(master.pid, 0)
    assert masters(hz) == {}


def test_start_check_validates_without_starting_anything(procs, config_file, config_data, hz):
    """`horizon start --check` (what a reload runs first) loads the configuration and imports the
    job modules, then exits: 0 and a summary, or 2 and the error. It needs no Redis and starts no
    process: no master is recorded."""
    write_config(config_file, config_data, max_processes=1)
    ok = procs.run("start", "--check")
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr
    assert ok.stdout.strip() == "horizon: configuration ok (1 supervisor(s) in production)"
    config_file.write_text(config_file.read_text().replace("tests.supervisor_jobs", "tests.no_such_module"))
    bad = procs.run("start", "--check")
    assert bad.returncode == 2 and "imports: cannot import 'tests.no_such_module'" in bad.stderr
    assert "Traceback" not in bad.stderr and masters(hz) == {}


def test_start_check_refuses_a_config_with_no_redis_to_start_on(procs, config_file, config_data, tmp_path):
    """No redis.url (a `${VAR}` unset, say) and no embedded server running: `horizon start` cannot
    start, so its check must say so (it said "configuration ok", and a reload then stopped the
    master for good)."""
    config_data["redis"] = {"url": None, "embedded": {"dir": str(tmp_path / "nothing-here")}}
    write_config(config_file, config_data, max_processes=1)
    check = procs.run("start", "--check")
    assert check.returncode == 2, check.stdout
    assert "no redis.url is configured and no embedded redis is running" in check.stderr
    started = procs.run("start")
    assert started.returncode != 0 and "no redis.url is configured" in started.stderr


def test_up_reports_an_embedded_redis_error_in_one_line(procs, config_file, tmp_path):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    config_file.write_text(yaml.safe_dump({"redis": {"url": None, "embedded": {"dir": str(tmp_path), "port": port}}}))
    result = procs.run("up")
    blocker.close()
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("horizon: embedded redis: ")
    assert "Traceback" not in result.stderr


def test_fast_termination_exits_at_once_while_jobs_finish(hz, procs, env, config_file, config_data):
    write_config(config_file, {**config_data, "fast_termination": True}, max_processes=1)
    key = f"fast-{time.time()}"
    master = start(procs, env)
    wait_for(lambda: worker_pids(hz), timeout=15)
    tree = [p.pid for p in psutil.Process(master.pid).children(recursive=True)]
    job_id = sample_jobs.sleep.dispatch(key, 1.5)
    wait_for(lambda: hz.redis.llen(key) == 1, timeout=10)
    assert stop(master) == 0
    assert hz.redis.lrange(key, 1, -1) == []  # the master did not wait for the job
    wait_for(lambda: hz.redis.hget(hz.keys.job(job_id), "status") == "completed", timeout=10)
    wait_for(lambda: all(gone(pid) for pid in tree), timeout=10)
    hz.redis.delete(key)


def test_a_fast_reload_reaps_the_old_supervisor_once_its_job_ends(hz, procs, env, config_file, config_data):
    """With fast_termination, a reload execs at once while the old supervisor finishes its job; the
    new run did not know it, so each such supervisor stayed a zombie child of the master."""
    write_config(config_file, {**config_data, "fast_termination": True}, max_processes=1)
    key = f"fast-reload-{time.time()}"
    master = start(procs, env)
    wait_for(lambda: worker_pids(hz), timeout=15)
    old = {p.pid for p in psutil.Process(master.pid).children()}
    job_id = sample_jobs.sleep.dispatch(key, 2)
    wait_for(lambda: hz.redis.llen(key) == 1, timeout=10)
    master.send_signal(signal.SIGHUP)
    wait_for(lambda: hz.redis.hget(hz.keys.job(job_id), "status") == "completed", timeout=20)

    def old_ones_left() -> set[int]:
        return {p.pid for p in psutil.Process(master.pid).children()} & old

    wait_for(lambda: not old_ones_left(), timeout=10, message="the old supervisor stayed a zombie")
    assert master.poll() is None
    assert stop(master) == 0
    hz.redis.delete(key)


def test_purge_forgets_dead_local_masters(hz, procs, env, config_file, config_data):
    write_config(config_file, config_data)
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"{socket.gethostname()}-dead"
    MasterRepository(hz).update({"name": name, "environment": "production", "pid": dead.pid, "status": "running"})
    sup = {"name": f"{name}:supervisor-1", "master": name, "pid": dead.pid, "status": "running"}
    SupervisorRepository(hz).update({**sup, "processes": {"redis:default": 1}, "options": {}, "workers": []})
    assert list(masters(hz)) == [name]
    result = procs.run("purge")
    assert result.returncode == 0, result.stderr
    assert "forgot 2 dead record(s)" in result.stdout
    assert masters(hz) == {} and SupervisorRepository(hz).records() == []


def test_purge_stops_an_orphaned_worker_and_never_a_master(hz, env, config_file, config_data, tmp_path, monkeypatch):
    """`horizon purge` stops supervisors and workers whose master is gone, known by their kernel
    name. Before, it stopped any `horizon start` process whose parent was init and which this
    prefix's records did not name: every other application's master on the host run by systemd
    (a probe's purge stopped one)."""
    import sys

    from supervisor import purge

    other = json.loads(json.dumps(config_data))
    other["prefix"] = config_data["prefix"] + "-other"
    other_file = tmp_path / "other.yaml"
    write_config(other_file, other)
    command = " ".join([sys.executable, "-m", "horizon.cli", "start", "--config", str(other_file)])
    launcher = subprocess.run(["sh", "-c", f"{command} >/dev/null 2>&1 & echo $!"], env=env, cwd=str(ROOT),
                              capture_output=True, text=True, check=True)  # its parent is gone: as under systemd
    master_pid = int(launcher.stdout)
    started = tmp_path / "orphan-started"
    orphan_code = (  # forks a worker-named child, waits until it runs, and exits: the child is orphaned
        "import os, pathlib, sys, time\nfrom supervisor import children\n"
        "started = pathlib.Path(sys.argv[1])\n"
        "def run():\n    started.write_text(str(os.getpid()))\n    time.sleep(120)\n    return 0\n"
        "children.fork(run, comm=children.WORKER_COMM)\n"
        "while not started.exists(): time.sleep(0.01)\n"
    )  # the child starts with TERM blocked, its parent-death signal included: it outlives its parent
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run([sys.executable, "-c", orphan_code, str(started)], env=env, cwd=str(ROOT), check=True, timeout=30,
                   **quiet)
    orphan_pid = int(wait_for(lambda: started.read_text(), timeout=5))
    try:
        wait_for(lambda: psutil.Process(orphan_pid).name() == "hz-worker", timeout=5)
        wait_for(lambda: len(psutil.Process(master_pid).children()) >= 1, timeout=30)  # it forked its supervisor
        monkeypatch.setattr(purge, "MIN_AGE", 0.0)
        killed, _ = purge.purge(hz)
        assert orphan_pid in killed
        assert master_pid not in killed and not set(killed) & {p.pid for p in psutil.Process(master_pid).children(True)}
        assert psutil.Process(master_pid).is_running()
    finally:
        for pid in (orphan_pid, master_pid):
            try:
                for proc in [*psutil.Process(pid).children(recursive=True), psutil.Process(pid)]:
                    proc.kill()
            except psutil.NoSuchProcess:
                pass


@pytest.mark.parametrize("then", ["redis comes up", "TERM"])
def test_a_master_started_before_its_redis_waits_for_it(procs, env, config_file, config_data, tmp_path, prefix, then):
    """`horizon start` while nothing listens on its Redis port (boot order, a Redis restart): it
    waits with backoff instead of exiting 1, which under systemd meant a restart every 2 s until
    the start limit failed the unit. Once Redis is up it runs; a TERM while it waits stops it (0)."""
    from horizon.config import settings_from_dict
    from horizon.context import Horizon
    from horizon.embedded import EmbeddedRedis, free_port

    port = free_port()
    data = dict(config_data, redis={"url": f"redis://127.0.0.1:{port}"})
    write_config(config_file, data, max_processes=1)
    master = start(procs, env, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(master.stderr), daemon=True).start()
    wait_for(lambda: any("redis unreachable at start" in line for line in lines), timeout=20,
             message="the master did not wait for redis")
    if then == "TERM":
        master.send_signal(signal.SIGTERM)
        assert master.wait(timeout=20) == 0
        return
    server = EmbeddedRedis(str(tmp_path / "late-redis"), port=port).start()
    own = Horizon(settings_from_dict(dict(data, prefix=prefix)))
    try:
        wait_for(lambda: masters(own) and worker_pids(own), timeout=30, message="no master after redis came up")
        assert stop(master) == 0
    finally:
        own.close()
        server.stop()
