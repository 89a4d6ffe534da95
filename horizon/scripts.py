"""Lua scripts: loads ``horizon/lua/*.lua``, prepends the shared prelude and key builders.

Every state change of a job (push, reserve, finish, release, retry, progress, maintenance) is one
script call, so the job hash, every index, metrics, tags and the event stream change atomically.
Calls are EVALSHA on a connection of the calling thread (see :class:`Scripts`).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import redis

from horizon.cluster import ClusterRedirect, SlotMoved
from horizon.connection import as_refusal
from horizon.keys import Keys, lua_builders

try:  # hiredis is a dependency; without it redis-py packs (slower: a Python pass over every argument)
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover
    _hiredis_pack = None

if TYPE_CHECKING:
    from horizon.config import Settings


def script_names() -> list[str]:
    """Every ``horizon/lua/<name>.lua`` except the prelude."""
    lua = resources.files("horizon") / "lua"
    return sorted(p.name[:-4] for p in lua.iterdir() if p.name.endswith(".lua") and p.name != "prelude.lua")


# Most wake-up tokens kept per queue: enough to wake every idle worker, bounded for memory.
WAKE_CAP = 256


# Scripts that reserve jobs for a worker. A connection error on one of them is raised, not retried
# through the client: the call may have run and reserved jobs whose reply was lost, and running it
# again would leave those reserved until their windows end. The worker puts them back first.
RESERVING = frozenset({"reserve", "finish"})

# Workers prefetch several jobs only from queues whose runtime estimate is at most this (ms).
PREFETCH_MAX_RUNTIME_MS = 50


# A top-level definition in the prelude: ``local function f``, ``local X =`` or ``K.name = function``.
_DEFINITION = re.compile(r"^(?:local function (\w+)|local (\w+)\s*=|K\.(\w+) = function)")
_WORD = re.compile(r"\bK\.\w+|\b[A-Za-z_]\w*")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def _references(code: str) -> set[str]:
    """Names a piece of Lua mentions outside comments and string literals (``K.x`` counts as
    ``K.x`` and ``K``): the field name ``'event'`` is not a use of the helper ``event``."""
    words: set[str] = set()
    for line in code.splitlines():
        for word in _WORD.findall(_STRING.sub("''", line).split("--", 1)[0]):
            words.add(word)
            if word.startswith("K."):
                words.add("K")
    return words


def _prelude_chunks() -> list[tuple[str, str]]:
    """The prelude as ``(defined name, text)`` pieces in order, comments kept with what follows."""
    lua = resources.files("horizon") / "lua"
    text = (lua / "prelude.lua").read_text().replace("--@KEYS@", lua_builders())
    chunks: list[tuple[str, list[str]]] = []
    pending: list[str] = []  # comment and blank lines waiting for the next definition
    for line in text.splitlines():
        match = _DEFINITION.match(line)
        if match:
            name = match.group(1) or match.group(2) or f"K.{match.group(3)}"
            chunks.append((name, [*pending, line]))
            pending = []
        elif chunks and not (line.startswith("--") or not line.strip()):
            chunks[-1][1].extend([*pending, line])
            pending = []
        else:
            pending.append(line)
    return [(name, "\n".join(lines)) for name, lines in chunks]


@cache
def source(name: str, settings: str = "{}") -> str:
    """Lua source of script ``name``: the prelude pieces it uses (key builders, helpers, settings),
    then the script body, with ``settings`` (a Lua table constructor, :func:`lua_settings`) as the
    settings ``C``. Each Redis call runs the whole text, so unused helpers are left out: every
    helper defined is a closure allocated per call."""
    body = (resources.files("horizon") / "lua" / f"{name}.lua").read_text()
    chunks = _prelude_chunks()
    needed = _references(body)
    for chunk_name, text in reversed(chunks):  # a helper only uses those defined before it
        if chunk_name in needed:
            needed |= _references(text) - {chunk_name}
    prelude = "\n".join(text for chunk_name, text in chunks if chunk_name in needed)
    return prelude.replace("--@SETTINGS@", settings, 1) + "\n" + body


def settings_data(settings: Settings) -> dict[str, Any]:
    """What the scripts know of the configuration (``C`` in Lua; times in seconds)."""
    trim = settings.trim
    rate_limits = {
        name: [q.rate_limit.jobs, q.rate_limit.per]
        for name, q in settings.queues.items()
        if q.rate_limit is not None
    }
    return {
        "margin": settings.reservation_margin,
        "events_max": settings.events_max,
        "wake_cap": WAKE_CAP,
        "grace": settings.timeout_grace,
        "prefetch_ms": PREFETCH_MAX_RUNTIME_MS,
        "trim": {
            "recent": trim.recent * 60,
            "pending": trim.pending * 60,
            "completed": trim.completed * 60,
            "recent_failed": trim.recent_failed * 60,
            "failed": trim.failed * 60,
            "monitored": trim.monitored * 60,
        },
        # tables keyed by name, so Lua can test membership
        "silenced": {name: True for name in settings.silenced},
        "rl": rate_limits,
    }


def lua_settings(settings: Settings) -> str:
    """:func:`settings_data` as a Lua table constructor, to write into the scripts' text."""
    return _lua_value(settings_data(settings))


