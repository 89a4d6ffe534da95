"""Redis-side cost of horizon's Lua scripts: server time per call and per job, and the commands
each job costs inside the scripts (INFO commandstats deltas).

    .venv/bin/python bench/lua.py [--jobs 20000] [--prefetch 16]

Runs in-process against its own embedded redis-server (AOF on, as deployed): the prelude alone,
a single push, a bulk push (per job), and a worker finishing and reserving jobs with no job
body (per job). Writes bench/results/lua.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.output import print_figures, save  # noqa: E402
from horizon import job  # noqa: E402
from horizon.config import settings_from_dict  # noqa: E402
from horizon.context import configure  # noqa: E402
from horizon.embedded import EmbeddedRedis  # noqa: E402
from horizon.queue import JobSpec  # noqa: E402
from horizon.scripts import lua_settings, source  # noqa: E402
from horizon.worker import Worker, WorkerOptions  # noqa: E402

PAYLOAD = '{"args":[],"kwargs":{}}'


@job(name="bench.noop")
def noop() -> None:
    """The job the worker measurement runs: nothing, so only horizon's own cost is left."""


def stats(client: redis.Redis) -> dict[str, dict]:
    return {k[8:]: v for k, v in client.info("commandstats").items()}


def evalsha_us(client: redis.Redis, jobs: int) -> tuple[float, float, float]:
    """(server µs per EVALSHA call, per job, Redis calls inside scripts per job) since the last reset."""
    s = stats(client)
    ev = s.get("evalsha", {"usec": 0, "calls": 1})
    inner = sum(v["calls"] for k, v in s.items() if k not in ("evalsha", "config", "info"))
    return ev["usec"] / ev["calls"], ev["usec"] / jobs, inner / jobs


def prelude_us(client: redis.Redis, settings_lua: str, calls: int = 5000) -> float:
    """Server time of the push script's prelude alone (its body replaced by ``return 1``)."""
    text = source("push", settings_lua)
    sha = client.script_load(text[: text.index("-- Push jobs: ARGV[3]")] + "\nreturn 1")
    client.config_resetstat()
    pipe = client.pipeline(transaction=False)
    for _ in range(calls):
        pipe.evalsha(sha, 1, "{bench}:clock", "{bench}", "")
    pipe.execute()
    return stats(client)["evalsha"]["usec_per_call"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--prefetch", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(tmp) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        settings = settings_from_dict({"prefix": "bench", "redis": {"url": server.url}})
        hz = configure(settings)
        results: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "jobs": args.jobs}
        results["prelude_us_per_call"] = round(prelude_us(client, lua_settings(settings)), 2)

        def spec() -> JobSpec:
            return JobSpec(name="bench.noop", queue="default", payload=PAYLOAD)

        hz.queue.push([spec()])
        client.config_resetstat()
        for _ in range(2000):
            hz.queue.push([spec()])
        per_call, _, inner = evalsha_us(client, 2000)
        results["single_push_us_per_call"] = round(per_call, 1)
        results["single_push_redis_calls"] = round(inner, 1)

        client.flushall()
        client.config_resetstat()
        hz.queue.push([spec() for _ in range(args.jobs)])
        _, per_job, inner = evalsha_us(client, args.jobs)
        results["bulk_push_us_per_job"] = round(per_job, 1)
        results["bulk_push_redis_calls_per_job"] = round(inner, 2)

        # a worker with no job body: finish + reserve, prefetch N (the queue gets a runtime estimate first)
        client.hset(hz.keys.queue_metrics("default"), "estimate", 1.0)
        client.config_resetstat()
        worker = Worker(hz, WorkerOptions(queues=["default"], stop_when_empty=True, prefetch=args.prefetch))
        start = time.perf_counter()
        worker.run()
        elapsed = time.perf_counter() - start
        per_call, per_job, inner = evalsha_us(client, worker.state.jobs)
        results["worker_prefetch"] = args.prefetch
        results["worker_jobs_per_s_no_body"] = round(worker.state.jobs / elapsed)
        results["worker_script_us_per_call"] = round(per_call, 1)
        results["worker_script_us_per_job"] = round(per_job, 1)
        results["worker_redis_calls_per_job"] = round(inner, 2)
        hz.close()
    save("lua", results)
    print_figures(results)


if __name__ == "__main__":
    main()
