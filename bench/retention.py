"""Retention benchmark: Redis memory per retained job record, API latency with 100k jobs retained.

    .venv/bin/python bench/retention.py --jobs 100000

Starts its own embedded redis-server, pushes --jobs jobs, completes and fails some of them
through the queue's own finish script, and reports used_memory per job record (pending and
completed), then times GET stats, workload and jobs/failed through the Flask app in-process
(the handler and its Redis reads, no HTTP server). Writes bench/results/retention.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.output import print_figures, save  # noqa: E402
from horizon.config import settings_from_dict  # noqa: E402
from horizon.context import configure  # noqa: E402
from horizon.embedded import EmbeddedRedis  # noqa: E402
from horizon.queue import JobSpec  # noqa: E402

PAYLOAD = '{"args":[],"kwargs":{}}'


def used(client: redis.Redis, timeout: float = 120.0) -> int:
    """used_memory once no AOF rewrite is running or scheduled: while one runs, Redis also keeps
    every write in a rewrite buffer, which used_memory counts (100k pushes cross the 64 MB
    auto-rewrite size, and the figure moved by 11 MB with the rewrite's timing)."""
    deadline = time.monotonic() + timeout
    while True:
        info = client.info("persistence")
        if not (int(info.get("aof_rewrite_in_progress", 0)) or int(info.get("aof_rewrite_scheduled", 0))):
            return int(client.info("memory")["used_memory"])
        if time.monotonic() > deadline:
            raise RuntimeError(f"an AOF rewrite still runs after {timeout:.0f} s")
        time.sleep(0.05)


def finish_some(hz, n: int, outcome: str) -> None:
    """Reserve and finish n jobs in-process (no job body runs): completed or failed_final."""
    job, _ = hz.queue.reserve(["default"])
    for i in range(n):
        last = i == n - 1
        _, job, _ = hz.queue.finish(job, outcome, 0.05, "" if outcome == "completed" else '{"class":"X"}',
                                    None if last else ["default"])


def timed(client, path: str, n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - t) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.data[:200])
    samples.sort()
    return {"p50_ms": round(statistics.median(samples), 2), "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100000)
    parser.add_argument("--completed", type=int, default=10000)
    parser.add_argument("--failed", type=int, default=2000)
    args = parser.parse_args()
    result: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "jobs": args.jobs}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(tmp) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        data = {"prefix": "bench", "redis": {"url": server.url}}
        hz = configure(settings_from_dict(data, base_dir=str(ROOT)))
        hz.queue.push([JobSpec(name="warm", queue="default", payload=PAYLOAD)])
        client.flushall()
        base = used(client)
        for start in range(0, args.jobs, 10000):
            hz.queue.push([JobSpec(name="bench.noop", queue="default", payload=PAYLOAD)
                           for _ in range(min(10000, args.jobs - start))])
        hz.scripts.close()  # its query buffer (the pipelined pushes) is not job memory
        pending = used(client)
        result["bytes_per_pending_job"] = round((pending - base) / args.jobs)
        finish_some(hz, args.completed, "completed")
        hz.scripts.close()
        completed = used(client)
        result["bytes_per_completed_job_delta"] = round((completed - pending) / args.completed)
        finish_some(hz, args.failed, "failed_final")
        result["retained"] = {"pending": args.jobs - args.completed - args.failed, "completed": args.completed,
                              "failed": args.failed}
        result["used_memory_mb"] = round(used(client) / 2**20, 1)

        from web import create_app

        app = create_app(hz=hz)
        web = app.test_client()
        prefix = hz.settings.web.path + "/api"
        for route in ("stats", "workload", "jobs/failed", "jobs/pending", "jobs/completed"):
            result[f"api_{route.replace('/', '_')}"] = timed(web, f"{prefix}/{route}", 50)
    save("retention", result)
    print_figures(result)


if __name__ == "__main__":
    main()
