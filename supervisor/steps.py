"""One pass of a supervision loop, step by step: a step that fails does not skip the others.

The master's and each supervisor's loop mix local duties (signals, reaping and replacing
children, memory checks, the systemd watchdog) with Redis calls (commands, balancing,
heartbeats). While Redis is away the Redis steps fail; the local ones must still run, or dead
workers are not replaced and the watchdog goes silent (systemd would then kill a healthy master
for an outage it cannot fix). A Redis outage is logged once when it starts and once when it
ends, not as a traceback per pass; so is a Redis that refuses writes for now (out of memory,
read-only: ``horizon.connection.as_refusal``). Any other failure is logged with its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

from horizon.connection import as_refusal

REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)  # BusyLoadingError (AOF loading) is a ConnectionError
CALLED_REDIS = object()  # what a step returns when it did call Redis this time (e.g. a heartbeat that was due)


class LoopSteps:
    """Runs named steps for ``owner`` (its logger), each on its own."""

    def __init__(self, log: logging.Logger, owner: str) -> None:
        self.log, self.owner = log, owner
        self.redis_down: str | None = None  # the step that noticed the outage
        self.refused: str | None = None  # the step whose writes Redis refused

    def run(self, name: str, step: Callable[[], object], *, always_calls_redis: bool = False) -> None:
        """Run ``step``. A step that always calls Redis, or returns CALLED_REDIS (it did this time),
        ends a logged outage when it succeeds; a refusal of writes ends when the step it refused does so
        (a step that only reads or deletes still runs while Redis refuses writes)."""
        try:
            result = step()
        except (*REDIS_DOWN, redis.ResponseError) as exc:
            refusal = as_refusal(exc)
            if refusal is not None:
                if self.refused is None:
                    self.refused = name
                    self.log.warning("%s; %s goes on without its writes, retrying each pass", refusal, self.owner)
            elif isinstance(exc, REDIS_DOWN):
                if self.redis_down is None:
                    self.redis_down = name
                    self.log.warning("redis unavailable (%s); %s goes on without it, retrying each pass",
                                     exc, self.owner)
            else:
                self.log.exception("%s loop: %s failed", self.owner, name)
        except Exception:
            self.log.exception("%s loop: %s failed", self.owner, name)
        else:
            called = always_calls_redis or result is CALLED_REDIS
            if called and self.redis_down is not None:
                self.redis_down = None
                self.log.warning("redis reachable again; %s resumes its Redis duties", self.owner)
            if called and self.refused == name:
                self.refused = None
                self.log.warning("redis accepts writes again; %s resumes its Redis duties", self.owner)
