"""Where the enqueue-to-start latency goes, with idle processes (the peer benchmark's latency case).

    .venv/bin/python bench/latency_chain.py [--samples 200]

Against its own embedded redis-server (AOF on, as deployed) and one idle ``horizon work`` running
the peer benchmark's job (one ``INCR``): the machine floor (``bench/peers/floor.py``), then
samples of a dispatch after 20 ms idle, each timed from just before ``dispatch()`` until the job's
``INCR`` is seen, and the ``dispatch()`` call alone. The scripts' own Redis time comes from
``SLOWLOG`` (threshold 0 µs) over the samples, per script (push, reserve, finish). Then the same
dispatch after 20 ms idle with no worker waiting, which shows what serving a woken worker adds to
the dispatch call. Writes bench/results/latency_chain.json.
"""

from __future__ import annotations

import argparse
import hashlib
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
from bench.peers import floor  # noqa: E402
from bench.peers.body import COUNTER  # noqa: E402
from horizon.embedded import EmbeddedRedis  # noqa: E402
from horizon.scripts import lua_settings, source  # noqa: E402

IDLE = 0.02  # seconds between samples, as in the peer benchmark


def _ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 3)


def _idle_dispatches(dispatch, samples: int) -> list[float]:
    times = []
    for _ in range(samples):
        time.sleep(IDLE)
        start = time.perf_counter()
        dispatch()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    results: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "samples": args.samples}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(tmp) as server:
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump({
            "prefix": "bench", "redis": {"url": server.url}, "imports": ["bench.peers.tasks_horizon"],
        }))  # fmt: skip
        env = dict(os.environ, HORIZON_CONFIG=str(config), BENCH_COUNTER_URL=server.url, PYTHONPATH=str(ROOT))
        os.environ.update(HORIZON_CONFIG=str(config), BENCH_COUNTER_URL=server.url)
        from bench.peers.tasks_horizon import incr
        from horizon.context import current

        floor_latency = floor.latency(server.url, args.samples)
        results["floor_latency_ms_p50"] = floor_latency["latency_ms_p50"]

        client = redis.Redis.from_url(server.url)
        incr.dispatch()  # warm up: connection, script loading
        client.flushall()
        results["dispatch_call_ms_p50_no_worker"] = _ms(_idle_dispatches(incr.dispatch, args.samples))
        client.flushall()

        worker = subprocess.Popen(
            [sys.executable, "-m", "horizon.cli", "work", "--queue", "default"],
            env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client.config_set("notify-keyspace-events", "K$")
        sub = client.pubsub(ignore_subscribe_messages=True)
        sub.subscribe(f"__keyspace@0__:{COUNTER}")
        try:
            while sub.get_message(timeout=0.2) is not None:
                pass
            incr.dispatch()
            if sub.get_message(timeout=10) is None:
                raise SystemExit("the worker ran no job within 10 s")
            client.config_set("slowlog-log-slower-than", 0)
            client.config_set("slowlog-max-len", 100 * args.samples)
            client.slowlog_reset()
            total, call = [], []
            for _ in range(args.samples):
                time.sleep(IDLE)
                start = time.perf_counter()
                incr.dispatch()
                returned = time.perf_counter()
                if sub.get_message(timeout=10) is None:
                    raise SystemExit("a job did not run within 10 s")
                total.append(time.perf_counter() - start)
                call.append(returned - start)
            log = client.slowlog_get(100 * args.samples)
        finally:
            client.config_set("slowlog-log-slower-than", 10000)
            client.config_set("notify-keyspace-events", "")
            worker.terminate()
            worker.wait(10)
        results["latency_ms_p50"] = _ms(total)
        results["dispatch_call_ms_p50_idle_worker"] = _ms(call)
        settings_lua = lua_settings(current().settings)
        for name in ("push", "reserve", "finish"):
            sha = hashlib.sha1(source(name, settings_lua).encode()).hexdigest().encode()
            durations = [e["duration"] for e in log if e["command"].split()[:2] == [b"EVALSHA", sha]]
            if durations:
                results[f"{name}_script_us_p50"] = statistics.median(durations)
    print_figures(results)
    print(f"-> {save('latency_chain', results)}")


if __name__ == "__main__":
    main()
