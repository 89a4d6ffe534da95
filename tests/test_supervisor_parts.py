"""Supervision parts in this process: pools with real forked children, locks, commands, sd_notify."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time

import psutil
import pytest

from horizon.repositories.supervisors import CommandQueue, Locks
from horizon.worker import WorkerState
from supervisor import children, tuning
from supervisor.children import reap as reap_child
from supervisor.notify import Notifier
from supervisor.pool import ProcessPool
from supervisor.process import SharedState, WorkerProcess
from tests.helpers import ignores_signal, in_forked_child, wait_for


def fork_child(behaviour: str) -> WorkerProcess:
    """A real child: 'stubborn' ignores SIGTERM, 'crash' exits 3 at once, 'crash-in-job' exits 3
    once it has reported that it runs a job (what a worker does before each job)."""
    shared = SharedState()
    pid = os.fork()
    if pid == 0:
        if behaviour == "crash":
            os._exit(3)
        if behaviour == "crash-in-job":
            shared.write(WorkerState(status="processing"))
            os._exit(3)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(60)
        os._exit(0)
    if behaviour == "stubborn":  # a TERM sent before it ignores them kills it
        wait_for(lambda: ignores_signal(pid, signal.SIGTERM), timeout=5)
    return WorkerProcess(pid=pid, queues=["default"], shared=shared)


def reap(pool: ProcessPool, now: float) -> int:
    count = 0
    for proc in pool.all():
        if (code := reap_child(proc.pid)) is not None:
            count += pool.exited(proc.pid, code, now)
    return count


@pytest.fixture
def pools():
    made: list[ProcessPool] = []
    yield made
    for pool in made:
        for proc in pool.all():
            proc.kill()
        for proc in pool.all():
            os.waitpid(proc.pid, 0)


def test_scaled_down_worker_that_outlives_its_timeout_is_killed(pools):
    pool = ProcessPool(["default"], lambda queues: fork_child("stubborn"), stop_timeout=0.5)
    pools.append(pool)
    pool.scale(2)
    assert pool.size() == 2
    now = time.time()
    pool.scale(1, now)
    assert pool.size() == 1 and len(pool.terminating) == 1
    victim = pool.terminating[0].pid
    pool.monitor(now + 0.1)
    assert reap(pool, now) == 0  # still running: it ignores TERM
    pool.monitor(now + 1)  # past stop_timeout: SIGKILL
    wait_for(lambda: reap(pool, now + 1) == 1, timeout=5)
    assert pool.terminating == [] and victim not in [p.pid for p in pool.all()]


def test_shared_state_carries_the_running_job_or_says_it_is_unknown():
    shared = SharedState()
    try:
        assert shared.read() == ("starting", 0, "")
        shared.write(WorkerState(status="processing", jobs=3, job="4741194c-b735-4339-9901-92a79073b42e"))
        assert shared.read() == ("processing", 3, "4741194c-b735-4339-9901-92a79073b42e")
        shared.write(WorkerState(status="processing", jobs=4, job="x" * 300))  # too long to hold
        assert shared.read() == ("processing", 4, None)  # unknown: the supervisor counts as it used to
        shared.write(WorkerState(status="idle", jobs=5))
        assert shared.read() == ("idle", 5, "")
    finally:
        shared.close()


def dying_pool(pools: list, behaviour: str) -> tuple[ProcessPool, float]:
    """A pool of one child that dies as ``behaviour`` says (see fork_child), scaled up now."""
    pool = ProcessPool(["default"], lambda queues: fork_child(behaviour), stop_timeout=1)
    pools.append(pool)
    now = time.time()
    pool.scale(1, now)
    return pool, now


def test_worker_that_keeps_dying_is_restarted_with_a_cooldown(pools, monkeypatch):
    monkeypatch.setattr(tuning, "RESTART_COOLDOWN", 5.0)
    pool, now = dying_pool(pools, "crash")
    first = pool.processes[0].pid
    wait_for(lambda: reap(pool, now) == 1, timeout=5)
    pool.monitor(now + 1)
    assert pool.size() == 0  # died young: waits out the cooldown
    pool.monitor(now + 5.5)
    assert pool.size() == 1 and pool.processes[0].pid != first
    wait_for(lambda: reap(pool, time.time()) == 1, timeout=5)
    assert pool.cooldown == 10.0  # doubles while it keeps dying young


def test_worker_that_dies_running_a_job_is_replaced_at_once(pools, monkeypatch):
    """A job that crashes its process costs that job a try, not the pool a restart cooldown."""
    monkeypatch.setattr(tuning, "RESTART_COOLDOWN", 5.0)
    pool, now = dying_pool(pools, "crash-in-job")
    seen = {pool.processes[0].pid}
    for _ in range(3):  # each dies young, every time while running a job
        wait_for(lambda: reap(pool, now) == 1, timeout=5)
        pool.monitor(now)
        assert pool.size() == 1 and pool.cooldown == 0.0
        assert pool.processes[0].pid not in seen
        seen.add(pool.processes[0].pid)


def test_commands_are_read_and_emptied_in_one_step(hz):
    commands = CommandQueue(hz)
    commands.push("m1", "pause")
    commands.push("m1", "scale", {"processes": 3})
    assert commands.pending("m1") == [("pause", {}), ("scale", {"processes": 3})]
    assert commands.pending("m1") == []


def test_periodic_lock_is_taken_once_per_slot(hz):
    locks = Locks(hz)
    assert locks.acquire_slot("maintain", 10, "a", now=1000.0) == 100
    assert locks.acquire_slot("maintain", 10, "b", now=1005.0) is None
    assert locks.acquire_slot("maintain", 10, "b", now=1010.0) == 101
    assert locks.acquire_slot("snapshot", 10, "b", now=1005.0) == 100


def test_notifier_uses_the_abstract_namespace(tmp_path):
    name = f"@horizon-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name[1:])
        sock.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "2000000"})
        assert notifier.ready()
        assert sock.recv(1024).decode().startswith("READY=1\nMAINPID=")
        assert notifier.watchdog(now=100.0) and not notifier.watchdog(now=100.1)
        assert sock.recv(1024) == b"WATCHDOG=1"
    assert not Notifier({}).ready()


def test_supervisor_loop_balances_toward_a_backlog_with_controlled_time(hz):
    from horizon.config import SupervisorSettings
    from supervisor.supervisor import Supervisor
    from tests import sample_jobs

    options = SupervisorSettings(
        name="s", queue=("a", "b"), balance="auto", min_processes=1, max_processes=4, balance_cooldown=10, timeout=5
    )
    sup = Supervisor(hz, options, master="looptest")
    sup.initial_scale()
    try:
        assert [p.target for p in sup.pools] == [1, 1]
        sample_jobs.sleep.options(queue="b").dispatch_many([(("loop", 0.3), {}) for _ in range(40)])
        t = time.time()
        sup.loop(now=t)
        assert [p.target for p in sup.pools] == [1, 2]
        sup.loop(now=t + 5)  # within balance_cooldown: no step
        assert [p.target for p in sup.pools] == [1, 2]
        sup.loop(now=t + 10)
        assert [p.target for p in sup.pools] == [1, 3]
        record = sup.record()
        assert record["processes"] == {"redis:a": 1, "redis:b": 3}
        assert len(record["workers"]) == 4 and record["name"] == "looptest:s"
    finally:
        sup.terminate()
        wait_for(lambda: sup.loop() or sup.finished(), timeout=15, interval=0.05)
    hz.redis.delete("loop")


def test_every_level_answers_to_the_same_verbs(hz):
    from horizon.config import SupervisorSettings
    from supervisor.master import MasterSupervisor
    from supervisor.supervisor import Supervisor
    from supervisor.verbs import Supervised

    pool = ProcessPool(["default"], lambda queues: fork_child("stubborn"), stop_timeout=1)
    sup = Supervisor(hz, SupervisorSettings(name="s"), master="verbs")
    master = MasterSupervisor(hz, name="verbs")
    assert all(isinstance(level, Supervised) for level in (pool, sup, master))


def test_a_forked_child_keeps_the_horizon_but_never_the_parents_connections(hz, redis_client):
    """context.after_fork: the same objects (shared copy-on-write), fresh sockets in the child."""
    from horizon import context
    from horizon.queue import JobSpec

    def spec() -> JobSpec:
        return JobSpec(name="tests.add", queue="default", payload='{"args":[],"kwargs":{}}')

    hz.redis.ping()
    hz.queue.push([spec()])  # the parent's pool and script connection are both open
    parent_socket = hz.redis.connection_pool.get_connection()
    hz.redis.connection_pool.release(parent_socket)

    def in_child() -> bool:
        child = context.after_fork(hz.settings)
        ours = child is hz and context.current() is hz
        job = spec()
        pushed = child.queue.push([job]) == [job.id]
        pooled = child.redis.connection_pool.get_connection()
        return ours and pushed and pooled is not parent_socket and child.queue.get(job.id)["status"] == "pending"

    assert in_forked_child(in_child) == 0
    # the parent's connections were left alone: its replies still come back in step
    job = spec()
    assert hz.queue.push([job]) == [job.id]
    assert hz.redis.hget(hz.keys.job(job.id), "status") == "pending"
    assert redis_client.llen(hz.keys.queue("default")) == 3


def test_a_dead_workers_jobs_stay_with_their_windows_when_redis_is_away(caplog, prefix):
    """The supervisor's immediate put-back is best effort: with Redis unreachable it logs and goes
    on (the reservations expire as before); it never takes the supervisor down."""
    from horizon.config import SupervisorSettings, settings_from_dict
    from horizon.context import configure, reset
    from supervisor.supervisor import Supervisor

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    away = configure(settings_from_dict({"prefix": prefix, "redis": {"url": f"redis://127.0.0.1:{port}"}}))
    sup = Supervisor(away, SupervisorSettings(name="s", queue=("default",)), master="away")
    try:
        with caplog.at_level("WARNING"):
            sup.recover(4242, ["default"], -9, "")
    finally:
        away.close()
        reset()
    assert "could not put back what worker 4242 held" in caplog.text


def _unreachable_horizon(prefix: str):  # memory_limit: this test process is no lean master
    from horizon.config import settings_from_dict
    from horizon.context import configure

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://127.0.0.1:{port}"
    return configure(settings_from_dict({"prefix": prefix, "redis": {"url": url}, "memory_limit": 100000}))


def test_while_redis_is_away_a_supervisor_still_replaces_dead_workers(caplog, prefix, pools):
    """The loop's Redis steps fail; reaping and refilling the pool must not be skipped with them."""
    from horizon.config import SupervisorSettings
    from horizon.context import reset
    from supervisor.supervisor import Supervisor

    away = _unreachable_horizon(prefix)
    sup = Supervisor(away, SupervisorSettings(name="s", queue=("default",)), master="away")
    pool = ProcessPool(["default"], lambda queues: fork_child("crash-in-job"), stop_timeout=1)
    pools.append(pool)
    sup.pools = [pool]
    try:
        pool.scale(1)
        seen = {pool.processes[0].pid}
        with caplog.at_level("WARNING"):
            for _ in range(3):
                wait_for(lambda pid=pool.processes[0].pid: psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
                         timeout=5, message="the child did not exit")
                sup.loop()
                assert pool.size() == 1 and pool.processes[0].pid not in seen  # reaped and replaced
                seen.add(pool.processes[0].pid)
    finally:
        away.close()
        reset()
    assert caplog.text.count("redis unavailable") == 1  # once per outage, not a traceback per pass
    assert "Traceback" not in caplog.text


