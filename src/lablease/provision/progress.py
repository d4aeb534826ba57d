"""What `lablease provision` shows while it works, fed by the engine's per-stage callbacks.

On a terminal: one live line per node (stage, attempt, time), with log lines printed above it.
Without one (a pipe, a log file, CI): one plain line per stage change, no spinner glyphs. Both
write to stderr, so stdout carries only the results; ``summary`` says at the end what came out.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Sequence

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from lablease.config.redact import redact_text
from lablease.logs import logs_above
from lablease.provision.models import Outcome, ProgressCallback, ProgressEvent

_ORDER = ["image", "size", "network", "create", "boot", "floating-ip", "volume", "dns", "ssh", "ready"]


def event_text(event: ProgressEvent) -> str:
    """``node1: ssh retry (attempt 2): why``: one stage change as words."""
    text = f"{event.node}: {event.stage} {event.status}"
    if event.attempt > 1:
        text += f" (attempt {event.attempt})"
    if event.message and event.status in ("retry", "failed"):
        text += f": {event.message}"
    return redact_text(text)  # a message may quote a URL (the DNS service's) with its password


def _quiet(_event: ProgressEvent) -> None:
    return None


@contextlib.contextmanager
def progress_display(names: Sequence[str], *, quiet: bool = False,
                     console: Console | None = None) -> Iterator[ProgressCallback]:
    """The callback to give the engine: live lines on a terminal, plain lines otherwise, nothing if ``quiet``."""
    console = console or Console(stderr=True)
    if quiet:
        yield _quiet
    elif console.is_terminal:
        with _live(names, console) as on_progress:
            yield on_progress
    else:
        yield _plain(console)


def _plain(console: Console) -> ProgressCallback:
    lock = threading.Lock()

    def on_progress(event: ProgressEvent) -> None:
        if event.status == "made":  # a resource note, not a stage change
            return
        with lock:
            console.print(event_text(event), markup=False, highlight=False, soft_wrap=True)

    return on_progress


@contextlib.contextmanager
def _live(names: Sequence[str], console: Console) -> Iterator[ProgressCallback]:
    lock = threading.Lock()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=False) as bar, \
            logs_above(bar.console):
        tasks = {n.split(".")[0].lower(): bar.add_task(f"{n}: waiting", total=len(_ORDER)) for n in names}

        def on_progress(event: ProgressEvent) -> None:
            if event.status == "made":
                return
            with lock:
                task = tasks.get(event.node)
                if task is None:
                    return
                done = _ORDER.index(event.stage) + (event.status == "done") if event.stage in _ORDER else 0
                bar.update(task, completed=done, description=event_text(event))

        yield on_progress


def summary(outcomes: Sequence[Outcome], done: str) -> str:
    """One closing line: ``created 1 of 2 node(s): node1; failed: node2 (ssh)``."""
    ok = [o.name for o in outcomes if o.ok]
    failed = [f"{o.name} ({o.error.stage.value})" for o in outcomes if not o.ok and o.error is not None]
    text = f"{done} {len(ok)} of {len(outcomes)} node(s)" + (f": {', '.join(ok)}" if ok else "")
    return text + (f"; failed: {', '.join(failed)}" if failed else "")
