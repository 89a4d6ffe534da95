"""Redis Cluster routing: every connection horizon opens lands on the node that serves its prefix.

All of horizon's keys share one hash slot (``{prefix}:...``, see :mod:`horizon.keys`), so one node
of a Redis Cluster serves all of them. ``redis.url`` may name any node: the connections
:func:`connection_options` sets up (every client :func:`horizon.connection.connect` makes, and the
scripts' own connections, which are made from the same pool options) open their socket where the
process's route for ``(url host, port, slot)`` points. The first socket of a process asks the
URL's node ``CLUSTER SLOTS``: a plain Redis or Valkey answers that it has no cluster support,
and its route is then itself, with nothing more asked and replies read as redis-py reads them (a
plain server pays one round trip per process, none per command). A cluster node answers which
node owns the slot; the connection goes there, with the URL's credentials and TLS options.
Forked children inherit the routes.

On a cluster, commands are sent and replies read through :meth:`_Routed._send_routed` and
:meth:`_Routed._read_routed`. ``MOVED`` (the slot moved after a resharding or a failover) records
the node it names as the route, closes the connection and raises :class:`SlotMoved`; the
process's other connections open again on the new owner before their next command. ``ASK`` and
``TRYAGAIN`` (a migration in progress) and ``CLUSTERDOWN`` raise :class:`ClusterRedirect`, with
the route kept. A redirected command did not run, so both are a
:class:`horizon.connection.WritesRefused`: callers retry them as they retry a Redis that refuses
writes for now (the worker waits it out, the API answers 503, a supervision pass logs it).
A client sends a MOVED command again to the new owner by its retry policy: redis-py's
default (with backoff) for the app's, workers' and web's clients, at once for the supervision
loops' (:func:`moved_retry`). A route whose node no longer answers is forgotten, and the URL's node
(then any node it named before) is asked again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.connection import Connection, SSLConnection, parse_url
from redis.crc import key_slot
from redis.retry import Retry

from horizon.connection import WritesRefused

log = logging.getLogger(__name__)

_NO_CLUSTER = "cluster support disabled"  # Redis's and Valkey's answer to CLUSTER on a plain server
_UNKNOWN_HOSTS = ("", "?")  # CLUSTER SLOTS: the node does not know its address (the one asked, then)
_REDIRECTS = (redis.exceptions.AskError, redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError)


class ClusterRedirect(WritesRefused):
    """A cluster node did not run the command: the prefix's slot is being migrated (``ASK``,
    ``TRYAGAIN``) or the cluster is down (``CLUSTERDOWN``). Retry shortly."""

    def __init__(self, reason: str, reply: str) -> None:
        redis.ConnectionError.__init__(self, f"redis cluster: {reason}: {reply}")
        self.reason, self.reply = reason, reply


class SlotMoved(ClusterRedirect):
    """``MOVED``: another node serves the prefix's slot now (a resharding, a failover). The
    command did not run; the connection was closed and opens on the new owner when used again,
    so horizon's clients retry it at once (:func:`moved_retry`)."""


class MovedRetry(Retry):
    """redis-py's policy without retries (``Retry(NoBackoff(), 0)``: a failed call's connection
    is closed and the error raised; callers wait out outages), except that a command answered
    MOVED is sent again at once, once, to the new owner. A URL asking redis-py for retries
    (``retry_on_timeout``, ``retry_on_error``) gets redis-py's one retry of every such error."""

    def __init__(self) -> None:
        super().__init__(NoBackoff(), 1)
        self._every_error = False

    def update_supported_errors(self, specified_errors: Any) -> None:
        super().update_supported_errors(specified_errors)
        self._every_error = True

    def call_with_retry(self, do: Any, fail: Any, is_retryable: Any = None, with_failure_count: bool = False) -> Any:
        failures = 0
        while True:
            try:
                return do()
            except self._supported_errors as error:
                if is_retryable and not is_retryable(error):
                    raise
                failures += 1
                if with_failure_count:
                    fail(error, failures)
                else:
                    fail(error)
                if failures > self._retries or not (self._every_error or isinstance(error, SlotMoved)):
                    raise


def moved_retry() -> MovedRetry:
    """The retry policy of horizon's clients (:class:`MovedRetry`)."""
    return MovedRetry()


@dataclass(frozen=True)
class Route:
    """Where connections for one (URL node, slot) open: ``cluster`` False for a plain server."""

    host: str
    port: int
    cluster: bool


_routes: dict[tuple[str, int, int], Route] = {}  # (URL host, URL port, slot) -> route, per process
_nodes: dict[tuple[str, int], list[tuple[str, int]]] = {}  # URL node -> the masters it named last


def route_of(host: str, port: int, slot: int) -> Route | None:
    """This process's route for connections to ``host:port`` serving ``slot`` (None: not asked yet)."""
    return _routes.get((host, int(port), slot))


def prefix_slot(prefix: str) -> int:
    """The cluster hash slot of every key of ``prefix`` (its hash tag)."""
    return key_slot(("{" + prefix + "}").encode())