@contextlib.contextmanager
def watched_master(hz, timeout: float):
    """A master (not run: call its loop()) whose sd_notify messages arrive on the yielded socket."""
    from supervisor.master import MasterSupervisor

    name = f"@horizon-watchdog-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name[1:])
        sock.settimeout(timeout)
        notifier = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "1"})
        yield sock, MasterSupervisor(hz, name="watched", notifier=notifier)


def test_while_redis_is_away_the_master_still_pings_the_systemd_watchdog(caplog, prefix):
    """systemd would kill a master whose watchdog went silent: during a Redis outage, which a
    restart cannot fix, the master goes on supervising and pinging."""
    from horizon.context import reset

    away = _unreachable_horizon(prefix)
    try:
        with watched_master(away, timeout=5) as (sock, master), caplog.at_level("WARNING"):
            for _ in range(2):
                master.loop()
                assert sock.recv(1024) == b"WATCHDOG=1"
    finally:
        away.close()
        reset()
    assert caplog.text.count("redis unavailable") == 1 and "Traceback" not in caplog.text


def test_while_redis_is_away_maintenance_logs_the_outage_once(caplog, prefix):
    """Every periodic task fails each second while Redis is away: one warning for the outage (and
    one when it ends), not a traceback per task per second."""
    from horizon.context import reset
    from supervisor.maintenance import Maintenance

    away = _unreachable_horizon(prefix)
    maintenance = Maintenance(away, "away")
    ran = []
    try:
        with caplog.at_level("WARNING"):
            for _ in range(3):
                assert maintenance.run_task("maintain", 1.0, lambda: ran.append(1)) is False
                assert maintenance.run_task("snapshot", 1.0, lambda: ran.append(2)) is False
    finally:
        away.close()
        reset()
    assert ran == []
    assert caplog.text.count("redis unavailable") == 1 and "Traceback" not in caplog.text


