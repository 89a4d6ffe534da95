"""The benchmark job for RQ (run by rq's SimpleWorker: no fork per job)."""

from bench.peers import body


def incr() -> None:
    body.incr()
