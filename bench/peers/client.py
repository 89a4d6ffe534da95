"""The producer side of one system, run in that system's virtualenv; prints one JSON object.

    python -m bench.peers.client SYSTEM single|bulk|latency N

single: N dispatches one at a time; bulk: N jobs through the system's bulk API (a plain loop
where it has none); latency: N enqueue-to-start samples with idle workers (the time from just
before the enqueue call until the job's INCR is seen through a keyspace notification).
"""

from __future__ import annotations

import importlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

import redis

from bench.peers.body import COUNTER


def producers(system: str) -> tuple[Callable[[], object], Callable[[int], object], str]:
    """(enqueue one, enqueue n in bulk, how bulk is done) for ``system``."""
    tasks = importlib.import_module(f"bench.peers.tasks_{system}")
    if system == "horizon":
        return tasks.incr.dispatch, lambda n: tasks.incr.dispatch_many([((), {})] * n), "dispatch_many (pipelined)"
    if system == "rq":
        from rq import Queue

        q = Queue("default", connection=redis.Redis.from_url(os.environ["BENCH_BROKER_URL"]))
        return (
            lambda: q.enqueue(tasks.incr),
            lambda n: q.enqueue_many([Queue.prepare_data(tasks.incr) for _ in range(n)]),
            "Queue.enqueue_many (pipelined)",
        )
    if system == "celery":

        def bulk(n: int) -> None:
            with tasks.app.producer_or_acquire() as producer:
                for _ in range(n):
                    tasks.incr.apply_async(producer=producer)

        return tasks.incr.delay, bulk, "no bulk API: apply_async loop on one producer"
    if system == "dramatiq":
        return tasks.incr.send, lambda n: [tasks.incr.send() for _ in range(n)], "no bulk API: send() loop"
    if system == "huey":
        return tasks.incr, lambda n: [tasks.incr() for _ in range(n)], "no bulk API: enqueue loop"
    raise SystemExit(f"unknown system {system!r}")


def latency(one: Callable[[], object], n: int) -> dict[str, float]:
    client = redis.Redis.from_url(os.environ["BENCH_COUNTER_URL"])
    client.config_set("notify-keyspace-events", "K$")
    sub = client.pubsub(ignore_subscribe_messages=True)
    sub.subscribe(f"__keyspace@0__:{COUNTER}")
    while sub.get_message(timeout=0.2) is not None:
        pass
    samples = []
    try:
        for _ in range(n):
            time.sleep(0.02)  # let the workers go idle again
            t = time.perf_counter()
            one()
            if sub.get_message(timeout=10) is None:
                raise SystemExit("latency: job did not run within 10 s")
            samples.append((time.perf_counter() - t) * 1000)
    finally:
        client.config_set("notify-keyspace-events", "")
    samples.sort()
    return {"latency_ms_p50": round(statistics.median(samples), 3),
            "latency_ms_p99": round(samples[max(int(len(samples) * 0.99) - 1, 0)], 3)}


def main() -> None:
    system, action, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    one, bulk, how = producers(system)
    one()  # warm up: connections, script loading
    if action == "latency":
        print(json.dumps(latency(one, n)))
        return
    t = time.perf_counter()
    if action == "single":
        for _ in range(n):
            one()
    else:
        bulk(n)
    elapsed = time.perf_counter() - t
    result: dict[str, object] = {f"dispatch_{action}_per_s": round(n / elapsed)}
    if action == "bulk":
        result["dispatch_bulk_how"] = how
    print(json.dumps(result))


if __name__ == "__main__":
    main()