def test_while_redis_hangs_a_master_pass_stays_short_and_pings_the_watchdog(caplog, prefix):
    """A Redis that accepts connections and never answers (a hung server, a half-open network):
    the master's loop calls give up within seconds, so one pass still ends with the watchdog
    ping, well within systemd's WatchdogSec (30 s in deploy/horizon.service). With the workers'
    30 s socket timeout, one pass took 60 s."""
    from horizon.config import settings_from_dict
    from horizon.context import configure, reset

    held: list[socket.socket] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        def accept() -> None:  # connections Redis would answer; none is answered
            try:
                held.extend(server.accept()[0] for _ in range(16))
            except OSError:  # the listening socket closed at the end of the test
                pass

        accepting = threading.Thread(target=accept, daemon=True)
        accepting.start()
        url = f"redis://127.0.0.1:{server.getsockname()[1]}"
        hung = configure(settings_from_dict({"prefix": prefix, "redis": {"url": url}, "memory_limit": 100000}))
        try:
            with watched_master(hung, timeout=15) as (sock, master), caplog.at_level("WARNING"):
                threading.Thread(target=master.loop, daemon=True).start()
                assert sock.recv(1024) == b"WATCHDOG=1"
        finally:
            for conn in held:
                conn.close()
            hung.close()
            reset()
    assert "redis unavailable (Timeout" in caplog.text


