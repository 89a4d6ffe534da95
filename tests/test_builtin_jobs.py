"""The worker side of the built-in ``horizon.cli`` and ``horizon.http`` job types, run by a real
worker against real commands and real local servers."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

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


# --- cli: a worker killed outright ----------------------------------------------------------------

FAST_SUPERVISION = {"HORIZON_LOOP_INTERVAL": "0.1", "HORIZON_HEARTBEAT_INTERVAL": "0.2",
                    "HORIZON_RESTART_COOLDOWN": "0.2"}


def start_supervised(procs, log: Path) -> subprocess.Popen:
    """``horizon start`` (a master, its supervisor and two workers), its log in ``log``."""
    procs.env = {**procs.env, **FAST_SUPERVISION}
    with open(log, "wb") as stderr:
        return procs.horizon("start", stderr=stderr)


def recording(script: str, path: Path, then: str = "") -> list[str]:
    """A cli argv running ``script`` (which sets $pids), writing "$PPID $$ $pids" (the worker, the
    command, what it started) to ``path`` at once, in full, then running ``then``."""
    return ["sh", "-c", f'{script}; echo "$PPID $$ $pids" > {path}.part; mv {path}.part {path}; {then or ":"}']


def recorded(path: Path) -> list[psutil.Process]:
    """The processes a ``recording`` command wrote down (waited for): worker, command, its processes."""
    text = wait_for(lambda: path.exists() and path.read_text(), timeout=20, message="the command did not start")
    return [psutil.Process(int(pid)) for pid in text.split()]


def running(proc: psutil.Process) -> bool:
    """Still there: running, or exited but not reaped (a zombie counts as there)."""
    return proc.is_running()


def stop_master(master: subprocess.Popen) -> None:
    master.send_signal(signal.SIGTERM)
    assert master.wait(20) == 0


def test_cli_command_of_a_worker_killed_outright_is_stopped_by_its_supervisor(
    cli_enabled, hz, procs, sleeps, tmp_path
):
    """Before, SIGKILL to a worker running a cli job left the command and all it had started
    running (orphaned to init), while the job was put back and could run again. Now the
    supervisor stops the command's process group (SIGTERM, then SIGKILL: one of them ignores
    SIGTERM) and reaps what comes to it: none of the processes is left, not even as a zombie."""
    a, b, _ = sleeps
    master = start_supervised(procs, tmp_path / "master.log")
    pids = tmp_path / "pids"
    script = f"sleep {a} & pids=$!; sh -c 'trap \"\" TERM; exec sleep {b}' & pids=\"$pids $!\""
    job_id = cli_job(hz, timeout=60, argv=recording(script, pids, then="wait"))
    worker, *command = recorded(pids)
    assert len(command) == 3 and all(running(proc) for proc in command)
    supervisor = worker.parent()
    os.kill(worker.pid, signal.SIGKILL)
    wait_for(lambda: not any(running(proc) for proc in command), timeout=15,
             message=f"left running: {[proc.pid for proc in command if running(proc)]}")  # fmt: skip
    assert finished(hz, job_id)["status"] == "failed"  # one try: lost with its worker, not run again
    assert supervisor.is_running() and master.poll() is None
    stop_master(master)
    log = (tmp_path / "master.log").read_text()
    stopped = re.search(rf"\[([^\]]+:supervisor-1)\] supervisor.leftovers: worker \1:{worker.pid} died while its "
                        rf"job ran a command: stopping the command's process group {command[0].pid} \((.*)\)", log)
    assert stopped and f"sh {command[0].pid}" in stopped[2], log
    killed = rf"process group {command[0].pid} outlived its SIGTERM: SIGKILL to sleep {command[2].pid}"
    assert re.search(killed, log), log


def test_cli_cleanup_after_a_killed_worker_spares_live_workers_and_what_left_its_group(
    cli_enabled, hz, procs, sleeps, tmp_path
):
    """Only the dead worker's command group is stopped: the other worker's command, still running,
    finishes its job as usual, and a process an earlier job left running on purpose (setsid, out
    of its group) runs on; once it exits, the supervisor it was re-parented to reaps it."""
    a, b, c = sleeps
    master = start_supervised(procs, tmp_path / "master.log")
    left = tmp_path / "left"  # written by the process once out of the group: the job ends after
    escape = f"setsid sh -c 'echo $$ > {left}.part; mv {left}.part {left}; exec sleep {c}' >/dev/null 2>&1 &"
    job_id = cli_job(hz, argv=["sh", "-c", f"{escape} while [ ! -e {left} ]; do sleep 0.05; done"])
    assert finished(hz, job_id)["status"] == "completed"
    escaped = psutil.Process(int(left.read_text()))
    assert escaped.is_running() and os.getsid(escaped.pid) == escaped.pid
    doomed, live, go = tmp_path / "doomed", tmp_path / "live", tmp_path / "go"
    try:
        cli_job(hz, timeout=60, argv=recording(f"sleep {a} & pids=$!", doomed, then="wait"))
        until_go = f"while [ ! -e {go} ]; do sleep 0.1; done; echo done"
        live_job = cli_job(hz, timeout=60, argv=recording(f"sleep {b} & pids=$!", live, then=until_go))
        dead_worker, *dead_command = recorded(doomed)
        live_worker, *live_command = recorded(live)
        assert dead_worker.pid != live_worker.pid
        os.kill(dead_worker.pid, signal.SIGKILL)
        wait_for(lambda: not any(running(proc) for proc in dead_command), timeout=15,
                 message=f"left running: {[proc.pid for proc in dead_command if running(proc)]}")  # fmt: skip
        assert all(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE for proc in live_command)
        assert escaped.is_running() and escaped.status() != psutil.STATUS_ZOMBIE
    finally:
        go.touch()  # the live command ends
    job = finished(hz, live_job)
    assert job["status"] == "completed" and json.loads(job["output"])["stdout"] == "done\n"
    supervisor = live_worker.parent()
    assert escaped.ppid() == supervisor.pid  # re-parented to the supervisor when its shell exited
    escaped.terminate()
    wait_for(lambda: not running(escaped), timeout=10, message="the exited process was not reaped")
    stop_master(master)


def test_cli_command_of_an_unsupervised_worker_killed_outright_gets_sigterm(cli_enabled, hz, procs, sleeps):
    """Before, ``horizon work`` killed with SIGKILL left its cli command running. Now the kernel
    sends the command SIGTERM when its worker dies (its parent-death signal; what the command
    started is not reached without a supervisor)."""
    cli_job(hz, timeout=60, argv=["sleep", str(sleeps[0])])
    worker = procs.horizon("work")
    (command,) = wait_for(lambda: running_sleeps(sleeps), timeout=20, message="the command did not start")
    assert command.ppid() == worker.pid
    worker.kill()
    worker.wait(10)
    wait_for(lambda: running_sleeps(sleeps) == [], timeout=10, message="the command runs on")


# --- http ---------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/ok":
            self.answer(200, b"hello")
        elif url.path == "/redirect":
            self.answer(int(query.get("code", 302)), b"moved", ("Location", query["to"]))
        elif url.path == "/headers":  # the credentials it was sent
            seen = {name: self.headers.get(name) for name in ("Authorization", "Cookie")}
            self.answer(200, json.dumps(seen).encode())
        elif url.path == "/loop":
            self.answer(302, b"", ("Location", f"/loop?n={int(query.get('n', 0)) + 1}"))
        elif url.path == "/drip-body":  # the headers at once, then a byte every 0.2 s
            self.drip(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", 0, b"d" * 1000)
        elif url.path == "/drip-headers":  # the status line, then the headers a byte every 0.2 s
            self.drip(b"HTTP/1.1 200 OK\r\n", 0.2, b"X-Slow: " + b"s" * 1000 + b"\r\n\r\n")

    def answer(self, code: int, body: bytes, *headers: tuple[str, str]) -> None:
        self.send_response(code)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def drip(self, start: bytes, pause: float, rest: bytes) -> None:
        self.close_connection = True
        try:
            self.wfile.write(start)
            self.wfile.flush()
            for i in range(len(rest)):
                time.sleep(0.2)
                self.wfile.write(rest[i : i + 1])
                self.wfile.flush()
        except OSError:  # the client gave up
            pass

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def ftp_sink() -> Iterator[tuple[int, list]]:
    """A TCP listener standing for an FTP server: (its port, the connections it accepted)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1], accepted
    listener.close()
    for conn in accepted:
        conn.close()


