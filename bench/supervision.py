"""Supervision figures: worker start time (fork to idle) and idle master/supervisor/worker RSS and USS.

    .venv/bin/python bench/supervision.py [--starts 20]

Starts its own embedded redis-server, forks workers the way a supervisor does (timing fork ->
the worker's first "idle" report), then runs a real `horizon start` with 2 workers and reads
each process's memory with psutil once they are idle. Writes bench/results/supervision.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.output import save  # noqa: E402
from horizon.config import SupervisorSettings, settings_from_dict  # noqa: E402
from horizon.context import configure  # noqa: E402
from horizon.embedded import EmbeddedRedis  # noqa: E402
from supervisor.process import spawn_worker  # noqa: E402


def worker_start_times(settings, starts: int) -> list[float]:
    """Milliseconds from fork to the worker's first idle report (connected, blocked on its queue)."""
    options = SupervisorSettings(name="bench", queue=("bench",), memory=0)
    times = []
    for _ in range(starts):
        began = time.perf_counter()
        proc = spawn_worker(settings, options, ["bench"], "bench")
        while proc.shared.read()[0] != "idle":
            time.sleep(0.0005)
        times.append((time.perf_counter() - began) * 1000)
        os.kill(proc.pid, signal.SIGTERM)
        os.waitpid(proc.pid, 0)
    return times


def memory(pid: int) -> dict:
    info = psutil.Process(pid).memory_full_info()
    return {"rss_mb": round(info.rss / 2**20, 1), "uss_mb": round(info.uss / 2**20, 1)}


def idle_memory(url: str, tmp: str) -> dict:
    config = Path(tmp) / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "prefix": "benchsup",
                "redis": {"url": url},
                "defaults": {"supervisor-1": {"queue": ["default"], "balance": "simple", "max_processes": 2}},
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    master = subprocess.Popen(
        [sys.executable, "-m", "horizon.cli", "start", "--config", str(config)], env=env, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            tree = psutil.Process(master.pid).children(recursive=True)
            if len(tree) == 3:
                break
            time.sleep(0.1)
        time.sleep(3)  # let every process settle into its idle wait
        supervisor = psutil.Process(master.pid).children()[0]
        workers = supervisor.children()
        return {
            "master": memory(master.pid),
            "supervisor": memory(supervisor.pid),
            "workers": [memory(w.pid) for w in workers],
        }
    finally:
        master.send_signal(signal.SIGTERM)
        master.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(tmp) as server:
        settings = settings_from_dict({"prefix": "benchsup", "redis": {"url": server.url}})
        configure(settings)
        times = worker_start_times(settings, args.starts)
        result = {
            "worker_start_ms": {
                "p50": round(statistics.median(times), 2),
                "max": round(max(times), 2),
                "n": len(times),
            },
            "idle_memory": idle_memory(server.url, tmp),
        }
    print(json.dumps(result, indent=2))
    save("supervision", result)


if __name__ == "__main__":
    main()
