"""The worker side of the built-in ``horizon.cli`` and ``horizon.http`` job types, run by a real
worker against real commands and real local servers."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from horizon import builtin_jobs
from tests.helpers import wait_for


@pytest.fixture
def cli_enabled(config_data: dict) -> dict:
    config_data["job_types"] = {"cli": {"enabled": True}}
    return config_data


def finished(hz, job_id: str, timeout: float = 20) -> dict:
    """The job's hash once it is completed or failed for good."""
    key = hz.keys.job(job_id)
    wait_for(lambda: hz.redis.hget(key, "status") in ("completed", "failed"), timeout=timeout,
             message=f"job {job_id} did not finish")  # fmt: skip
    return hz.redis.hgetall(key)


def message(job: dict) -> str:
    return json.loads(job["exception"])["message"]


def cli_job(hz, timeout: float = 30, tries: int = 1, **spec) -> str:
    return builtin_jobs.cli.options(timeout=timeout, tries=tries).dispatch(**spec)


# --- cli ----------------------------------------------------------------------------------------


@pytest.fixture
def sleeps() -> Iterator[list[int]]:
    """Unusual ``sleep`` durations a test's command starts; any still running (alive, not a zombie)
    at the end are killed."""
    seconds = random.sample(range(100000, 999999), 3)
    yield seconds
    for proc in running_sleeps(seconds):
        proc.kill()


def running_sleeps(seconds: list[int]) -> list[psutil.Process]:
    wanted = [["sleep", str(s)] for s in seconds]
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["cmdline"] in wanted and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


@pytest.mark.parametrize("ignore_term", [False, True], ids=["plain", "ignoring-SIGTERM"])
def test_cli_timeout_stops_the_whole_process_group(cli_enabled, hz, procs, sleeps, ignore_term):
    """Before, only the command was killed on the job's timeout: its children and grandchildren
    ran on (and with a command ignoring SIGTERM, everything did)."""
    a, b, c = sleeps
    trap = "trap '' TERM; " if ignore_term else ""
    script = f"{trap}sleep {a} & sh -c 'sleep {b} & sleep {c}' & wait"
    job_id = cli_job(hz, timeout=2, argv=["sh", "-c", script])
    procs.horizon("work")
    wait_for(lambda: len(running_sleeps(sleeps)) == 3, message="the command's processes did not start")
    job = finished(hz, job_id)
    assert job["status"] == "failed" and "timeout" in message(job)
    assert running_sleeps(sleeps) == []  # stopped before the job was recorded as failed


def test_cli_background_process_does_not_hold_the_job(cli_enabled, hz, procs, sleeps):
    """Before, the job waited for EOF on pipes a background process still held: it failed on its
    timeout although the command had exited 0 at once. Now it completes when the command exits,
    and what the command left running in its process group is killed."""
    job_id = cli_job(hz, timeout=20, argv=["sh", "-c", f"sleep {sleeps[0]} & echo started"])
    procs.horizon("work")
    job = finished(hz, job_id, timeout=10)
    assert job["status"] == "completed"
    assert json.loads(job["output"]) == {"exit_code": 0, "stdout": "started\n", "stderr": ""}
    assert float(job["runtime"]) < 5000
    assert running_sleeps(sleeps) == []


def peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM), bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_cli_output_is_read_incrementally_keeping_its_tail(cli_enabled, hz, procs):
    """Before, the whole stdout and stderr were held in the worker's memory (50 MB of output:
    100 MB more at its peak). Now only the last 4 KiB of each are kept."""
    warmup = cli_job(hz, argv=["echo", "warm"])
    worker = procs.horizon("work")
    assert finished(hz, warmup)["status"] == "completed"
    before = peak_rss(worker.pid)
    code = "import sys; sys.stdout.write('x' * 50_000_000 + 'END'); sys.stderr.write('e' * 10_000 + 'ERR')"
    job = finished(hz, cli_job(hz, argv=[sys.executable, "-c", code]), timeout=60)
    assert job["status"] == "completed"
    output = json.loads(job["output"])
    assert output["stdout"] == "…" + "x" * 4093 + "END"
    assert output["stderr"] == "…" + "e" * 4093 + "ERR"
    assert peak_rss(worker.pid) - before < 20 * 2**20


def test_cli_stdin_is_empty(cli_enabled, hz, procs):
    """Before, the command read the worker's stdin: ``cat`` waited for the job's timeout while the
    worker's stdin was an open pipe."""
    job_id = cli_job(hz, timeout=20, argv=["cat"])
    worker = procs.horizon("work", stdin=subprocess.PIPE)
    job = finished(hz, job_id, timeout=10)
    assert job["status"] == "completed" and json.loads(job["output"])["stdout"] == ""
    assert worker.poll() is None


def test_cli_killed_by_a_signal_names_it(cli_enabled, hz, procs):
    job_id = cli_job(hz, argv=["sh", "-c", "echo dying >&2; kill -9 $$"])
    procs.horizon("work")
    job = finished(hz, job_id)
    assert job["status"] == "failed"
    assert message(job) == "sh killed by signal 9 (SIGKILL): dying\n"
