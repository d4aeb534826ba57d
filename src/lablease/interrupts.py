"""Safe Ctrl-C and SIGTERM for commands that create things: the first signal asks for a rollback,
later ones are refused, so that a second Ctrl-C cannot cut the rollback short and leak.

Usage::

    with rollback_on_signal(prov.cancel) as interrupts:
        outcomes = prov.create_many(...)   # returns early, rolled back, once cancelled
    if interrupts.exit_code is not None:
        raise typer.Exit(interrupts.exit_code)   # 130 after SIGINT, 143 after SIGTERM
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Callable, Iterator

FIRST = "interrupted: rolling back, please wait"
AGAIN = "still rolling back, please wait"
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _to_stderr(text: str) -> None:
    # One raw write: a signal handler may run while the main thread is inside sys.stderr's
    # buffered writer, and writing through it again would raise "reentrant call".
    os.write(2, (text + "\n").encode())


class Interrupts:
    """What the handlers saw: the first signal (if any) and how many came after it."""

    def __init__(self, on_first: Callable[[], None] | None = None,
                 say: Callable[[str], None] = _to_stderr):
        self.signum: int | None = None
        self.repeats = 0
        self._on_first = on_first
        self._say = say

    @property
    def interrupted(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int | None:
        """The shell's code for death by the first signal (128 + its number), None when none came."""
        return None if self.signum is None else 128 + self.signum

    def handle(self, signum: int, _frame: object = None) -> None:
        """The signal handler: the first signal starts the rollback, later ones only say it is under way."""
        if self.signum is not None:
            self.repeats += 1
            self._say(AGAIN)
            return
        self.signum = signum
        self._say(FIRST)
        if self._on_first is not None:
            self._on_first()


@contextlib.contextmanager
def rollback_on_signal(on_first: Callable[[], None] | None = None) -> Iterator[Interrupts]:
    """Handle SIGINT and SIGTERM with an ``Interrupts`` for the duration of the block, then restore
    the previous handlers. Off the main thread (where signals cannot be caught) it only yields.

    ``on_first`` runs inside the handler, on the main thread: it must be quick and must not need a
    lock the main thread may hold (``Provisioner.cancel`` only sets an event worker threads wait on).
    """
    interrupts = Interrupts(on_first)
    if threading.current_thread() is not threading.main_thread():
        yield interrupts
        return
    previous = {sig: signal.signal(sig, interrupts.handle) for sig in SIGNALS}
    try:
        yield interrupts
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
