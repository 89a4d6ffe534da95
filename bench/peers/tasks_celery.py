"""The benchmark task for Celery: prefork pool, acks_late (at-least-once, as horizon), no results."""

import os

from celery import Celery

from bench.peers import body

app = Celery("bench", broker=os.environ["BENCH_BROKER_URL"])
app.conf.update(
    task_acks_late=True,  # ack after the task ran: the same delivery guarantee as horizon
    task_ignore_result=True,
    worker_prefetch_multiplier=64,  # Celery docs: 64-128 for many short tasks (default 4)
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.incr")
def incr() -> None:
    body.incr()