# --- signals sent while a child starts ---------------------------------------------------------
def _signal_while_starting(signum: int, before_rest, spawn) -> int | None:
    """Fork with ``spawn(before)``, send ``signum`` while the child runs ``before`` (still holding
    its parent's handlers, here one that swallows the signal as the supervisor's queue did), and
    return the child's exit code (None if it had not exited within 15 s: then it is killed)."""
    started_r, started_w = os.pipe()
    sent_r, sent_w = os.pipe()

    def before() -> None:
        os.write(started_w, b"1")
        os.read(sent_r, 1)  # the signal is pending now, before the child's own handlers exist
        before_rest()

    inherited = signal.signal(signum, lambda *_: None)
    try:
        pid = spawn(before)
        os.read(started_r, 1)
        os.kill(pid, signum)
        os.write(sent_w, b"1")
        codes: list[int] = []

        def exited() -> list[int]:
            if (code := reap_child(pid)) is not None:
                codes.append(code)
            return codes

        try:
            return wait_for(exited, timeout=15)[0]
        except AssertionError:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
    finally:
        signal.signal(signum, inherited)
        for fd in (started_r, started_w, sent_r, sent_w):
            os.close(fd)


def test_a_signal_sent_while_a_child_starts_reaches_the_childs_own_handler():
    def run() -> int:
        got: list[int] = []
        signal.signal(signal.SIGUSR2, lambda *_: got.append(1))
        children.release_signals()
        time.sleep(0)  # Python runs a handler between bytecodes: let it run before the answer
        return 0 if got == [1] else 5

    def reset() -> None:
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)  # as SignalQueue.close() does in a child

    assert _signal_while_starting(signal.SIGUSR2, reset, lambda before: children.fork(run, before=before)) == 0


