"""What this machine allows any Redis queue: the same figures measured with plain redis-py, no queue.

- single: synchronous LPUSH calls per second. An acknowledged dispatch cannot beat one round trip,
  so this is the ceiling of every system's single-dispatch rate.
- latency: LPUSH to a list that a forked process waits on with BRPOP; it then INCRs the counter,
  seen through a keyspace notification, with the same pause between samples as the systems'
  latency (idle processes are woken, as in the real thing). No queue does less than this.
"""

from __future__ import annotations

import os
import signal
import statistics
import time

import redis

from bench.peers.body import COUNTER

LIST = "bench:floor"


def single_rate(url: str, n: int) -> float:
    client = redis.Redis.from_url(url)
    client.lpush(LIST, "x")
    start = time.perf_counter()
    for _ in range(n):
        client.lpush(LIST, "x")
    elapsed = time.perf_counter() - start
    client.delete(LIST)
    return n / elapsed


def latency(url: str, samples: int) -> dict[str, float]:
    pid = os.fork()
    if pid == 0:  # the "worker": blocked in BRPOP, then one INCR per item
        try:
            consumer = redis.Redis.from_url(url)
            while True:
                if consumer.brpop([LIST], timeout=5):
                    consumer.incr(COUNTER)
        finally:
            os._exit(0)
    client = redis.Redis.from_url(url)
    client.config_set("notify-keyspace-events", "K$")
    sub = client.pubsub(ignore_subscribe_messages=True)
    sub.subscribe(f"__keyspace@0__:{COUNTER}")
    def notified() -> None:
        deadline = time.monotonic() + 10
        while sub.get_message(timeout=max(deadline - time.monotonic(), 0)) is None:  # None: the subscribe reply
            if time.monotonic() >= deadline:
                raise RuntimeError("floor: no INCR within 10 s")

    values = []
    try:
        client.lpush(LIST, "warm-up")
        notified()
        for _ in range(samples):
            time.sleep(0.02)  # as in the systems' latency: every process goes idle first
            start = time.perf_counter()
            client.lpush(LIST, "x")
            notified()
            values.append((time.perf_counter() - start) * 1000)
    finally:
        client.config_set("notify-keyspace-events", "")
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        client.delete(LIST)
    values.sort()
    return {
        "latency_ms_p50": round(statistics.median(values), 3),
        "latency_ms_p99": round(values[max(int(len(values) * 0.99) - 1, 0)], 3),
    }
