"""The benchmark actor for Dramatiq (Redis broker, default middleware)."""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.peers import body

broker = RedisBroker(url=os.environ["BENCH_BROKER_URL"])
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="default", max_retries=0)
def incr() -> None:
    body.incr()