def test_a_worker_told_to_stop_while_it_starts_stops(hz):
    """Before the fix, the TERM went to the supervisor's handler copied into the new worker, so a
    worker forked just as its supervisor terminated ran on, and the master's stop hung."""
    from supervisor.process import spawn_worker

    def reset() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def spawn(before) -> int:
        return spawn_worker(hz.settings, hz.settings.supervisors[0], ["default"], "starting", before=before).pid

    assert _signal_while_starting(signal.SIGTERM, reset, spawn) == 0


def test_only_the_reservations_of_dead_workers_of_dead_masters_of_this_machine_are_put_back(hz, redis_client):
    """recover_orphans judges a master dead only by a record of this host, boot and PID namespace
    whose pid runs no master, and a worker only when its pid is gone (or runs a later process): a master record of
    another boot (another machine with the same host name) and a worker still running (one
    finishing its job after its master died) are left to their reservations."""
    import subprocess
    import sys

    from horizon.repositories.supervisors import MasterRepository
    from supervisor.orphans import boot_id, pid_namespace, recover_orphans
    from tests import sample_jobs

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # a pid that no longer runs
    # a worker still running: a horizon process (its command line says `horizon ... start`)
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "horizon", "start"])
    try:
        host = socket.gethostname()
        masters = MasterRepository(hz)
        ours = (boot_id(), pid_namespace())
        for name, (boot, namespace) in ((f"{host}-dead", ours), (f"{host}-else", ("another-boot", ours[1])),
                                        (f"{host}-box", (ours[0], "pid:[1]"))):
            masters.update({"name": name, "pid": finished.pid, "status": "running", "boot_id": boot,
                            "pid_namespace": namespace})
        cases = {  # worker name -> put back?
            f"{host}-dead:supervisor-1:{finished.pid}": True,
            f"{host}-dead:supervisor-1:{running.pid}": False,  # still running its job
            f"{host}-else:supervisor-1:{finished.pid}": False,  # another machine, same host name
            # a container on this machine sharing its host name: its pids are not ours to look up
            f"{host}-box:supervisor-1:{finished.pid}": False,
            f"other-host-dead:supervisor-1:{finished.pid}": False,
        }
        jobs = {}
        for worker in cases:
            job_id = sample_jobs.noop.options(tries=2).dispatch()  # the lost attempt counts a try
            (reserved,), _ = hz.queue.reserve_many(["default"], 1, worker=worker)
            assert reserved.id == job_id
            jobs[worker] = job_id
        assert recover_orphans(hz, me=f"{host}-me") == 1
        for worker, put_back in cases.items():
            status = redis_client.hget(hz.keys.job(jobs[worker]), "status")
            assert status == ("pending" if put_back else "reserved"), worker
    finally:
        running.kill()
        running.wait()
