"""Core engine benchmark: processing rate (1 and 2 workers), dispatch rates, round trips per job.

    make bench            # or: .venv/bin/python bench/core.py --jobs 20000

Starts its own embedded redis-server, dispatches no-op jobs, runs real `horizon work`
processes, and counts Redis commands from INFO commandstats deltas. Prints a table and
writes bench/results/core.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.output import print_figures, save  # noqa: E402
from horizon.config import settings_from_dict  # noqa: E402
from horizon.context import configure  # noqa: E402
from horizon.embedded import EmbeddedRedis  # noqa: E402


def commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config"))


def script_calls(client: redis.Redis) -> dict[str, int]:
    """Commands as a client sees them: EVALSHA/BRPOP/... calls, not the commands inside scripts."""
    stats = client.info("commandstats")
    return {k[8:]: v["calls"] for k, v in stats.items()}


def client_commands(before: dict[str, int], after: dict[str, int]) -> int:
    """Commands sent by clients: a script call counts once (not the commands it runs)."""
    outer = ("evalsha", "eval", "brpop", "blpop")
    return sum(after.get(k, 0) - before.get(k, 0) for k in outer)


def client_round_trips(before: dict[str, int], after: dict[str, int]) -> int:
    """Network round trips of the worker: each one carries exactly one script call (an idle
    worker pipelines its BRPOP with the reserve script), so script calls count round trips."""
    return sum(after.get(k, 0) - before.get(k, 0) for k in ("evalsha", "eval"))


def run_workers(config: Path, n: int, env: dict, prefetch: int = 1) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [sys.executable, "-m", "horizon.cli", "work", "--stop-when-empty", "--prefetch", str(prefetch),
             "--config", str(config)],
            env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--single", type=int, default=5000)
    parser.add_argument("--prefetch", type=int, default=1, help="worker --prefetch for the processing runs")
    args = parser.parse_args()
    results: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "jobs": args.jobs,
        "prefetch": args.prefetch,
    }
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(tmp) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        data = {"prefix": "bench", "redis": {"url": server.url}, "imports": ["bench.jobs"], "events_max": 10000}
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump(data))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        hz = configure(settings_from_dict(data, base_dir=str(ROOT)))
        from bench import jobs

        # single dispatch
        t = time.perf_counter()
        for _ in range(args.single):
            jobs.noop.dispatch()
        results["dispatch_single_per_s"] = round(args.single / (time.perf_counter() - t))
        client.flushall()
        # bulk dispatch
        t = time.perf_counter()
        jobs.noop.dispatch_many([((), {})] * args.jobs)
        results["dispatch_bulk_per_s"] = round(args.jobs / (time.perf_counter() - t))

        for n in (1, 2):
            client.flushall()
            jobs.noop.dispatch_many([((), {})] * args.jobs)
            client.config_resetstat()
            before = script_calls(client)
            t = time.perf_counter()
            procs = run_workers(config, n, env, args.prefetch)
            for p in procs:
                p.wait()
            elapsed = time.perf_counter() - t
            after = script_calls(client)
            done = client.zcard(hz.keys.index("completed"))
            assert done == args.jobs, f"{done} of {args.jobs} completed"
            results[f"processed_per_s_{n}_workers"] = round(args.jobs / elapsed)
            results[f"round_trips_per_job_{n}_workers"] = round(client_round_trips(before, after) / args.jobs, 3)
            results[f"commands_per_job_{n}_workers"] = round(client_commands(before, after) / args.jobs, 3)

        # enqueue-to-start latency with an idle worker
        client.flushall()
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "horizon.cli", "work", "--config", str(config)],
                env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        ]
        time.sleep(1.5)
        lat = []
        for _ in range(200):
            before = script_calls(client)
            job_id = jobs.noop.dispatch()
            key = hz.keys.job(job_id)
            while client.hget(key, "status") != "completed":
                time.sleep(0.0005)
            h = client.hmget(key, "pushed_at", "reserved_at")
            lat.append((float(h[1]) - float(h[0])) * 1000)
            time.sleep(0.01)
        results["latency_ms_p50"] = round(statistics.median(lat), 3)
        results["latency_ms_p99"] = round(sorted(lat)[int(len(lat) * 0.99) - 1], 3)
        client.config_resetstat()
        before = script_calls(client)
        for _ in range(100):
            job_id = jobs.noop.dispatch()
            while client.hget(hz.keys.job(job_id), "status") != "completed":
                time.sleep(0.001)
            time.sleep(0.02)
        after = script_calls(client)
        # subtract the benchmark's own calls: 1 EVALSHA per dispatch and its HGET polls
        # minus the benchmark's own 100 dispatches (one EVALSHA each)
        results["round_trips_per_job_idle_worker"] = round((client_round_trips(before, after) - 100) / 100, 3)
        results["commands_per_job_idle_worker"] = round((client_commands(before, after) - 100) / 100, 3)
        for p in procs:
            p.terminate()
            p.wait()
    save("core", results)
    print_figures(results)


if __name__ == "__main__":
    main()
