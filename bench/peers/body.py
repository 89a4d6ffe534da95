"""The job body every system runs: one INCR of a Redis counter (a direct connection, not the broker's)."""

from __future__ import annotations

import os

import redis

COUNTER = "bench:counter"
_client: redis.Redis | None = None


def incr() -> None:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["BENCH_COUNTER_URL"])
    _client.incr(COUNTER)
