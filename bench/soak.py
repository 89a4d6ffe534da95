"""Soak benchmark: Redis memory stays bounded while many no-op jobs are processed.

    .venv/bin/python bench/soak.py                     # 200k jobs, default trim, then a 10 s trim
    .venv/bin/python bench/soak.py --jobs 50000 --rate 2000 --trim-seconds 5

Each phase starts an embedded redis-server and dispatches no-op jobs at a steady rate (bulk
pushes of 1000, paused while 5000 wait) while 2 real worker processes run them; it samples
``used_memory`` every second and counts the job records left. Phase ``default`` keeps the default
trim (60 minutes: every job is retained, so the memory per retained job shows); phase ``short``
trims finished jobs after a few seconds (a settings override below the 1-minute config minimum)
and its memory must level off.
Prints a table and writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.output import save  # noqa: E402
from horizon.config import Settings, TrimSettings, settings_from_dict  # noqa: E402
from horizon.embedded import EmbeddedRedis  # noqa: E402

CHUNK = 1000
BACKLOG = 5000  # pause dispatching while this many jobs wait: a steady load, not an ever-growing queue


def settings(url: str, trim_seconds: float | None) -> Settings:
    base = settings_from_dict({"prefix": "soak", "redis": {"url": url}, "imports": ["bench.jobs"]}, base_dir=str(ROOT))
    if trim_seconds is None:
        return base
    minutes = trim_seconds / 60
    trim = TrimSettings(recent=minutes, pending=minutes, completed=minutes, recent_failed=minutes,
                        failed=minutes, monitored=minutes)
    return base.with_overrides(trim=trim)


def worker_main(url: str, trim_seconds: float | None) -> None:
    """One worker process with the phase's settings (run as ``soak.py --worker URL [--trim-seconds N]``)."""
    from horizon.context import configure
    from horizon.worker import Worker, WorkerOptions

    hz = configure(settings(url, trim_seconds))
    import bench.jobs  # noqa: F401  (registers bench.noop)

    worker = Worker(hz, WorkerOptions(queues=["default"]))
    worker.install_signals()
    sys.exit(worker.run())


def job_records(client: redis.Redis) -> int:
    return sum(1 for _ in client.scan_iter(match="{soak}:job:*", count=5000))


def phase(name: str, jobs: int, rate: float, trim_seconds: float | None, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(tmp) as server:
        from horizon.context import configure

        client = redis.Redis.from_url(server.url, decode_responses=True)
        hz = configure(settings(server.url, trim_seconds))
        from bench import jobs as bench_jobs

        baseline = client.info("memory")["used_memory"]
        args = [sys.executable, __file__, "--worker", server.url]
        if trim_seconds is not None:
            args += ["--trim-seconds", str(trim_seconds)]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        procs = [subprocess.Popen(args, env=env, cwd=str(ROOT)) for _ in range(workers)]
        samples, pushed, start = [], 0, time.monotonic()
        next_sample = start
        while True:
            now = time.monotonic()
            due = min(jobs, int((now - start) * rate) + CHUNK)
            if pushed < due and client.llen(hz.keys.queue("default")) < BACKLOG:
                n = min(CHUNK, due - pushed)
                bench_jobs.noop.dispatch_many([((), {})] * n)
                pushed += n
            if now >= next_sample:
                samples.append((round(now - start, 1), client.info("memory")["used_memory"]))
                next_sample += 1.0
            done = int(client.hget(hz.keys.queue_metrics("default"), "throughput") or 0)
            if pushed >= jobs and done >= jobs:
                break
            if pushed >= due:
                time.sleep(0.01)
        elapsed = time.monotonic() - start
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)
        final = client.info("memory")["used_memory"]
        retained = job_records(client)
        peak = max(m for _, m in samples + [(0, final)])
        result = {
            "phase": name,
            "jobs": jobs,
            "trim_seconds": trim_seconds if trim_seconds is not None else hz.settings.trim.completed * 60,
            "seconds": round(elapsed, 1),
            "processed_per_s": round(jobs / elapsed),
            "used_memory_baseline": baseline,
            "used_memory_peak": peak,
            "used_memory_final": final,
            "job_records_retained": retained,
            "bytes_per_retained_job": round((final - baseline) / retained) if retained else None,
            "memory_samples": samples,
        }
        client.close()
        return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=3000, help="dispatch rate, jobs per second")
    parser.add_argument("--trim-seconds", type=float, default=10, help="trim window of the short phase")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker, args.trim_seconds if "--trim-seconds" in sys.argv else None)
        return
    results = [
        phase("default", args.jobs, args.rate, None, args.workers),
        phase("short", args.jobs, args.rate, args.trim_seconds, args.workers),
    ]
    save("soak", results)
    keys = [k for k in results[0] if k != "memory_samples"]
    width = max(len(k) for k in keys)
    for k in keys:
        print(f"{k:<{width}}  " + "  ".join(f"{r[k]!s:>14}" for r in results))
    short = results[1]["memory_samples"]
    print("short-trim used_memory every 10 s:", [m for t, m in short[::10]])


if __name__ == "__main__":
    main()
