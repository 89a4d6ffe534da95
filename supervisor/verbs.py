"""The verbs every level answers to (master, supervisor, pool): one Protocol says so (STYLE.md)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Supervised(Protocol):
    """pause: workers finish their job and stop; resume: start them again; restart: fresh workers;
    terminate: graceful stop of everything below."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def restart(self) -> None: ...

    def terminate(self) -> None: ...
