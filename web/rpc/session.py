"""The ``session`` namespace: version, create, restore, destroy, id, namespaces; per-connection state."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from horizon.repositories.rpc_sessions import RpcSessionRepository
from web.rpc.protocol import (
    ACCESS_DENIED,
    AUTHENTICATION_FAILED,
    INVALID_SESSION,
    Dispatcher,
    RpcError,
    invalid_params,
)

if TYPE_CHECKING:
    from horizon.context import Horizon

VERSION = {"major": 1, "minor": 1}
DEFAULT_DURATION = 86400
MAX_DURATION = 30 * 86400
NAMESPACES = ("session", "jq")

audit = logging.getLogger("horizon.audit")


@dataclass
class Connection:
    """One websocket connection: its horizon, its session id and its subscription (if any)."""

    hz: Horizon
    remote: str = "-"
    sid: str | None = None
    subscription: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def sessions(self) -> RpcSessionRepository:
        return RpcSessionRepository(self.hz)

    def require_session(self, write: str = "") -> dict[str, Any]:
        """The live session of this connection; RpcError -32000 when none or expired.

        ``write`` names a mutating method: refused (-32604) under ``web.read_only``, else audited.
        """
        if write and self.hz.settings.web.read_only:
            raise RpcError(ACCESS_DENIED, "access denied: the server is read-only (web.read_only: true)")
        if self.sid is None:
            raise RpcError(INVALID_SESSION, "invalid session: call session.create or session.restore first")
        session = self.sessions.get(self.sid)
        if session is None:
            self.sid = None
            raise RpcError(INVALID_SESSION, "invalid session: the session expired or was destroyed")
        if write:
            audit.info(
                "who=%s session=%s what=rpc %s when=%s",
                self.remote,
                hashlib.sha256(self.sid.encode()).hexdigest()[:12],
                write,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
        return session


def _check_token(conn: Connection, token: Any) -> None:
    auth = conn.hz.settings.web.auth
    expected = auth.token
    if not expected or auth.disabled:
        return
    if not isinstance(token, str) or not hmac.compare_digest(token.encode(), expected.encode()):
        raise RpcError(AUTHENTICATION_FAILED, "authentication failed: wrong or missing token")


def _no_session_yet(conn: Connection) -> None:
    if conn.sid is not None and conn.sessions.get(conn.sid) is not None:
        raise RpcError(INVALID_SESSION, "this connection already has a session (session.destroy it first)")


def version(conn: Connection) -> dict[str, int]:
    return dict(VERSION)


def create(conn: Connection, *, token: Any = None, duration: Any = DEFAULT_DURATION) -> dict[str, Any]:
    if isinstance(duration, bool) or not isinstance(duration, int) or not 0 < duration <= MAX_DURATION:
        raise invalid_params(f"duration must be an integer number of seconds in 1..{MAX_DURATION}")
    _check_token(conn, token)
    _no_session_yet(conn)
    session = conn.sessions.create(duration)
    conn.sid = session["sid"]
    return session


def restore(conn: Connection, *, sid: Any, token: Any = None) -> dict[str, Any]:
    if not isinstance(sid, str) or not sid:
        raise invalid_params("sid must be a non-empty string")
    _check_token(conn, token)
    _no_session_yet(conn)
    session = conn.sessions.get(sid)
    if session is None:
        raise RpcError(INVALID_SESSION, "invalid session id")
    conn.sid = sid
    return session


def destroy(conn: Connection) -> str:
    conn.require_session()
    conn.sessions.destroy(conn.sid)
    conn.sid = None
    if conn.subscription is not None:
        conn.subscription.stop()
        conn.subscription = None
    return "OK"


def session_id(conn: Connection) -> dict[str, Any]:
    return conn.require_session()


def namespaces(conn: Connection) -> list[dict[str, Any]]:
    valid = conn.sid is not None and conn.sessions.get(conn.sid) is not None
    out = []
    for name in NAMESPACES:
        entry: dict[str, Any] = {"namespace": name, "authorized": name == "session" or valid}
        if valid:
            entry["licensed"] = True
        out.append(entry)
    return out


def register(dispatcher: Dispatcher) -> None:
    for name, handler in {
        "version": version,
        "create": create,
        "restore": restore,
        "destroy": destroy,
        "id": session_id,
        "namespaces": namespaces,
    }.items():
        dispatcher.add(f"session.{name}", handler)
