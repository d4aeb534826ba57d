"""Progress bars for the CLI, fed by the engine's per-stage callbacks."""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from lablease.provision.models import ProgressCallback, ProgressEvent

_ORDER = ["image", "size", "network", "create", "boot", "volume", "dns", "ssh", "ready"]


@contextlib.contextmanager
def rich_progress(names: list[str]) -> Iterator[ProgressCallback]:
    """One line per node showing its current stage; yields the callback to give the engine."""
    lock = threading.Lock()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=False) as bar:
        tasks = {n.split(".")[0]: bar.add_task(f"{n}: waiting", total=len(_ORDER)) for n in names}

        def on_progress(event: ProgressEvent) -> None:
            if event.status == "made":  # a resource note, not a stage change
                return
            with lock:
                task = tasks.get(event.node)
                if task is None:
                    return
                done = _ORDER.index(event.stage) + (event.status == "done") if event.stage in _ORDER else 0
                text = f"{event.node}: {event.stage} {event.status}"
                if event.attempt > 1:
                    text += f" (attempt {event.attempt})"
                bar.update(task, completed=done, description=text)

        yield on_progress
