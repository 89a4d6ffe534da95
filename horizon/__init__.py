"""horizon: a Python job queue on Redis with a Horizon-style master supervisor.

    from horizon import job

    @job(queue="emails", tries=3)
    def send(to: str) -> None: ...

    send.dispatch("a@example.com")
"""

from horizon.context import configure, current
from horizon.jobs import job
from horizon.payload import PayloadError
from horizon.worker import progress
from horizon.workflows import batch

__all__ = ["batch", "configure", "current", "job", "progress", "PayloadError"]
