"""The embedded redis-server: configuration, start-up errors, stop, and death with its owner."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from horizon import embedded
from horizon.embedded import EmbeddedRedis, EmbeddedRedisError, find_redis_server, free_port
from tests.helpers import wait_for


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_if_redis(pid: int) -> None:
    try:
        proc = psutil.Process(pid)
        if "redis-server" in proc.name():
            proc.kill()
    except psutil.NoSuchProcess:
        pass


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_find_redis_server_returns_an_executable() -> None:
    path = find_redis_server()
    assert path.endswith(os.path.join("bin", "redis-server"))
    assert os.access(path, os.X_OK)


def test_server_answers_with_aof_and_noeviction(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with EmbeddedRedis(str(data)) as server:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            assert client.ping()
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
            assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
            assert client.config_get("dir") == {"dir": str(data)}
            client.set("k", "v")
            client.save()
        finally:
            client.close()
        assert (data / "appendonly.aof").is_file()
        assert (data / "dump.rdb").is_file()
        assert (data / "redis.log").is_file()
        assert os.getpgid(server.pid) == server.pid  # Ctrl-C on the terminal is the owner's


def test_port_in_use_is_reported(tmp_path: Path, listening_port: int) -> None:
    with pytest.raises(EmbeddedRedisError) as info:
        EmbeddedRedis(str(tmp_path), port=listening_port).start()
    message = str(info.value)
    assert str(listening_port) in message and "in use" in message
    assert "\n" not in message


def test_auto_port_retries_when_the_picked_port_is_taken(
    tmp_path: Path, listening_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = iter([listening_port, free_port()])
    monkeypatch.setattr(embedded, "free_port", lambda: next(ports))
    with EmbeddedRedis(str(tmp_path)) as server:
        assert server.port != listening_port
        assert redis.Redis(port=server.port).ping()


def test_unwritable_dir_is_reported(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    target = tmp_path / "file" / "sub"
    with pytest.raises(EmbeddedRedisError) as info:
        EmbeddedRedis(str(target)).start()
    assert str(target) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_binary_is_reported(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedRedisError, match="/nonexistent"):
        EmbeddedRedis(str(tmp_path), binary="/nonexistent").start()


def test_early_exit_reports_the_last_log_line(tmp_path: Path) -> None:
    server = EmbeddedRedis(str(tmp_path), extra_args=["--no-such-option", "x"])
    with pytest.raises(EmbeddedRedisError, match="Bad directive"):
        server.start()
    assert server.process is not None and server.process.returncode is not None


def test_stop_leaves_no_process_and_is_idempotent(tmp_path: Path) -> None:
    server = EmbeddedRedis(str(tmp_path)).start()
    pid = server.pid
    assert pid is not None and psutil.pid_exists(pid)
    server.stop()
    server.stop()
    assert not psutil.pid_exists(pid)


def test_server_dies_when_its_owner_is_killed(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from horizon.embedded import EmbeddedRedis\n"
        "server = EmbeddedRedis(sys.argv[1]).start()\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    pid = 0
    try:
        assert owner.stdout is not None
        readable, _, _ = select.select([owner.stdout], [], [], 30)
        assert readable, "owner did not report the redis pid"
        pid = int(owner.stdout.readline())
        assert not gone(pid)
        owner.kill()
        owner.wait()
        wait_for(lambda: gone(pid), timeout=10, message=f"redis-server {pid} outlived its owner")
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout:
            owner.stdout.close()
        if pid:
            kill_if_redis(pid)


def test_an_application_follows_the_embedded_server_to_its_new_port(tmp_path: Path) -> None:
    """`horizon up` starts the embedded server on a new port each time (port 0) and writes its URL
    to the URL file. An application, web server or worker started on its own read that file once,
    when it connected, and after a restart got 'connection refused' from the old port until it was
    restarted itself. Its connections now open where the file says."""
    from horizon.config import settings_from_dict
    from horizon.connection import write_embedded_url
    from horizon.context import Horizon
    from horizon.queue import JobSpec

    data = tmp_path / "data"
    settings = settings_from_dict({"prefix": "follow", "redis": {"embedded": {"dir": str(data)}}})
    first = EmbeddedRedis(str(data)).start()
    try:
        write_embedded_url(settings, first.url)
        hz = Horizon(settings)
        before = hz.queue.push([JobSpec(name="tests.noop", queue="default", payload='{"args":[],"kwargs":{}}')])
        assert hz.redis.exists(hz.keys.job(before[0])) == 1
    finally:
        first.stop()
    second = EmbeddedRedis(str(tmp_path / "data2")).start()  # `horizon up` again: another port
    try:
        assert second.port != first.port
        write_embedded_url(settings, second.url)
        after = hz.queue.push([JobSpec(name="tests.noop", queue="default", payload='{"args":[],"kwargs":{}}')])
        direct = redis.Redis.from_url(second.url, decode_responses=True)
        assert direct.exists(hz.keys.job(after[0])) == 1  # written by the script connection...
        assert hz.redis.llen(hz.keys.queue("default")) == 1  # ... and read by the client's pool
        direct.close()
        hz.close()
    finally:
        second.stop()
