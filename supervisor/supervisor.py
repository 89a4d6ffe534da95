"""A supervisor: the process pools of one configured supervisor, balanced, monitored and reported."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import redis

from horizon import context
from horizon.config import Settings, SupervisorSettings
from horizon.context import Horizon
from horizon.repositories.supervisors import CommandQueue, SupervisorRepository
from supervisor import balancer, children, tuning
from supervisor.leftovers import Leftovers
from supervisor.pool import ProcessPool
from supervisor.process import SharedDeadline, longest_stop, spawn_worker, worker_name
from supervisor.signals import SignalQueue
from supervisor.steps import CALLED_REDIS, LoopSteps

log = logging.getLogger(__name__)


class Supervisor:
    """Runs one supervisor's pools: ``loop()`` is one pass of the steps; ``run()`` repeats it."""

    def __init__(
        self,
        hz: Horizon,
        options: SupervisorSettings,
        *,
        master: str,
        parent_pid: int | None = None,
        signals: SignalQueue | None = None,
        paused: bool = False,
        stop_deadline: SharedDeadline | None = None,
    ) -> None:
        self.hz, self.options, self.master = hz, options, master
        self.name = f"{master}:{options.name}"
        self.parent_pid = parent_pid
        self.signals = signals or SignalQueue()
        self.steps = LoopSteps(log, "supervisor")
        self.control = context.control(hz.settings)  # loop calls that give up fast (see context.control)
        self.records = SupervisorRepository(self.control)
        self.commands = CommandQueue(self.control)
        self.status = "running"
        self.working = True
        self.busiest: dict[str, int] = {}  # pool key -> most workers running a job at once since the last balancing
        self.last_balance = 0.0
        self.last_heartbeat = 0.0
        self.last_measure = 0.0
        self.pools = [self._pool(q) for q in self._pool_queues()]
        self.stop_deadline = stop_deadline  # where the master reads when our last worker will be gone
        self.leftovers: Leftovers | None = None  # set by run(): this process then reaps what workers leave
        if paused:  # started paused (its master is, or a reload carried its pause): no worker starts
            self.status = "paused"
            for pool in self.pools:
                pool.paused = True

    # --- set-up -------------------------------------------------------------------------
    def _pool_queues(self) -> list[list[str]]:
        queues = list(dict.fromkeys(self.options.queue))
        return [queues] if self.options.balance == "false" else [[q] for q in queues]

    def _pool(self, queues: list[str]) -> ProcessPool:
        """A pool whose workers told to stop may finish their job (up to its own timeout) and
        which starts a worker only while the supervisor's live workers are under max_processes."""
        return ProcessPool(
            queues,
            self._spawn,
            stop_timeout=self.options.timeout + tuning.TERMINATE_GRACE,
            longest_stop=longest_stop(self.hz.settings),
            room=self.room,
        )

    def room(self) -> int:
        """How many more workers may start: max_processes less the live ones, those still
        finishing their job after a scale-down, a pause or a restart included (SPEC 6)."""
        return self.options.max_processes - len(self.pids())

    def _spawn(self, queues: list[str]) -> object:
        return spawn_worker(self.hz.settings, self.options, queues, self.name, before=self.signals.close)

    def balance_options(self) -> balancer.BalanceOptions:
        o = self.options
        return balancer.BalanceOptions(
            strategy=o.auto_scaling_strategy,
            min_processes=o.min_processes,
            max_processes=o.max_processes,
            max_shift=o.balance_max_shift,
        )

    def initial_scale(self) -> None:
        o = self.options
        if o.balance == "false":
            self.pools[0].scale(o.max_processes)
            return
        queues = [p.key for p in self.pools]
        if o.balance == "simple":
            counts = balancer.split_evenly(queues, o.max_processes)
        else:
            counts = balancer.initial_processes(queues, self.balance_options())
        for pool in self.pools:
            pool.scale(counts[pool.key])

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> int:
        self.leftovers = Leftovers.start()  # before any worker: what a dead one leaves comes to us
        self.signals.install()
        children.release_signals()  # forked by the master: what it sent meanwhile is handled now
        self.handle_signals(time.time())  # ... before any worker starts (a pause sent meanwhile)
        self.initial_scale()
        self.persist(force=True)
        while not self.finished():
            self.signals.wait(tuning.LOOP_INTERVAL)
            self.loop()
        if self.leftovers is not None:
            self.leftovers.close()
        self.records.forget(self.name)
        self.commands.flush(self.name)
        return 0

    def loop(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        step = self.steps.run
        step("parent", self.ensure_parent_is_running)
        step("signals", lambda: self.handle_signals(now))
        step("commands", lambda: self.handle_commands(now), always_calls_redis=True)
        step("balance", lambda: self.auto_scale(now))
        step("reap", lambda: self.reap(now))  # dead workers are replaced even while Redis is away
        step("leftovers", self.tend_leftovers)
        step("monitor", lambda: self.monitor(now))
        step("heartbeat", lambda: self.persist(now) and CALLED_REDIS)

    def finished(self) -> bool:
        return not self.working and not any(p.all() for p in self.pools)

    def ensure_parent_is_running(self) -> None:
        if self.working and self.parent_pid and os.getppid() != self.parent_pid:
            log.warning("master %s is gone; terminating", self.parent_pid)
            self.terminate()

    def handle_signals(self, now: float) -> None:
        for verb in self.signals.drain():
            self.dispatch(verb, {}, now)

    def handle_commands(self, now: float) -> None:
        for command, options in self.commands.pending(self.name):
            self.dispatch(command, options, now)

    def dispatch(self, verb: str, options: dict, now: float) -> None:
        actions: dict[str, Callable[[], None]] = {
            "terminate": self.terminate,
            "pause": self.pause,
            "continue": self.resume,
            "restart": self.restart,
        }
        if verb in actions:
            log.info("%s", verb)
            actions[verb]()
        elif verb != "child":
            log.warning("unknown command %r", verb)

    def auto_scale(self, now: float) -> None:
        o = self.options
        if not self.working or o.balance != "auto":
            return
        self.note_running()
        if now - self.last_balance < o.balance_cooldown:
            return
        self.last_balance = now
        running, self.busiest = self.busiest, {}
        lengths = self.records.queue_loads([p.key for p in self.pools])
        loads = {
            p.key: balancer.QueueLoad(
                length=lengths[p.key][0],
                runtime_ms=lengths[p.key][1],
                processes=p.target,
                running=running.get(p.key, 0),
            )
            for p in self.pools
        }
        targets = balancer.balance(loads, self.balance_options())
        for pool in self.pools:
            if targets[pool.key] != pool.target:
                log.info("scaling %s from %d to %d", pool.key, pool.target, targets[pool.key])
                pool.scale(targets[pool.key], now)

    def note_running(self) -> None:
        """Keep, per pool, the most workers seen running a job at once since the last balancing
        step (read from their shared memory every loop, no Redis): the jobs a pool works on count
        as its load, not only those waiting in its list (see balancer)."""
        for pool in self.pools:
            running = sum(1 for proc in pool.all() if proc.status() == "processing")
            self.busiest[pool.key] = max(self.busiest.get(pool.key, 0), running)

    def reap(self, now: float) -> None:
        for pool in self.pools:
            for proc in pool.all():
                if (code := children.reap(proc.pid)) is not None:
                    pool.exited(proc.pid, code, now)
                    if proc.last_group and self.leftovers is not None:  # before its job is put back
                        self.leftovers.worker_died(worker_name(self.name, proc.pid), proc.last_group, self.pids())
                    running = proc.last_state[2] if proc.last_state else None
                    if code != 0 or running:  # exit 0 mid-job: a job's os._exit(0), not a recycle
                        self.recover(proc.pid, proc.queues, code, running, overran=proc.overran)

    def pids(self) -> set[int]:
        return {proc.pid for pool in self.pools for proc in pool.all()}

    def tend_leftovers(self) -> None:
        """Stop dead workers' commands (see leftovers.py); reap what is re-parented to us and exited,
        but neither a worker nor a command a worker that is not yet reaped reported (its group is
        to be stopped once we reap that worker)."""
        if self.leftovers is None:
            return
        workers = [proc for pool in self.pools for proc in pool.all()]
        keep = {proc.pid for proc in workers} | {proc.shared.group() for proc in workers}
        self.leftovers.tend(keep)

    def recover(self, pid: int, queues: list[str], code: int, running: str | None, overran: bool = False) -> None:
        """A worker died without putting back what it held (a clean exit does): its jobs go back
        now, not when their reservation windows end. ``running`` is the job it was running ('' none,
        None unknown): only that attempt counts a try; the jobs it had not started (or had run but
        not yet acknowledged) are released."""
        worker = worker_name(self.name, pid)
        try:
            recovered = self.control.queue.recover_worker(worker, queues, running=running, overran=overran)
        except redis.RedisError as exc:  # Redis away or refusing: the reservation windows still apply
            log.warning("could not put back what worker %s held (%s); its reservations will expire", pid, exc)
            return
        if recovered:
            log.warning("worker %s died (exit %s) holding %d job(s); put them back", pid, code, recovered)

    def monitor(self, now: float) -> None:
        for pool in self.pools:
            pool.monitor(now)
        if not self.working:
            self.publish_stop(now)

    def publish_stop(self, now: float) -> None:
        """Tell the master (SharedDeadline) when the last of our stopping workers will be gone at
        the latest (time.monotonic()): it waits that long for us, not just our own timeout."""
        if self.stop_deadline is None:
            return
        clock = time.monotonic()
        last = max((pool.last_stop(now, clock) for pool in self.pools), default=0.0)
        self.stop_deadline.write(clock + last - now if last else 0.0)

    def persist(self, now: float | None = None, force: bool = False) -> bool:
        """Write the heartbeat record when it is due (or ``force``); True when it was written."""
        now = time.time() if now is None else now
        if not force and now - self.last_heartbeat < tuning.HEARTBEAT_INTERVAL:
            return False
        self.last_heartbeat = now
        if now - self.last_measure >= tuning.MEMORY_INTERVAL:
            self.last_measure = now
            for pool in self.pools:
                for proc in pool.all():
                    proc.measure()
        self.records.update(self.record(), ttl=tuning.RECORD_TTL)
        return True

    def record(self) -> dict:
        connection = self.options.connection
        return {
            "name": self.name,
            "master": self.master,
            "pid": os.getpid(),
            "status": self.status,
            "processes": {f"{connection}:{p.key}": p.size() for p in self.pools},
            "options": self.options_record(),
            # with the ones finishing their job after a pause, a scale-down or a restart ('terminating')
            "workers": [proc.record() for pool in self.pools for proc in pool.all()],
        }

    def options_record(self) -> dict:
        """The options under Horizon's names (camelCase, as its SupervisorOptions::toArray), numbers as numbers."""
        o = self.options
        return {
            "name": self.name,
            "connection": o.connection,
            "queue": ",".join(o.queue),
            "balance": o.balance,
            "autoScalingStrategy": o.auto_scaling_strategy,
            "minProcesses": o.min_processes,
            "maxProcesses": o.max_processes,
            "balanceMaxShift": o.balance_max_shift,
            "balanceCooldown": o.balance_cooldown,
            "maxTries": o.tries,
            "timeout": o.timeout,
            "backoff": list(o.backoff),
            "memory": o.memory,
            "maxJobs": o.max_jobs,
            "maxTime": o.max_time,
            "nice": o.nice,
            "sleep": o.sleep,
            "rest": o.rest,
            "force": o.force,
            "environment": self.hz.settings.environment,
        }

    # --- verbs ----------------------------------------------------------------------------
    def pause(self) -> None:
        if self.working:
            self.status = "paused"
            for pool in self.pools:
                pool.pause()
            self.persist(force=True)

    def resume(self) -> None:
        if self.working:
            self.status = "running"
            for pool in self.pools:
                pool.resume()
            self.persist(force=True)

    def restart(self) -> None:
        if self.working:
            for pool in self.pools:
                pool.restart()

    def terminate(self) -> None:
        if not self.working:
            return
        self.working = False
        self.status = "terminating"
        now = time.time()
        for pool in self.pools:
            pool.terminate(now)
        self.publish_stop(now)


def run_supervisor(
    settings: Settings,
    options: SupervisorSettings,
    master: str,
    parent_pid: int,
    paused: bool = False,
    stop_deadline: SharedDeadline | None = None,
) -> int:
    """Entry point of a forked supervisor process: fresh connection, own signals (INT ignored), run.
    ``stop_deadline``: the master's mapping where it reads how long to wait for us once we stop."""
    import signal

    from horizon import context
    from horizon.logs import set_process_name
    from supervisor.signals import NAMES

    hz = context.after_fork(settings)
    set_process_name(f"{master}:{options.name}")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signals = SignalQueue({s: v for s, v in NAMES.items() if s != signal.SIGINT})
    return Supervisor(
        hz, options, master=master, parent_pid=parent_pid, signals=signals, paused=paused, stop_deadline=stop_deadline
    ).run()
