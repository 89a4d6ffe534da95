"""RpcSessionRepository: JSON-RPC websocket sessions, one Redis string per session with expiry."""

from __future__ import annotations

import json
import secrets
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from horizon.context import Horizon


class RpcSessionRepository:
    """Sessions under ``keys.rpc_session(sid)``: ``{"created", "valid_until"}``, expiring with them."""

    def __init__(self, hz: Horizon) -> None:
        self.redis, self.keys = hz.redis, hz.keys

    def create(self, duration: int) -> dict[str, Any]:
        """A new session valid for ``duration`` seconds: ``{"sid", "valid_until"}``."""
        sid = secrets.token_urlsafe(24)
        now = int(time.time())
        record = {"created": now, "valid_until": now + duration}
        self.redis.set(self.keys.rpc_session(sid), json.dumps(record), ex=duration)
        return {"sid": sid, "valid_until": record["valid_until"]}

    def get(self, sid: str) -> dict[str, Any] | None:
        """The live session ``{"sid", "valid_until"}``, or None when unknown, destroyed or expired."""
        raw = self.redis.get(self.keys.rpc_session(sid))
        if raw is None:
            return None
        return {"sid": sid, "valid_until": int(json.loads(raw)["valid_until"])}

    def destroy(self, sid: str) -> bool:
        return bool(self.redis.delete(self.keys.rpc_session(sid)))