class _Routed:
    """Mixin over redis-py's TCP connections: connect to the route's node (see the module doc)."""

    _sock: Any
    host: str
    port: int

    def __init__(self, *args: Any, routing_slot: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seed = (self.host, self.port)
        self._slot = routing_slot
        self._key = (*self._seed, routing_slot)

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if self._sock:
            return
        options = {"check_health": check_health, "retry_socket_connect": retry_socket_connect}
        route = _routes.get(self._key)
        if route is not None:
            try:
                return self._open(route, options)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if not route.cluster or (route.host, route.port) == self._seed:
                    raise
                if _routes.get(self._key) is route:  # not already replaced by another thread
                    del _routes[self._key]
                log.info("cluster node %s:%d does not answer (%s); asking again who serves slot %d",
                         route.host, route.port, exc, self._slot)
        self._resolve(options)

    def _open(self, route: Route, options: dict[str, bool]) -> None:
        """Open the socket on ``route``'s node (the handshake with redis-py's own methods)."""
        self.__dict__.pop("send_packed_command", None)
        self.__dict__.pop("read_response", None)
        self.host, self.port = route.host, route.port
        super().connect_check_health(**options)  # type: ignore[misc]
        self._follow(route)

    def _follow(self, route: Route) -> None:
        """Use ``route`` from now on. On a cluster, commands are sent and replies read through
        the routed methods (instance attributes: a plain server keeps redis-py's own, unwrapped)."""
        self._route = route
        if route.cluster:
            self.send_packed_command = self._send_routed
            self.read_response = self._read_routed

    def _resolve(self, options: dict[str, bool]) -> None:
        """Connect to the URL's node (else a node it named before), ask it who serves the slot,
        record the route and stay, or move to the owner."""
        error: Exception | None = None
        for host, port in dict.fromkeys([self._seed, *_nodes.get(self._seed, ())]):
            try:
                self._open(Route(host, port, False), options)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                error = error or exc
                continue
            route = self._ask_owner()
            _routes[self._key] = route
            if (route.host, route.port) == (host, port):
                self._follow(route)  # it serves the slot, or is a plain server: stay
                return
            self.disconnect()  # type: ignore[attr-defined]
            self._open(route, options)
            return
        assert error is not None
        raise error

    def _ask_owner(self) -> Route:
        """The route the connected node gives for the slot (CLUSTER SLOTS)."""
        here = (self.host, self.port)
        self.send_command("CLUSTER", "SLOTS")  # type: ignore[attr-defined]
        try:
            reply = type(self).read_response(self)  # type: ignore[attr-defined]
        except redis.ResponseError as exc:
            if _NO_CLUSTER in str(exc):
                return Route(*here, cluster=False)
            log.info("cannot ask %s:%d for the cluster's slots (%s); following MOVED replies", *here, exc)
            return Route(*here, cluster=True)
        masters = [(_text(m[0]) or here[0], int(m[1])) for _, _, m, *_ in reply]
        masters = [(here[0] if h in _UNKNOWN_HOSTS else h, p) for h, p in masters]
        _nodes[self._seed] = masters
        for (start, end, *_), owner in zip(reply, masters, strict=True):
            if int(start) <= self._slot <= int(end):
                if owner != here:
                    log.info("slot %d is served by %s:%d (asked %s:%d)", self._slot, *owner, *here)
                return Route(*owner, cluster=True)
        log.warning("no cluster node serves slot %d yet (asked %s:%d)", self._slot, *here)
        return Route(*here, cluster=True)

    def _send_routed(self, command: Any, check_health: bool = True) -> None:
        """send_packed_command on a cluster node: a connection opened before the slot moved (a
        MOVED another connection of this process read) opens again on the new owner first."""
        if _routes.get(self._key) is not self._route:
            self.disconnect()  # type: ignore[attr-defined]
        type(self).send_packed_command(self, command, check_health)  # type: ignore[attr-defined]

    def _read_routed(self, *args: Any, **kwargs: Any) -> Any:
        """read_response on a cluster node: redirects become :class:`SlotMoved`."""
        try:
            return type(self).read_response(self, *args, **kwargs)  # type: ignore[attr-defined]
        except redis.exceptions.MovedError as exc:  # before AskError: redis-py's MOVED is a kind of ASK
            if exc.slot_id != self._slot:
                raise  # a key of another slot sent through horizon's client: not ours to follow
            self._moved(exc)
            raise SlotMoved(f"slot {exc.slot_id} moved to {exc.host}:{exc.port}", f"MOVED {exc}") from exc
        except _REDIRECTS as exc:
            raise ClusterRedirect(f"slot {self._slot} is migrating or the cluster is down", str(exc)) from exc

    def _moved(self, exc: redis.exceptions.MovedError) -> None:
        """Route the slot to the node MOVED names and close this connection (it opens there next).
        An empty host is the one this connection used; an unknown one (``?``) is asked for again."""
        log.info("slot %d moved from %s:%d to %s:%d", self._slot, self.host, self.port, exc.host, exc.port)
        if exc.host == "?":
            _routes.pop(self._key, None)
        else:
            _routes[self._key] = Route(exc.host or self.host, int(exc.port), cluster=True)
        self.disconnect()  # type: ignore[attr-defined]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RoutedConnection(_Routed, Connection):
    """A TCP connection routed to the node serving the prefix's slot."""


class RoutedSSLConnection(_Routed, SSLConnection):
    """A TLS connection routed to the node serving the prefix's slot."""


_ROUTED = {Connection: RoutedConnection, SSLConnection: RoutedSSLConnection}


def connection_options(url: str, prefix: str) -> dict[str, Any]:
    """Client options that route ``url``'s connections to the node serving ``prefix``'s slot:
    none for a unix socket (no cluster listens there)."""
    routed = _ROUTED.get(parse_url(url).get("connection_class", Connection))
    if routed is None:
        return {}
    # the client's retry policy stays its own (redis-py's default retries a ConnectionError, which
    # SlotMoved is, with backoff; the supervision clients use moved_retry())
    return {"connection_class": routed, "routing_slot": prefix_slot(prefix)}
