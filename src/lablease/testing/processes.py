"""Start a server process in its own process group and stop the whole group reliably."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from lablease.netutil import wait_for_port


@dataclass
class ServerProcess:
    """A child process started in a new session, so stopping it stops its children too."""

    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: str | None = None
    user: str | None = None  # run as this account via runuser (when we are root)
    proc: subprocess.Popen | None = field(default=None, init=False)

    def start(self) -> "ServerProcess":
        argv = self.argv
        if self.user and os.geteuid() == 0:
            argv = ["runuser", "-u", self.user, "--", *argv]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=self.env, cwd=self.cwd, start_new_session=True,
        )
        return self

    def wait_for_port(self, host: str, port: int, timeout: float = 20.0) -> None:
        """Wait until the server listens; on failure raise with the tail of its log."""
        try:
            wait_for_port(host, port, timeout)
        except TimeoutError as exc:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv[0]} exited with {self.proc.returncode}: {self.log_tail()}") from exc
            raise RuntimeError(f"{exc}; log: {self.log_tail()}") from exc

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it does not exit in time."""
        if self.proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=timeout)
                break
            except subprocess.TimeoutExpired:
                continue
        self._log.close()
        self.proc = None
