"""A reload checks before it stops anything: the new configuration and job modules, in a child.

A reload (SIGHUP, ``systemctl reload``) stops the master's supervisors and workers gracefully and
runs its command again, to pick up a new config.yaml and new job code. If that new run cannot
start (a typo in the YAML, a value out of range, a job module that no longer imports), the host
would be left without workers, and under systemd the unit restarting until its start limit fails
it. So the master first runs ``<its command> --check`` in a child process, which loads the
configuration and imports the job modules as the new run would, and goes ahead only when it
exits 0; otherwise it logs the check's error and goes on as it is (as ``nginx -s reload`` does).
The check runs beside the loop, which keeps supervising and pinging the watchdog meanwhile.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

CHECK_TIMEOUT = 120.0  # seconds a check may take before it counts as failed (imports that hang)
OUTPUT_LIMIT = 4000  # characters of the check's output kept for the log


def command_line() -> list[str]:
    """This process's command, to run again: the interpreter and its original arguments."""
    return [sys.executable, *sys.orig_argv[1:]]


class ReloadCheck:
    """``<command> --check`` running in a child; :meth:`result` says how it ended."""

    def __init__(self, argv: list[str], started_at: float) -> None:
        self.output = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a chatty import cannot block it
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self.output, stderr=subprocess.STDOUT, text=True
        )
        self.started_at = started_at

    @classmethod
    def start(cls, now: float) -> ReloadCheck:
        return cls([*command_line(), "--check"], now)

    def result(self, now: float) -> tuple[bool, str] | None:
        """None while it runs; else (passed, its output). One running past CHECK_TIMEOUT is killed
        and fails."""
        code = self.process.poll()
        if code is None:
            if now - self.started_at < CHECK_TIMEOUT:
                return None
            self.process.kill()
            self.process.wait()
            return False, self._output() + f"\n(check killed after {CHECK_TIMEOUT:g}s)"
        return code == 0, self._output() or f"(check exited {code})"

    def cancel(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.output.close()

    def _output(self) -> str:
        self.output.seek(0)
        text = self.output.read().strip()
        self.output.close()
        return text[-OUTPUT_LIMIT:]