def _lua_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"script settings take finite numbers, not {value!r}")
        return repr(value)
    if isinstance(value, str):
        return _lua_string(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"[{_lua_string(str(k))}]={_lua_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "{" + ",".join(_lua_value(v) for v in value) + "}"
    raise TypeError(f"no Lua form for {type(value).__name__}")


def _lua_string(text: str) -> str:
    """A Lua 5.1 string literal of ``text`` (UTF-8): printable ASCII as is, every other byte as ``\\ddd``."""
    out = []
    for byte in text.encode():
        if 32 <= byte < 127 and byte not in (34, 92):  # not '"' or backslash
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


class _Lane(threading.local):
    """This thread's own connection for script calls (and the pid that opened it)."""

    connection: Any = None
    pid: int = 0


def _raise_if_refused(exc: Exception) -> None:
    """Raise ``WritesRefused`` when the script error ``exc`` is a temporary refusal (see as_refusal)."""
    refusal = as_refusal(exc)
    if refusal is not None:
        raise refusal from exc


class Scripts:
    """The scripts registered on one Redis client for one prefix and settings.

    Script calls go straight to a connection of their own per thread (EVALSHA written and its
    reply read on the connection), not through redis-py's command path: on the job hot path that
    path costs more than Redis takes to run the script. A connection error falls back to the
    client, whose retry policy applies (except for RESERVING scripts: raised); a flushed script
    cache (NOSCRIPT) loads the script again.
    """

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.keys = Keys(settings.prefix)
        self._client = client
        self._head = [self.keys.tagged, ""]
        self._routing = [self.keys.clock()]
        settings_lua = lua_settings(settings)
        self._scripts = {name: client.register_script(source(name, settings_lua)) for name in script_names()}
        # each script's EVALSHA up to its own arguments, built once
        self._commands = {
            name: ("EVALSHA", script.sha, 1, *self._routing, *self._head) for name, script in self._scripts.items()
        }
        self._lane = _Lane()

    def args(self, *args: Any) -> list[Any]:
        return [*self._head, *args]

    def _command(self, name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return self._commands[name] + tuple(args)

    def _packed(self, connection: Any, name: str, args: Sequence[Any]) -> Any:
        """The EVALSHA of script ``name`` in the wire format, for ``send_packed_command``. hiredis
        packs the whole argument tuple in C: redis-py's own packing first walks every argument in
        Python, which costs a bulk dispatch as much as building its jobs does."""
        command = self._command(name, args)
        if _hiredis_pack is not None:
            try:
                return [_hiredis_pack(command)]
            except TypeError:  # an argument hiredis does not take (e.g. bool): redis-py raises DataError
                pass
        return connection.pack_command(*command)

    def send(self, pipe: Any, name: str, *args: Any) -> None:
        """Queue script ``name`` on a pipeline as a bare EVALSHA (no SCRIPT EXISTS round trip)."""
        pipe.execute_command(*self._command(name, args))

    def connection(self) -> Any:
        """This thread's script connection (a new one in a forked child: never the parent's socket)."""
        lane = self._lane
        if lane.connection is None or lane.pid != os.getpid():
            lane.connection, lane.pid = self.new_connection(), os.getpid()
        return lane.connection

    def close(self) -> None:
        """Close this thread's script connection (other threads' close when they are collected)."""
        if self._lane.connection is not None and self._lane.pid == os.getpid():
            self._lane.connection.disconnect()
        self._lane.connection = None

    def call(self, name: str, *args: Any, client: Any = None) -> Any:
        """Run script ``name`` with ``args`` after the shared head (on ``client`` if given). A call
        Redis refuses for now (out of memory, read-only...) raises ``WritesRefused``: it wrote nothing."""
        try:
            return self._call(name, args, client)
        except redis.ResponseError as exc:
            _raise_if_refused(exc)
            raise

    def _call(self, name: str, args: tuple[Any, ...], client: Any) -> Any:
        if client is not None:
            return self._scripts[name](keys=self._routing, args=self.args(*args), client=client)
        connection = self.connection()
        try:
            connection.send_packed_command(self._packed(connection, name, args))
            return connection.read_response()
        except redis.exceptions.NoScriptError:
            return self._load_and_call(connection, name, args)
        except redis.TimeoutError:  # a hung Redis would hang a second try as long: the caller decides
            connection.disconnect()
            raise
        except redis.ConnectionError:
            connection.disconnect()
            if name in RESERVING:  # it may have run: the worker puts back what it reserved, then retries
                raise
            return self._scripts[name](keys=self._routing, args=self.args(*args))

    def call_each(self, name: str, calls: Iterable[Sequence[Any]]) -> list[Any]:
        """Run script ``name`` once per argument list, pipelined: each call is written as soon as
        the iterator yields it, then the replies are read in order. A flushed script cache is
        loaded again and the refused calls (which did not run) are sent again. On a connection
        error the calls already written may have run; the error is raised, nothing is re-sent.
        A cluster node's MOVED (the slot moved; that call did not run) sends them all again, once,
        to the new owner: the script must leave the same state when run twice (push does)."""
        sent: list[tuple[Any, ...]] = []
        try:
            return self._pipelined(name, calls, sent)
        except SlotMoved:
            return self._pipelined(name, list(sent), [])

    def _pipelined(self, name: str, calls: Iterable[Sequence[Any]], sent: list[tuple[Any, ...]]) -> list[Any]:
        """:meth:`call_each` on this thread's connection; ``sent`` collects the calls written."""
        connection = self.connection()
        try:  # a connection the server closed (a restart) is replaced before anything is written
            if connection.is_connected and connection.can_read(timeout=0):
                connection.disconnect()  # unread data: out of step
        except (redis.ConnectionError, redis.TimeoutError):
            connection.disconnect()
        replies: list[Any] = []
        try:
            for args in calls:
                sent.append(tuple(args))
                connection.send_packed_command(self._packed(connection, name, sent[-1]))
            for _ in sent:
                try:
                    replies.append(connection.read_response())
                except redis.ResponseError as exc:  # the reply was read whole: the connection is in step
                    replies.append(exc)
        except BaseException:
            connection.disconnect()
            raise
        for i, reply in enumerate(replies):
            if isinstance(reply, redis.exceptions.NoScriptError):
                replies[i] = self._load_and_call(connection, name, sent[i])
        for reply in replies:
            if isinstance(reply, Exception):
                _raise_if_refused(reply)
                raise reply
        return replies

    def start(self, connection: Any, name: str, *args: Any) -> tuple[Any, str, tuple[Any, ...]]:
        """Write a call of script ``name`` on ``connection`` (one the caller owns) without reading
        the reply; :meth:`collect` reads it. Returns what collect needs."""
        connection.send_packed_command(self._packed(connection, name, args))
        return connection, name, args

    def collect(self, pending: tuple[Any, str, tuple[Any, ...]]) -> Any:
        """The reply of a call written by :meth:`start` (NOSCRIPT: the script is loaded and run)."""
        connection, name, args = pending
        try:
            try:
                return connection.read_response()
            except redis.exceptions.NoScriptError:
                return self._load_and_call(connection, name, args)
        except redis.ResponseError as exc:
            _raise_if_refused(exc)
            raise

    def new_connection(self) -> Any:
        """A connection of the client's kind the caller owns (for :meth:`start`)."""
        pool = self._client.connection_pool
        return pool.connection_class(**pool.connection_kwargs)

    def after_blocking(self, blocking: Sequence[Any], name: str, *args: Any) -> tuple[Any, Any]:
        """Send a blocking command and script ``name`` together (one network round trip): Redis
        runs the script as soon as the command returns. Returns both replies. A cluster node that
        redirected the blocking command (ASK, mid-migration) may still have run the script: that
        raises a plain ConnectionError (a lost reply), MOVED a SlotMoved (it ran neither)."""
        connection = self.connection()
        connection.send_packed_command(connection.pack_commands([blocking, self._command(name, args)]))
        try:
            first = connection.read_response()
        except redis.ResponseError:
            connection.disconnect()  # the script's reply is still unread
            raise
        except ClusterRedirect as exc:
            if not connection.is_connected:  # MOVED: this node serves the slot no more, nor ran the script
                raise
            connection.disconnect()  # ASK mid-migration: the script may have run; its reply is unread
            raise redis.ConnectionError(f"{exc}; the {name} call sent after it may have run") from exc
        try:
            try:
                return first, connection.read_response()
            except redis.exceptions.NoScriptError:
                return first, self._load_and_call(connection, name, args)
        except redis.ResponseError as exc:
            _raise_if_refused(exc)
            raise

    def _load_and_call(self, connection: Any, name: str, args: tuple[Any, ...]) -> Any:
        """The script cache was flushed (a Redis restart): load the script, then call it."""
        connection.send_command("SCRIPT", "LOAD", self._scripts[name].script)
        connection.read_response()
        connection.send_command(*self._command(name, args))
        return connection.read_response()
