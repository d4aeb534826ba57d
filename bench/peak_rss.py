"""The high-water RSS of another running process, for the benchmarks' "peak RSS" column."""

from __future__ import annotations

import threading
from pathlib import Path


class PeakRSS(threading.Thread):
    """The high-water RSS (VmHWM, MB) of process ``pid``, read every 0.2 s until ``stop()`` or it ends.

    Why not its rusage: on Linux a child's ru_maxrss starts from the parent's RSS at fork (the bench's),
    whatever it uses itself; and a long-lived server is no child we wait for.
    """

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.mb = pid, 0.0
        self._done = threading.Event()
        self.start()

    def run(self) -> None:
        while True:
            self.read()
            if self._done.wait(0.2):
                return

    def read(self) -> None:
        """One look at /proc (also called by ``stop()``, so a short run still gets a figure)."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                self.mb = max(self.mb, round(int(line.split()[1]) / 1024, 1))

    def stop(self) -> float:
        """Stop reading; returns the peak in MB."""
        self.read()
        self._done.set()
        self.join()
        return self.mb