def http_job(hz, job_timeout: float = 30, tries: int = 1, **spec) -> str:
    return builtin_jobs.http.options(timeout=job_timeout, tries=tries).dispatch(**spec)


def test_http_follows_redirects_to_http_only(hz, procs, http_server, ftp_sink):
    """Before, a redirect to ftp:// was followed (the worker logged in to the FTP server), and one
    to file:// failed as 'answered 302: ' without saying why."""
    ftp_port, ftp_connections = ftp_sink
    ok = http_job(hz, url=f"{http_server}/redirect?to=/redirect%3Fto%3D/ok")
    ftp = http_job(hz, url=f"{http_server}/redirect?to=ftp://127.0.0.1:{ftp_port}/secret.txt")
    local = http_job(hz, url=f"{http_server}/redirect?to=file:///etc/passwd&code=301")
    loop = http_job(hz, url=f"{http_server}/loop")
    procs.horizon("work")
    job = finished(hz, ok)
    assert job["status"] == "completed" and json.loads(job["output"]) == {"status": 200, "body": "hello"}
    job = finished(hz, ftp)
    assert job["status"] == "failed"
    assert message(job) == (
        f"GET {http_server}/redirect?to=ftp://127.0.0.1:{ftp_port}/secret.txt answered 302 redirecting to "
        f"ftp://127.0.0.1:{ftp_port}/secret.txt: refused, only http:// and https:// redirects are followed, not ftp://"
    )
    assert ftp_connections == []
    job = finished(hz, local)
    assert job["status"] == "failed" and "answered 301 redirecting to file:///etc/passwd" in message(job)
    assert message(job).endswith("not file://")
    job = finished(hz, loop)
    assert job["status"] == "failed"
    assert message(job) == (
        f"GET {http_server}/loop?n=10 answered 302 redirecting to {http_server}/loop?n=11: "
        "refused, more than 10 redirects"
    )


