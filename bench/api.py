"""API latency benchmark: stats, workload, masters, jobs/failed under gunicorn with many jobs retained.

    .venv/bin/python bench/api.py                    # 100k retained jobs, 1k failed, 2000 requests/route
    .venv/bin/python bench/api.py --jobs 20000 --requests 500

Starts its own embedded redis-server, processes the jobs with real `horizon work` processes
(the failed ones name no registered function, so the worker fails them for real), starts a real
master (`horizon start`) so `masters` has records, serves the app with `horizon web` (gunicorn,
gthread) and measures each route's latency from a small keep-alive HTTP client with
--concurrency connections. Prints a table and writes bench/results/api.json. Target: p99 <= 20 ms.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.output import save  # noqa: E402
from horizon.config import settings_from_dict  # noqa: E402
from horizon.context import configure  # noqa: E402
from horizon.embedded import EmbeddedRedis  # noqa: E402
from horizon.queue import JobSpec  # noqa: E402

ROUTES = ("stats", "workload", "masters", "jobs/failed", "jobs/completed", "queues")
TARGET_P99_MS = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def horizon(config: Path, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "horizon.cli", *args, "--config", str(config)],
        env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def seed(hz, config: Path, env: dict, jobs: int, failed: int) -> None:
    """Process `jobs` no-op jobs and `failed` failing ones with two real workers."""
    from bench import jobs as bench_jobs

    for start in range(0, jobs, 10000):
        bench_jobs.noop.dispatch_many([((), {})] * min(10000, jobs - start))
    hz.queue.push(JobSpec(name="bench.unregistered", queue="default", payload='{"args":[],"kwargs":{}}')
                  for _ in range(failed))  # fmt: skip
    workers = [horizon(config, env, "work", "--stop-when-empty") for _ in range(2)]
    for w in workers:
        w.wait()


def wait_http(port: int, path: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the web server did not answer {path} within {timeout:g}s")


def load(port: int, path: str, requests: int, concurrency: int) -> tuple[list[float], float]:
    """Latencies (ms) of `requests` GETs over `concurrency` keep-alive connections; and the wall time."""
    latencies: list[float] = []
    lock = threading.Lock()
    per = requests // concurrency

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine = []
        for _ in range(per):
            t = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            mine.append((time.perf_counter() - t) * 1000)
            assert response.status == 200, (path, response.status)
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000, help="no-op jobs processed and retained")
    parser.add_argument("--failed", type=int, default=1000, help="failed jobs retained")
    parser.add_argument("--requests", type=int, default=2000, help="requests per route")
    parser.add_argument("--concurrency", type=int, default=4, help="client connections")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args()
    results: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "jobs": args.jobs,
        "failed": args.failed,
        "requests_per_route": args.requests,
        "concurrency": args.concurrency,
        "web_workers": args.web_workers,
        "routes": {},
    }
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(tmp) as server:
        port = free_port()
        data = {
            "prefix": "benchapi",
            "redis": {"url": server.url},
            "imports": ["bench.jobs"],
            "web": {"bind": f"127.0.0.1:{port}", "workers": args.web_workers},
            "defaults": {"supervisor-1": {"queue": ["default"], "max_processes": 2, "min_processes": 1}},
        }
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump(data))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        hz = configure(settings_from_dict(data, base_dir=str(ROOT)))
        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            t = time.perf_counter()
            seed(hz, config, env, args.jobs, args.failed)
            results["seed_seconds"] = round(time.perf_counter() - t, 1)
            results["retained_completed"] = client.zcard(hz.keys.index("completed"))
            results["retained_failed"] = client.zcard(hz.keys.index("failed"))
            results["redis_used_memory_mb"] = round(client.info("memory")["used_memory"] / 2**20, 1)
            procs.append(horizon(config, env, "start"))
            procs.append(horizon(config, env, "web"))
            wait_http(port, "/horizon/api/stats")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not client.zcard(hz.keys.masters()):
                time.sleep(0.1)
            results["load_average_1m_at_start"] = round(os.getloadavg()[0], 2)
            print(f"{'route':<16}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'req/s':>9}")
            for route in ROUTES:
                path = f"/horizon/api/{route}"
                load(port, path, 100, args.concurrency)  # warm up
                latencies, wall = load(port, path, args.requests, args.concurrency)
                row = {
                    "p50_ms": round(statistics.median(latencies), 2),
                    "p99_ms": round(percentile(latencies, 0.99), 2),
                    "max_ms": round(max(latencies), 2),
                    "req_per_s": round(len(latencies) / wall),
                }
                results["routes"][route] = row
                print(f"{route:<16}{row['p50_ms']:>9}{row['p99_ms']:>9}{row['max_ms']:>9}{row['req_per_s']:>9}")
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
    results["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    results["cpus"] = os.cpu_count()
    target = all(r["p99_ms"] <= TARGET_P99_MS for r in results["routes"].values())
    results["target_p99_ms"], results["target_met"] = TARGET_P99_MS, target
    print(f"target p99 <= {TARGET_P99_MS:g} ms: {'met' if target else 'NOT met'} "
          f"(load average {results['load_average_1m_at_end']} on {results['cpus']} CPUs)")  # fmt: skip
    print(f"wrote {save('api', results)}")


if __name__ == "__main__":
    main()
