"""The master supervisor: one per host; runs the environment's supervisors and the maintenance tasks."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import socket
import string
import sys
import time
from dataclasses import dataclass, field

import psutil
import redis

from horizon import context
from horizon.config import SupervisorSettings
from horizon.context import Horizon
from horizon.repositories.supervisors import CommandQueue, MasterRepository, SupervisorRepository
from supervisor import children, tuning
from supervisor.maintenance import Maintenance
from supervisor.notify import Notifier
from supervisor.orphans import boot_id, pid_namespace, recover_orphans
from supervisor.process import SharedDeadline, longest_stop
from supervisor.reload import ReloadCheck, command_line
from supervisor.signals import SignalQueue
from supervisor.steps import CALLED_REDIS, LoopSteps
from supervisor.supervisor import run_supervisor

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_MEMORY = 12  # the master went over memory_limit (as Horizon); systemd restarts it
MEMORY_CHECK = float(os.environ.get("HORIZON_MASTER_MEMORY_INTERVAL", "5"))  # seconds between own checks
SIGNALS = {"pause": signal.SIGUSR2, "continue": signal.SIGCONT, "restart": signal.SIGHUP}


def master_name() -> str:
    suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=4))
    return f"{socket.gethostname()}-{suffix}"


PAUSES_ENV = "HORIZON_RELOAD_PAUSES"  # set by a reload's exec: what was paused (Master.pauses)


def _carried_pauses() -> dict:
    """What a reload's exec says was paused (and forget it: not for this run's own children)."""
    text = os.environ.pop(PAUSES_ENV, "")
    try:
        carried = json.loads(text) if text else {}
    except ValueError:
        carried = {}
    return carried if isinstance(carried, dict) else {}


@dataclass
class SupervisorProcess:
    """A supervisor child as the master sees it."""

    options: SupervisorSettings
    pid: int
    started_at: float
    cooldown: float = 0.0
    restart_at: float = 0.0
    # when its last worker will be gone once it stops (time.monotonic(), 0 unknown): written by it
    stop_deadline: SharedDeadline = field(default_factory=SharedDeadline)


class MasterSupervisor:
    """Forks one child per configured supervisor and keeps them alive; ``loop()`` is one pass."""

    def __init__(
        self, hz: Horizon, *, name: str | None = None, notifier: Notifier | None = None, reexec: bool = False
    ) -> None:
        self.hz = hz
        self.reexec = reexec  # restart = stop gracefully, then exec this command again (new code)
        self.restarting = False
        self.name = name or master_name()
        self.signals = SignalQueue()
        self.steps = LoopSteps(log, "master")
        self.notifier = notifier or Notifier()
        control = context.control(hz.settings)  # loop calls that give up fast (see context.control)
        self.masters = MasterRepository(control)
        self.supervisor_records = SupervisorRepository(control)
        self.commands = CommandQueue(control)
        self.maintenance = Maintenance(hz, self.name).add_defaults()
        self.maintenance.add("orphans", tuning.ORPHAN_INTERVAL, lambda: recover_orphans(hz, self.name), locked=False)
        self.supervisors: dict[str, SupervisorProcess] = {}
        self.status = "running"
        self.working = True
        self.exit_code = EXIT_OK
        self.last_heartbeat = 0.0
        self.last_memory_check = 0.0
        self.deadline: float | None = None  # once terminated: the wait for a supervisor that says nothing...
        self.hard_deadline: float | None = None  # ... and for one that says it waits for a job (the bound)
        self.reload_check: ReloadCheck | None = None  # a reload waiting for its check (see restart)
        # what was paused when a reload exec'd this run (the pauses outlive a reload, see exec_again)
        self.carried = _carried_pauses()
        if self.carried.get("master"):
            self.status = "paused"
        # supervisors of the run before a reload that were still finishing their jobs when it exec'd
        # (fast_termination): still our children, reaped here when they exit (no zombies)
        self.strays = {pid for pid in self.carried.pop("strays", ()) if isinstance(pid, int) and pid > 0}

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> int:
        self.signals.install()
        children.release_signals()  # held across a restart's exec (exec_again): handled now
        self.start_supervisors()
        self.persist(force=True)
        self.steps.run("orphans", lambda: recover_orphans(self.hz, self.name))  # a predecessor killed outright
        self.maintenance.start()
        self.notifier.ready(f"master {self.name}")
        log.info("master %s running %d supervisor(s)", self.name, len(self.supervisors))
        try:
            while not self.finished():
                self.signals.wait(tuning.LOOP_INTERVAL)
                self.loop()
        finally:
            self.maintenance.stop()
            self.masters.forget(self.name)
            self.commands.flush(self.name)
            log.info("master %s stopped", self.name)
        if self.restarting:
            self.exec_again()
        return self.exit_code

    def exec_again(self) -> None:
        """Replace this process with a fresh run of the same command (same pid; new code). The
        signals an operator sends stay blocked across the exec, until the new run has its handlers
        (before, a TERM or a second HUP while the new interpreter started killed the master); a
        TERM that came since the loop ended stops the master here instead."""
        signal.pthread_sigmask(signal.SIG_BLOCK, children.FORWARDED)
        self.handle_signals()  # a TERM since the loop ended cancels the restart (see terminate)
        if not self.restarting:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, children.FORWARDED)
            return
        self.carried["strays"] = sorted(self.strays | {c.pid for c in self.supervisors.values() if c.pid})
        argv = command_line()
        log.info("restarting: exec %s", " ".join(argv))
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, argv, {**os.environ, PAUSES_ENV: json.dumps(self.carried)})

    def loop(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        step = self.steps.run
        step("signals", self.handle_signals)
        step("commands", self.handle_commands, always_calls_redis=True)
        step("reload", self.finish_reload)
        step("reap", lambda: self.reap(now))
        step("monitor", lambda: self.monitor(now))
        step("memory", lambda: self.check_memory(now))
        step("heartbeat", lambda: self.persist(now) and CALLED_REDIS)
        step("watchdog", self.notifier.watchdog)  # the master is alive even while Redis is not

    def finished(self) -> bool:
        """Terminated and every supervisor gone (fast_termination: do not wait for them)."""
        return not self.working and (not self.supervisors or self.hz.settings.fast_termination)

    def handle_signals(self) -> None:
        for verb in self.signals.drain():
            self.dispatch(verb)

    def handle_commands(self) -> None:
        for command, _options in self.commands.pending(self.name):
            self.dispatch(command)

    def dispatch(self, verb: str) -> None:
        actions = {"terminate": self.terminate, "pause": self.pause, "continue": self.resume, "restart": self.restart}
        if verb in actions:
            log.info("%s", verb)
            actions[verb]()
        elif verb != "child":
            log.warning("unknown command %r", verb)

    def reap(self, now: float) -> None:
        """Collect exited supervisors (only ours: under ``horizon up`` Redis and web are children too)."""
        for child in list(self.supervisors.values()):
            if child.pid and (status := children.reap(child.pid)) is not None:
                self.supervisor_exited(child.pid, status, now)
        for pid in list(self.strays):
            if children.reap(pid) is not None:
                self.strays.discard(pid)

    def supervisor_exited(self, pid: int, code: int, now: float) -> None:
        for name, child in list(self.supervisors.items()):
            if child.pid != pid:
                continue
            if not self.working:
                del self.supervisors[name]
                self.supervisor_records.forget(f"{self.name}:{name}")
                return
            log.warning("supervisor %s (%s) exited with %s; restarting it", name, pid, code)
            child.cooldown = tuning.restart_cooldown(child.cooldown, now - child.started_at)
            child.pid, child.restart_at = 0, now + child.cooldown
            return

    def monitor(self, now: float) -> None:
        if not self.working:
            clock = time.monotonic()
            for name, child in self.supervisors.items():
                if child.pid and now > self.stop_deadline(child, now, clock):
                    log.warning("supervisor %s (%s) is still running past its stop deadline; killing it",
                                name, child.pid)
                    children.signal_quietly(child.pid, signal.SIGKILL)
            return
        for child in self.supervisors.values():
            if child.pid == 0 and now >= child.restart_at:
                child.pid = self.fork_supervisor(child.options, stop_deadline=child.stop_deadline)
                child.started_at = now

    def stop_deadline(self, child: SupervisorProcess, now: float, clock: float) -> float:
        """When (``now``'s clock) a terminated supervisor still running is killed: at our own
        deadline, or TERMINATE_GRACE after the time it says its last worker will be gone (a job that
        runs up to its own timeout), whichever is later; never past the hard deadline."""
        if self.deadline is None or self.hard_deadline is None:
            return math.inf
        said = child.stop_deadline.read()
        deadline = max(self.deadline, now + said - clock + tuning.TERMINATE_GRACE) if said else self.deadline
        return min(deadline, self.hard_deadline)

    def check_memory(self, now: float) -> None:
        if now - self.last_memory_check < MEMORY_CHECK:
            return
        self.last_memory_check = now
        # USS: pages shared copy-on-write with the supervisors and workers (the imports) do not count
        uss, limit = psutil.Process().memory_full_info().uss / 2**20, self.hz.settings.memory_limit
        if uss > limit:
            log.error("master memory %.1f MB is over memory_limit %d MB; terminating", uss, limit)
            self.exit_code = EXIT_MEMORY
            self.terminate()

    def persist(self, now: float | None = None, force: bool = False) -> bool:
        """Write the heartbeat record when it is due (or ``force``); True when it was written."""
        now = time.time() if now is None else now
        if not self.working or (not force and now - self.last_heartbeat < tuning.HEARTBEAT_INTERVAL):
            return False
        self.last_heartbeat = now
        self.masters.update(self.record(), ttl=tuning.RECORD_TTL)
        return True

    def record(self) -> dict:
        return {
            "name": self.name,
            "environment": self.hz.settings.environment,
            "pid": os.getpid(),
            "status": self.status,
            "boot_id": boot_id(),  # with the host name: which machine and boot (see orphans.py)
            "pid_namespace": pid_namespace(),  # ... and which of its PID namespaces (containers)
        }

    # --- supervisors ----------------------------------------------------------------------
    def start_supervisors(self) -> None:
        now = time.time()
        carried = set(self.carried.get("supervisors", ()))
        for options in self.hz.settings.supervisors:
            deadline = SharedDeadline()
            pid = self.fork_supervisor(options, paused=options.name in carried, stop_deadline=deadline)
            self.supervisors[options.name] = SupervisorProcess(options, pid, now, stop_deadline=deadline)

    def pauses(self) -> dict:
        """What is paused now (the master, and which of its supervisors), for a reload to carry over."""
        prefix = f"{self.name}:"
        try:
            records = self.supervisor_records.records()
        except redis.RedisError as exc:  # the master's own pause is known without Redis
            log.warning("reload: cannot read which supervisors are paused (%s); their pauses end", exc)
            records = []
        paused = [record["name"][len(prefix):] for record in records
                  if record.get("name", "").startswith(prefix) and record.get("status") == "paused"]
        return {"master": self.status == "paused", "supervisors": paused}

    def fork_supervisor(
        self, options: SupervisorSettings, paused: bool = False, stop_deadline: SharedDeadline | None = None
    ) -> int:
        """Fork a supervisor; it starts paused (no worker) when the master is or ``paused``. It
        writes in ``stop_deadline`` how long to wait for it once it stops (see stop_deadline)."""
        parent = os.getpid()
        settings = self.hz.settings
        paused = paused or self.status == "paused"
        if stop_deadline is not None:
            stop_deadline.write(0.0)  # what a previous run of it said is void
        return children.fork(
            lambda: run_supervisor(settings, options, self.name, parent, paused, stop_deadline),
            before=self.signals.close,
            comm=children.SUPERVISOR_COMM,
        )

    def _signal_supervisors(self, signum: int) -> None:
        for child in self.supervisors.values():
            if child.pid:
                children.signal_quietly(child.pid, signum)

    # --- verbs ----------------------------------------------------------------------------
    def pause(self) -> None:
        if self.working:
            self.status = "paused"
            self._signal_supervisors(SIGNALS["pause"])
            self.persist(force=True)

    def resume(self) -> None:
        if self.working:
            self.status = "running"
            self._signal_supervisors(SIGNALS["continue"])
            self.persist(force=True)

    def restart(self) -> None:
        """Fresh workers: the supervisors replace theirs, or (reexec) the whole master is run again,
        once a check in a child says the new run can start (supervisor/reload.py)."""
        if not self.working:
            return
        if not self.reexec:
            self._signal_supervisors(SIGNALS["restart"])
        elif self.reload_check is not None:
            log.info("reload: a check of the configuration is already running")
        else:
            log.info("reload: checking the configuration and job modules before stopping anything")
            self.reload_check = ReloadCheck.start(time.monotonic())

    def finish_reload(self) -> None:
        """The reload's check has ended: run again if it passed, else go on as before and say why."""
        check = self.reload_check
        result = check.result(time.monotonic()) if check is not None else None
        if result is None:
            return
        self.reload_check = None
        passed, output = result
        if not self.working:
            return
        if not passed:
            log.error("reload refused: the new configuration or job modules cannot start; the master goes on "
                      "with its running ones. The check said:\n%s", output)
            return
        self.notifier.send("RELOADING=1")
        self.carried = self.pauses()  # before terminate(): its status is 'terminating'
        self.restarting = True
        self.terminate(notify=False)

    def terminate(self, notify: bool = True) -> None:
        if not self.working:
            if notify and self.restarting:  # told to stop while restarting: stop, do not run again
                log.info("terminate requested while restarting: not restarting")
                self.restarting = False
                self.notifier.stopping()
            return
        if notify:
            self.notifier.stopping()
        if self.reload_check is not None:  # stopping: no reload to check any more
            self.reload_check.cancel()
            self.reload_check = None
        self.working = False
        self.status = "terminating"
        self.masters.forget(self.name)
        longest = max((c.options.timeout for c in self.supervisors.values()), default=0)
        now = time.time()
        self.deadline = now + longest + 2 * tuning.TERMINATE_GRACE
        self.hard_deadline = now + longest_stop(self.hz.settings) + 2 * tuning.TERMINATE_GRACE
        for name, child in list(self.supervisors.items()):
            if child.pid:
                children.signal_quietly(child.pid, signal.SIGTERM)
            else:
                del self.supervisors[name]