def test_http_redirect_to_another_host_drops_the_credentials(hz, procs, http_server):
    """urllib forwarded Authorization and Cookie to wherever a redirect pointed: a server could
    send the job's credentials to another host. Now only a redirect within the origin keeps them."""
    credentials = {"Authorization": "Bearer s3cret", "Cookie": "session=abc"}
    other_host = http_server.replace("127.0.0.1", "localhost")
    same = http_job(hz, url=f"{http_server}/redirect?to=/headers", headers=credentials)
    other = http_job(hz, url=f"{http_server}/redirect?to={other_host}/headers", headers=credentials)
    procs.horizon("work")
    for job_id, expected in ((same, credentials), (other, {"Authorization": None, "Cookie": None})):
        job = finished(hz, job_id)
        assert job["status"] == "completed", message(job)
        assert json.loads(json.loads(job["output"])["body"]) == expected


@pytest.mark.parametrize("path", ["drip-body", "drip-headers"])
def test_http_timeout_is_a_deadline_for_the_whole_request(hz, procs, http_server, path):
    """Before, http.timeout bounded each socket read: a server sending a byte every 0.2 s kept the
    job running until the job's own timeout."""
    job_id = http_job(hz, job_timeout=8, url=f"{http_server}/{path}", timeout=1)
    started = time.monotonic()
    procs.horizon("work")
    job = finished(hz, job_id)
    assert job["status"] == "failed"
    assert message(job) == f"GET {http_server}/{path} failed: http.timeout of 1 s exceeded"
    assert time.monotonic() - started < 6  # the job's own timeout is 8 s


