"""TagRepository: monitored tags (``monitoring`` set) and the jobs indexed under each.

While a tag is monitored, the push, finish and retry scripts index every job carrying it in
``tag:<tag>:jobs`` (pending, completed and failed, at the job's push score), trimmed by
``trim.monitored``; those jobs' records are kept that long too. Stopping releases them: the index
is deleted and each record goes back to its own list's expiry (the ``unmonitor`` script).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from horizon.jobs import MAX_TAG_LENGTH  # one limit for the API and dispatch
from horizon.keys import DOT_SEGMENTS
from horizon.repositories.jobs import BATCH, PAGE_SIZE, JobRepository

if TYPE_CHECKING:
    from horizon.context import Horizon


def check_tag(tag: str) -> str:
    """The tag, or ValueError naming what is wrong with it."""
    if not isinstance(tag, str) or not tag.strip():
        raise ValueError(f"tag must be a non-empty string, got {tag!r}")
    if len(tag) > MAX_TAG_LENGTH:
        raise ValueError(f"tag must be at most {MAX_TAG_LENGTH} characters, got {len(tag)}")
    if tag in DOT_SEGMENTS:  # monitoring/{tag}: a browser's URL parser drops such a segment
        raise ValueError(f"tag must not be {tag!r}")
    return tag


class TagRepository:
    """Monitored tags and the jobs carrying them."""

    def __init__(self, hz: Horizon) -> None:
        self.hz, self.redis, self.keys = hz, hz.redis, hz.keys
        self.jobs_repo = JobRepository(hz)

    def monitoring(self) -> list[dict]:
        """[{tag, count}] sorted by tag; count = jobs currently indexed under it."""
        tags = sorted(self.redis.smembers(self.keys.monitoring()))
        pipe = self.redis.pipeline(transaction=False)
        for tag in tags:
            pipe.zcard(self.keys.tag_jobs(tag))
        counts = pipe.execute() if tags else []
        return [{"tag": tag, "count": int(count)} for tag, count in zip(tags, counts, strict=True)]

    def is_monitored(self, tag: str) -> bool:
        return bool(self.redis.sismember(self.keys.monitoring(), tag))

    def monitor(self, tag: str) -> None:
        """Start monitoring ``tag``: jobs pushed or finishing from now on are indexed under it."""
        self.redis.sadd(self.keys.monitoring(), check_tag(tag))

    def stop_monitoring(self, tag: str) -> None:
        """Stop monitoring ``tag``, delete its index and release its jobs (in batches)."""
        check_tag(tag)
        while int(self.hz.scripts.call("unmonitor", tag, BATCH)) > 0:
            pass

    def jobs(self, tag: str, starting_at: float | None = None, limit: int = PAGE_SIZE) -> tuple[list[dict], int]:
        """Jobs indexed under ``tag``, newest first, and their total (no jobs when not monitored)."""
        return self.jobs_repo.page_tag(tag, starting_at, limit)
