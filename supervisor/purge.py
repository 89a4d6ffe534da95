"""``horizon purge``: forget records of dead masters on this host and stop orphaned horizon processes
(supervisors and workers whose master is gone; never a master)."""

from __future__ import annotations

import logging
import os
import socket
import time

import psutil

from horizon.context import Horizon
from horizon.repositories.supervisors import MasterRepository, SupervisorRepository
from supervisor import children

log = logging.getLogger(__name__)

MIN_AGE = 10.0  # seconds: a younger process may not have written its record yet
COMMANDS = ("start", "up")


def horizon_master_like(proc: psutil.Process) -> bool:
    """A process running ``horizon start|up`` (masters, and the supervisors and workers they fork)."""
    try:
        argv = proc.cmdline()
    except psutil.Error:
        return False
    joined = " ".join(argv)
    return ("horizon" in joined) and any(a in COMMANDS for a in argv)


def purge(hz: Horizon) -> tuple[list[int], list[str]]:
    """(pids sent SIGTERM, record names forgotten)."""
    host = socket.gethostname() + "-"
    masters, supervisors = MasterRepository(hz), SupervisorRepository(hz)
    forgotten = []
    live_masters = {}
    for record in masters.records():
        if record["name"].startswith(host) and not psutil.pid_exists(int(record["pid"])):
            masters.forget(record["name"])
            forgotten.append(record["name"])
        else:
            live_masters[record["name"]] = record
    known = {int(r["pid"]) for r in live_masters.values()}
    for record in supervisors.records():
        if record.get("master") not in live_masters and record["name"].startswith(host):
            supervisors.forget(record["name"])
            forgotten.append(record["name"])
            continue
        known.add(int(record["pid"]))
        known.update(int(w["pid"]) for w in record.get("workers", []))
    killed = []
    me, now = os.getpid(), time.time()
    for proc in psutil.process_iter(["pid", "create_time"]):
        info = proc.info
        if info["pid"] in known or info["pid"] == me or now - (info["create_time"] or now) < MIN_AGE:
            continue
        if orphaned(proc):
            log.warning("terminating orphaned horizon process %s", info["pid"])
            try:
                proc.terminate()
                killed.append(info["pid"])
            except psutil.Error:
                pass
    return killed, forgotten


def orphaned(proc: psutil.Process) -> bool:
    """A supervisor or worker forked by a master (known by its kernel name, see
    ``children.fork``) whose parent is no longer the process that forked it: a worker's a
    supervisor, a supervisor's a horizon master. A master itself never is: one whose parent is init
    is what systemd, setsid or nohup runs, and may serve another application's prefix."""
    try:
        comm, parent = proc.name(), proc.parent()
        if comm not in (children.SUPERVISOR_COMM, children.WORKER_COMM):
            return False
        if parent is None:
            return True
        if comm == children.WORKER_COMM:
            return parent.name() != children.SUPERVISOR_COMM
        return parent.name() in (children.SUPERVISOR_COMM, children.WORKER_COMM) or not horizon_master_like(parent)
    except psutil.NoSuchProcess:
        return proc.is_running()  # its parent went away meanwhile
    except psutil.Error:
        return False
