"""One pass of a supervision loop, step by step: a step that fails does not skip the others.

The master's and each supervisor's loop mix local duties (signals, reaping and replacing
children, memory checks, the systemd watchdog) with Redis calls (commands, balancing,
heartbeats). While Redis is away the Redis steps fail; the local ones must still run, or dead
workers are not replaced and the watchdog goes silent (systemd would then kill a healthy master
for an outage it cannot fix). A Redis outage is logged once when it starts and once when it
ends, not as a traceback per pass; any other failure is logged with its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)  # BusyLoadingError (AOF loading) is a ConnectionError


class LoopSteps:
    """Runs named steps for ``owner`` (its logger), each on its own."""

    def __init__(self, log: logging.Logger, owner: str) -> None:
        self.log, self.owner = log, owner
        self.redis_down: str | None = None  # the step that noticed the outage

    def run(self, name: str, step: Callable[[], object], *, always_calls_redis: bool = False) -> None:
        """Run ``step``; a step that always calls Redis and succeeds ends a logged outage."""
        try:
            step()
        except REDIS_DOWN as exc:
            if self.redis_down is None:
                self.redis_down = name
                self.log.warning("redis unavailable (%s); %s goes on without it, retrying each pass",
                                 exc, self.owner)
        except Exception:
            self.log.exception("%s loop: %s failed", self.owner, name)
        else:
            if always_calls_redis and self.redis_down is not None:
                self.redis_down = None
                self.log.warning("redis reachable again; %s resumes its Redis duties", self.owner)
