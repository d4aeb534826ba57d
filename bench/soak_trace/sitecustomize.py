"""Allocation tracing for the soak's lab services (bench_soak.py --trace-dir): not part of lablease.

bench_soak puts this directory on a lab service's PYTHONPATH, so Python imports this module at start-up,
before lablease. With LABLEASE_SOAK_TRACE_DIR set it starts tracemalloc (LABLEASE_SOAK_TRACE_FRAMES
frames, default 8) LABLEASE_SOAK_TRACE_START seconds later (default 20: tracing the imports would make
start-up 20 times slower, and only what grows afterwards matters) and, every LABLEASE_SOAK_TRACE_EVERY seconds (default 30), appends one JSON line to
``<dir>/trace-<pid>.jsonl``: the time, RSS, the bytes Python holds (traced), and the allocation sites
that grew most since the previous line and since the first. Without the variable it does nothing.
"""

from __future__ import annotations

import json
import os
import threading
import time
import tracemalloc
from pathlib import Path

_OUT = os.environ.get("LABLEASE_SOAK_TRACE_DIR")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _top(new: tracemalloc.Snapshot, old: tracemalloc.Snapshot, limit: int) -> list[dict]:
    stats = new.compare_to(old, "traceback")
    return [{"kb": round(s.size_diff / 1024, 1), "count": s.count_diff,
             "where": [f"{f.filename}:{f.lineno}" for f in s.traceback][-5:]}
            for s in stats[:limit] if s.size_diff > 0]


def _loop(out: Path, every: float) -> None:
    time.sleep(float(os.environ.get("LABLEASE_SOAK_TRACE_START", "20")))
    tracemalloc.start(int(os.environ.get("LABLEASE_SOAK_TRACE_FRAMES", "8")))
    skip = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
    started = time.monotonic()
    first = previous = tracemalloc.take_snapshot().filter_traces(skip)
    while True:
        time.sleep(every)
        snap = tracemalloc.take_snapshot().filter_traces(skip)
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        row = {"t": round(time.monotonic() - started, 1), "wall": time.time(), "rss_mb": _rss_mb(),
               "traced_mb": round(current / 2**20, 1), "traced_peak_mb": round(peak / 2**20, 1),
               "grew_since_previous": _top(snap, previous, 8), "grew_since_first": _top(snap, first, 12)}
        with (out / f"trace-{os.getpid()}.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        previous = snap


if _OUT:
    threading.Thread(target=_loop, args=(Path(_OUT), float(os.environ.get("LABLEASE_SOAK_TRACE_EVERY", "30"))),
                     name="soak-tracemalloc", daemon=True).start()
