"""Jobs held by the workers of a master that died on this machine: put back at once.

A master killed outright (SIGKILL, the OOM killer, a crash) takes its supervisors and workers
with it, and nobody is left to put back what they held: the jobs wait out their reservations
(timeout plus margin: minutes for long jobs). A master on the same machine, at its start (systemd
starting a new one) and every few seconds after, can tell for sure that those processes are
gone: the dead master's record (it lasts RECORD_TTL after its last heartbeat) names this host
and this boot, its pid runs no horizon master any more, and the pid at the end of each worker
name runs no horizon process either (a worker finishing its job after its master died does). Only
then are that worker's reservations put back, as expired ones are (``recover_worker``, "died").
A master on another machine, even one with the same host name, is never judged: its boot id
differs. Nor is one in another PID namespace of this machine (a container sharing the host's
name, e.g. Docker's ``--network host``): its pids mean nothing here, so its record names its
namespace too. Workers not started by a master (``horizon work``) carry no master in their name and are
left to their reservations' deadlines.
"""

from __future__ import annotations

import logging
import os
import socket
from functools import cache

import psutil

from horizon.context import Horizon
from horizon.repositories.queues import QueueRepository
from horizon.repositories.supervisors import MasterRepository
from supervisor.purge import horizon_master_like

log = logging.getLogger(__name__)

BOOT_ID = "/proc/sys/kernel/random/boot_id"
PID_NAMESPACE = "/proc/self/ns/pid"
SCAN_LIMIT = 1000  # reservations read per queue and pass


@cache
def boot_id() -> str:
    """This machine's current boot (Linux); '' where unknown (nothing is then judged dead)."""
    try:
        with open(BOOT_ID) as f:
            return f.read().strip()
    except OSError:
        return ""


@cache
def pid_namespace() -> str:
    """This process's PID namespace (Linux, e.g. ``pid:[4026531836]``); '' where unknown."""
    try:
        return os.readlink(PID_NAMESPACE)
    except OSError:
        return ""


def dead_local_masters(hz: Horizon, me: str) -> set[str]:
    """Names of master records of this host, boot and PID namespace whose process is gone (``me``
    excepted). A record without a namespace (an older version's) is not judged."""
    booted, namespace = boot_id(), pid_namespace()
    if not booted or not namespace:
        return set()
    host = socket.gethostname() + "-"
    dead = set()
    for record in MasterRepository(hz).records():
        name = record.get("name", "")
        if name == me or not name.startswith(host) or record.get("boot_id") != booted:
            continue
        if record.get("pid_namespace") != namespace:  # another container's pids: not ours to look up
            continue
        try:
            alive = horizon_master_like(psutil.Process(int(record["pid"])))
        except (psutil.Error, KeyError, ValueError):
            alive = False
        if not alive:
            dead.add(name)
    return dead


def _worker_gone(worker: str) -> bool:
    """Whether the worker named ``<master>:<supervisor>:<pid>`` no longer runs: its pid is gone or
    runs something other than horizon. (A pid reused by another horizon process counts as alive:
    its jobs then wait for their deadlines, which is safe. No clock is compared: Redis's may differ.)"""
    try:
        return not horizon_master_like(psutil.Process(int(worker.rsplit(":", 1)[1])))
    except (psutil.NoSuchProcess, ValueError, IndexError):
        return True


def recover_orphans(hz: Horizon, me: str) -> int:
    """Put back the reservations of dead local masters' workers; returns how many."""
    dead = dead_local_masters(hz, me)
    if not dead:
        return 0
    queues = QueueRepository(hz)
    recovered = 0
    for queue in queues.names():
        for worker in queues.holders(queue, SCAN_LIMIT):
            if worker.split(":", 1)[0] in dead and _worker_gone(worker):
                recovered += hz.queue.recover_worker(worker, [queue], running=None)
    if recovered:
        log.warning("put back %d job(s) held by the workers of dead master(s) %s", recovered, ", ".join(sorted(dead)))
    return recovered
