"""Access control for the API: bearer token, read-only mode, audit log, security headers.

When ``web.auth.token`` is set every API call (and the Prometheus exposition) needs
``Authorization: Bearer <token>``, compared in constant time. ``web.read_only`` answers every
mutating call with 403. Without a token in force (a loopback bind), a web page in the operator's
browser could still call the API on 127.0.0.1 (a form POST, or a websocket, needs no CORS
permission): a mutating call or the JSON-RPC websocket whose ``Origin`` is not this server (or
whose ``Sec-Fetch-Site`` is ``cross-site``) is refused with 403. curl and scripts send no Origin.
Each mutating call is logged on ``horizon.audit``: who (remote address
and a token fingerprint, never the token), what (method, path, status) and when.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, request

from web.errors import ApiError

audit = logging.getLogger("horizon.audit")

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RPC_ENDPOINT = "rpc.rpc"  # the JSON-RPC websocket (web.rpc), which can change things too
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def fingerprint(token: str) -> str:
    """A short, non-reversible name for a token in logs."""
    return hashlib.sha256(token.encode()).hexdigest()[:12] if token else "-"


def _presented_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _protected() -> bool:
    """API routes and the metrics exposition need the token; dashboard pages and assets do not."""
    endpoint = request.endpoint or ""
    return endpoint.startswith("api_") or endpoint == "prometheus.exposition" or request.blueprint is None


def _foreign_origin() -> str | None:
    """Why this request comes from a page of another site, or None (same site, or no browser)."""
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return "Sec-Fetch-Site: cross-site"
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    hosts = {request.host, *(h.strip() for h in request.headers.get("X-Forwarded-Host", "").split(","))}
    if urlsplit(origin).netloc in hosts - {""}:
        return None
    return f"Origin {origin[:100]!r}"


def check_access() -> None:
    """before_request: cross-site calls without a token (403), token (401), then read-only (403)."""
    settings = current_app.extensions["horizon"].settings.web
    g.token = _presented_token()
    token = settings.auth.token
    protected = _protected()
    if (not token or settings.auth.disabled) and (
        (protected and request.method in MUTATING) or request.endpoint == RPC_ENDPOINT
    ):
        why = _foreign_origin()
        if why:
            raise ApiError(403, f"cross-site request refused ({why}): with no web.auth.token, only this "
                                "server's own pages may change things")
    if not protected:
        return
    if token and not settings.auth.disabled:
        if not g.token:
            raise ApiError(401, "this API needs a token: send 'Authorization: Bearer <token>'")
        if not hmac.compare_digest(g.token.encode(), token.encode()):
            raise ApiError(401, "the bearer token is not valid")
    if settings.read_only and request.method in MUTATING:
        raise ApiError(403, "the API is read-only (web.read_only: true)")


def after(response: Response) -> Response:
    """Security headers on every response; an audit line for every mutating call."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if request.method in MUTATING:
        audit.info(
            "who=%s token=%s what=%s %s status=%d when=%s",
            request.remote_addr or "-",
            fingerprint(g.get("token", "")),
            request.method,
            request.full_path.rstrip("?"),
            response.status_code,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
    return response


def register(app: Flask) -> None:
    app.before_request(check_access)
    app.after_request(after)
