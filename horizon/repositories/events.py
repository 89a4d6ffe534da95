"""EventRepository: reads of the capped event stream written by the Lua scripts (SSE, RPC)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from horizon.context import Horizon

Entry = tuple[str, dict[str, str]]


class EventRepository:
    """The ``events`` stream of one prefix: newest id, and blocking reads after an id."""

    def __init__(self, hz: Horizon) -> None:
        self.redis, self.key = hz.redis, hz.keys.events()

    def latest_id(self) -> str:
        """The newest entry's id, or ``0-0`` when the stream is empty (read after it for new events)."""
        newest = self.redis.xrevrange(self.key, count=1)
        return newest[0][0] if newest else "0-0"

    def read(self, after: str, block_ms: int, count: int = 100) -> list[Entry]:
        """Entries after ``after``, waiting up to ``block_ms`` for the first one ([] on timeout)."""
        reply = self.redis.xread({self.key: after}, count=count, block=max(block_ms, 1))
        return list(reply[0][1]) if reply else []
