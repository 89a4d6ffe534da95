"""systemd notifications (sd_notify): a datagram to ``$NOTIFY_SOCKET``; no-op when it is unset."""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    """Sends READY/WATCHDOG/STOPPING; the watchdog ping goes out at most every WatchdogSec/4."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET", "")
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_interval = int(usec) / 4e6 if usec.isdigit() and int(usec) > 0 else 0.0
        self._last_ping = 0.0

    def send(self, message: str) -> bool:
        if not self.address:
            return False
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message.encode(), address)
        except OSError:
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send(f"READY=1\nMAINPID={os.getpid()}" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def watchdog(self, now: float | None = None) -> bool:
        """Ping the watchdog when it is enabled and due."""
        if not self.watchdog_interval:
            return False
        now = time.monotonic() if now is None else now
        if now - self._last_ping < self.watchdog_interval:
            return False
        self._last_ping = now
        return self.send("WATCHDOG=1")
