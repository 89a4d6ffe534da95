"""Lua scripts: loads ``horizon/lua/*.lua``, prepends the shared prelude and key builders.

Every state change of a job (push, reserve, finish, release, retry, progress, maintenance) is one
script call, so the job hash, every index, metrics, tags and the event stream change atomically.
Calls go through redis-py's ``Script`` (EVALSHA, loading the script on NOSCRIPT).
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from horizon.keys import Keys, lua_builders

if TYPE_CHECKING:
    import redis

    from horizon.config import Settings


def script_names() -> list[str]:
    """Every ``horizon/lua/<name>.lua`` except the prelude."""
    lua = resources.files("horizon") / "lua"
    return sorted(p.name[:-4] for p in lua.iterdir() if p.name.endswith(".lua") and p.name != "prelude.lua")


# Most wake-up tokens kept per queue: enough to wake every idle worker, bounded for memory.
WAKE_CAP = 256

# A job that ignores its timeout is stopped this many seconds later (worker hard timeout).
TIMEOUT_GRACE = 5.0

# Workers prefetch several jobs only from queues whose runtime estimate is at most this (ms).
PREFETCH_MAX_RUNTIME_MS = 50


# A top-level definition in the prelude: ``local function f``, ``local X =`` or ``K.name = function``.
_DEFINITION = re.compile(r"^(?:local function (\w+)|local (\w+)\s*=|K\.(\w+) = function)")
_WORD = re.compile(r"\bK\.\w+|\b[A-Za-z_]\w*")


def _references(code: str) -> set[str]:
    """Names a piece of Lua mentions outside comments (``K.x`` counts as ``K.x`` and ``K``)."""
    words: set[str] = set()
    for line in code.splitlines():
        for word in _WORD.findall(line.split("--", 1)[0]):
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
def source(name: str) -> str:
    """Lua source of script ``name``: the prelude pieces it uses (key builders, helpers, settings),
    then the script body. Each Redis call runs the whole text, so unused helpers are left out:
    every helper defined is a closure allocated per call."""
    body = (resources.files("horizon") / "lua" / f"{name}.lua").read_text()
    chunks = _prelude_chunks()
    needed = _references(body)
    for chunk_name, text in reversed(chunks):  # a helper only uses those defined before it
        if chunk_name in needed:
            needed |= _references(text) - {chunk_name}
    return "\n".join(text for chunk_name, text in chunks if chunk_name in needed) + "\n" + body


def script_settings(settings: Settings) -> str:
    """The settings JSON every script receives as ARGV[2] (times in seconds)."""
    trim = settings.trim
    rate_limits = {
        name: [q.rate_limit.jobs, q.rate_limit.per]
        for name, q in settings.queues.items()
        if q.rate_limit is not None
    }
    return json.dumps(
        {
            "margin": settings.reservation_margin,
            "events_max": settings.events_max,
            "wake_cap": WAKE_CAP,
            "grace": TIMEOUT_GRACE,
            "prefetch_ms": PREFETCH_MAX_RUNTIME_MS,
            "trim": {
                "recent": trim.recent * 60,
                "pending": trim.pending * 60,
                "completed": trim.completed * 60,
                "recent_failed": trim.recent_failed * 60,
                "failed": trim.failed * 60,
                "monitored": trim.monitored * 60,
            },
            # a JSON object (not a list) so Lua can test membership; never empty for cjson
            "silenced": {name: True for name in settings.silenced} or {"": False},
            "rl": rate_limits or {"": False},
        },
        separators=(",", ":"),
    )


class Scripts:
    """The scripts registered on one Redis client for one prefix and settings."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.keys = Keys(settings.prefix)
        self._head = [self.keys.tagged, script_settings(settings)]
        self._routing = [self.keys.clock()]
        self._scripts = {name: client.register_script(source(name)) for name in script_names()}

    def args(self, *args: Any) -> list[Any]:
        return [*self._head, *args]

    def send(self, pipe: Any, name: str, *args: Any) -> None:
        """Queue script ``name`` on a pipeline as a bare EVALSHA (no SCRIPT EXISTS round trip)."""
        pipe.execute_command("EVALSHA", self._scripts[name].sha, 1, *self._routing, *self.args(*args))

    def call(self, name: str, *args: Any, client: Any = None) -> Any:
        """Run script ``name`` with ``args`` after the shared head (on ``client`` if given)."""
        return self._scripts[name](keys=self._routing, args=self.args(*args), client=client)
