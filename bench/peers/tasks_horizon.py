"""The benchmark job for horizon."""

from bench.peers import body
from horizon import job


@job(name="bench.incr")
def incr() -> None:
    body.incr()
