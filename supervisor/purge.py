"""``horizon purge``: forget records of dead masters on this host and stop orphaned horizon processes."""

from __future__ import annotations

import logging
import os
import socket
import time

import psutil

from horizon.context import Horizon
from horizon.repositories.supervisors import MasterRepository, SupervisorRepository

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
    for proc in psutil.process_iter(["pid", "ppid", "create_time"]):
        info = proc.info
        if info["pid"] in known or info["pid"] == me or now - (info["create_time"] or now) < MIN_AGE:
            continue
        if info["ppid"] in known or not horizon_master_like(proc):
            continue
        if info["ppid"] != 1 and psutil.pid_exists(info["ppid"]) and horizon_master_like(psutil.Process(info["ppid"])):
            continue  # a child of another horizon process: its parent is responsible
        if info["ppid"] == 1 or not psutil.pid_exists(info["ppid"]):
            log.warning("terminating orphaned horizon process %s", info["pid"])
            try:
                proc.terminate()
                killed.append(info["pid"])
            except psutil.Error:
                pass
    return killed, forgotten
