"""``horizon up``: embedded Redis + master + web (+ demo jobs); Ctrl-C stops everything."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path

import psutil
import pytest
import redis
import yaml

from horizon.embedded import free_port
from tests.helpers import wait_for

pytestmark = pytest.mark.slow


def test_up_runs_redis_master_web_and_demo_then_ctrl_c_stops_all(procs, proc_env, config_file, tmp_path):
    port = free_port()
    data_dir = tmp_path / "redis"
    config_file.write_text(
        yaml.safe_dump(
            {
                "prefix": "updemo",
                "redis": {"url": None, "embedded": {"dir": str(data_dir), "port": 0}},
                "web": {"bind": f"127.0.0.1:{port}"},
                "imports": ["demo_jobs"],
                "defaults": {"supervisor-1": {"queue": ["default", "emails"], "max_processes": 2}},
            }
        )
    )
    proc_env.update({"HORIZON_DEMO_INTERVAL": "0.3", "HORIZON_HEARTBEAT_INTERVAL": "0.2"})
    up = procs.horizon("up", "--demo")
    url_file = Path(data_dir) / "redis.url"
    url = wait_for(lambda: url_file.exists() and url_file.read_text().strip(), timeout=20)
    client = redis.Redis.from_url(url, decode_responses=True)
    master = wait_for(lambda: client.zrange("{updemo}:masters", 0, -1), timeout=20)[0]
    wait_for(lambda: int(client.hget("{updemo}:metrics:queue:default", "throughput") or 0) > 0, timeout=30)

    def api_masters():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/horizon/api/masters", timeout=2) as resp:
                return json.loads(resp.read())
        except OSError:
            return None

    served = wait_for(api_masters, timeout=30)
    assert master in served and served[master]["supervisors"][0]["master"] == master

    # the web server dies: `horizon up` starts it again
    def web_process():
        for child in psutil.Process(up.pid).children():
            try:
                if "web" in child.cmdline():
                    return child
            except psutil.Error:  # a child that already exited (a zombie until reaped)
                pass
        return None

    first = web_process()
    first.kill()
    wait_for(lambda: (p := web_process()) is not None and p.pid != first.pid, timeout=30, message="web not restarted")
    assert master in wait_for(api_masters, timeout=30)

    # the embedded Redis dies (kill -9, an OOM kill): `horizon up` starts it again on the same port,
    # its AOF brings the data back, and the master and its workers go on with it
    def redis_process():
        for child in psutil.Process(up.pid).children():
            try:
                if "redis-server" in child.name() and child.status() != psutil.STATUS_ZOMBIE:
                    return child
            except psutil.Error:  # a child that exited meanwhile
                pass
        return None

    dead = redis_process()
    done_before = int(client.hget("{updemo}:metrics:queue:default", "throughput") or 0)
    dead.kill()
    wait_for(lambda: (p := redis_process()) is not None and p.pid != dead.pid, timeout=30,
             message="embedded redis not restarted")

    def done_since() -> bool:
        try:
            return int(client.hget("{updemo}:metrics:queue:default", "throughput") or 0) > done_before
        except redis.ConnectionError:
            return False

    wait_for(done_since, timeout=30, message="no job ran after the embedded redis came back")
    assert url_file.read_text().strip() == url and master in client.zrange("{updemo}:masters", 0, -1)
    tree = [p.pid for p in psutil.Process(up.pid).children(recursive=True)]
    redis_pid = redis_process().pid
    os.killpg(up.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's foreground group
    assert up.wait(30) == 0
    assert not url_file.exists()
    for pid in [*tree, redis_pid]:
        wait_for(lambda pid=pid: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", timeout=10)
