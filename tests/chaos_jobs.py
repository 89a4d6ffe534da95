"""Jobs for the mixed-workload chaos test: each records its executions in Redis (HORIZON_TEST_REDIS)."""

from __future__ import annotations

import os
import time

from horizon import job
from tests.sample_jobs import _r


@job(name="chaos.ok")
def ok(tag: str) -> None:
    _r().rpush("chaos:ran", tag)


@job(name="chaos.tagged", tags=lambda tag: ["chaos:" + tag.split("-")[0]])
def tagged(tag: str) -> None:
    _r().rpush("chaos:ran", tag)


@job(name="chaos.flaky", tries=4)
def flaky(tag: str) -> None:
    """Fails its first run, then succeeds."""
    if _r().incr("chaos:attempt:" + tag) < 2:
        raise RuntimeError("first run fails: " + tag)
    _r().rpush("chaos:ran", tag)


@job(name="chaos.bad", tries=2)
def bad(tag: str) -> None:
    raise ValueError("always fails: " + tag)


@job(name="chaos.crash", tries=2, timeout=3)
def crash(tag: str) -> None:
    """Kills the worker process that runs it."""
    os._exit(7)


@job(name="chaos.callback")
def callback(tag: str) -> None:
    _r().rpush("chaos:callbacks", tag)


@job(name="chaos.tick")
def tick() -> None:
    _r().rpush("chaos:ticks", time.time())