def test_name_resolution_is_bounded_by_the_http_deadline():
    """getaddrinfo takes no timeout: a resolver that hung held an http job until the job's own
    timeout. The lookup now runs by the request's deadline (here a lookup that hangs for 30 s)."""
    release = threading.Event()

    def hanging_lookup(*args):
        release.wait(30)
        return socket.getaddrinfo("127.0.0.1", 80, 0, socket.SOCK_STREAM)

    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match="resolving 'slow.example' did not finish"):
            builtin_jobs.resolve("slow.example", 80, time.monotonic() + 0.3, lookup=hanging_lookup)
        assert time.monotonic() - started < 5
    finally:
        release.set()
    found = builtin_jobs.resolve("localhost", 80, time.monotonic() + 5)
    assert found and all(info[1] == socket.SOCK_STREAM for info in found)
    with pytest.raises(OSError):  # the resolver's own errors come through as they are
        builtin_jobs.resolve("no-such-host.invalid", 80, time.monotonic() + 5)


# --- specs that can never run -------------------------------------------------------------------

NOWHERE = "http://127.0.0.1:1/"
NEVER_RUN = [
    ("http", {"url": "http://"}, "http.url"),
    ("http", {"url": "http://:80/"}, "http.url"),
    ("http", {"url": "http://[::1/x"}, "http.url"),
    ("http", {"url": "http://127.0.0.1:1/o k"}, "http.url"),
    ("http", {"url": "http://127.0.0.1:99999/"}, "http.url"),
    ("http", {"url": "http://127.0.0.1:1/caf\u00e9"}, "http.url"),
    ("http", {"url": "ftp://127.0.0.1/"}, "http.url"),
    ("http", {"url": NOWHERE, "headers": {"X-A": "v\r\nX-Injected: 1"}}, "http.headers['X-A']"),
    ("http", {"url": NOWHERE, "headers": {"Bad Name:": "v"}}, "http.headers: 'Bad Name:'"),
    ("http", {"url": NOWHERE, "headers": ["X-A"]}, "http.headers must be an object"),
    ("http", {"url": NOWHERE, "method": "TRACE"}, "http.method"),
    ("http", {"url": NOWHERE, "timeout": 0}, "http.timeout"),
    ("http", {"url": NOWHERE, "timeout": "soon"}, "http.timeout"),
    ("http", {"url": NOWHERE, "json": {}, "body": "x"}, "at most one of json, form or body"),
    ("cli", {"argv": []}, "cli.argv"),
    ("cli", {"argv": ["echo", "a\0b"]}, "cli.argv"),
    ("cli", {"argv": ["env"], "env": {"A=B": "1"}}, "cli.env: 'A=B'"),
    ("cli", {"argv": ["env"], "env": {"": "1"}}, "cli.env: ''"),
    ("cli", {"argv": ["env"], "env": {"A": "x\0y"}}, "cli.env['A']"),
    ("cli", {"argv": ["true"], "cwd": "/nonexistent/horizon-test"}, "cli.cwd"),
]


def test_specs_that_can_never_run_fail_at_once(cli_enabled, hz, procs):
    """Before, they raised ValueError (or http.client's InvalidURL) in the worker and were tried
    again on every try. Transient failures are still retried."""
    jobs = {job_type: getattr(builtin_jobs, job_type) for job_type in ("http", "cli")}
    never = [(jobs[t].options(tries=3).dispatch(**spec), field) for t, spec, field in NEVER_RUN]
    refused = jobs["http"].options(tries=2).dispatch(url=NOWHERE)
    exit_3 = jobs["cli"].options(tries=2).dispatch(argv=["sh", "-c", "exit 3"])
    procs.horizon("work")
    for job_id, field in never:
        job = finished(hz, job_id)
        exc = json.loads(job["exception"])
        assert (job["status"], job["attempts"], exc["class"]) == ("failed", "1", "horizon.builtin_jobs.InvalidSpec")
        assert field in exc["message"]
    for job_id in (refused, exit_3):
        job = finished(hz, job_id)
        assert (job["status"], job["attempts"]) == ("failed", "2")
