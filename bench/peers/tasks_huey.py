"""The benchmark task for Huey (RedisHuey, blocking reads, results not stored)."""

import os

from huey import RedisHuey

from bench.peers import body

huey = RedisHuey("bench", url=os.environ["BENCH_BROKER_URL"], results=False, blocking=True)


@huey.task()
def incr() -> None:
    body.incr()
