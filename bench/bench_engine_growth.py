"""Does the engine grow across 200-node batches? One Provisioner in one process, batch after batch.

Issue 19: the engine's RSS was once seen growing 93 -> 116 -> 128 MB over three 200-node batches in
one process. A lab service keeps one Provisioner per provider for its life, so this benchmark does
the same: one engine (one adapter, token cache, listings, limiter) creates and destroys ``--nodes``
nodes per batch on devcloud (the stack of bench_scale.py), ``--batches`` times. After each batch,
and after ``gc.collect()``, it records the engine's RSS, its high-water mark, threads, open files,
the live objects per type (``gc.get_objects()``) and, with ``--tracemalloc``, the bytes Python has
allocated and still holds; then RSS again after glibc's ``malloc_trim(0)`` (memory freed but kept
by the allocator comes back: what is left is held). With ``--tracemalloc`` it also diffs snapshots
between the first batch and the last (the top allocation sites that grew).

    MALLOC_ARENA_MAX=2 .venv/bin/python bench/bench_engine_growth.py [--batches 5] [--nodes 200] [--tracemalloc 1]
        [--fresh-engine]

Writes bench/results/engine-growth-*.json. Not part of CI (minutes of CPU). Exits 1 when a batch
failed or left anything behind.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import provision_stack as stack_lib
from bench_scale import raise_open_files, zone_names

from lablease.dns.client import DNSClient
from lablease.provision.adapters import adapter_for
from lablease.provision.context import ProvisionerOptions
from lablease.provision.engine import Provisioner
from lablease.provision.models import CreateRequest
from lablease.provision.tokencache import FileTokenCache

RESULTS = Path(__file__).resolve().parent / "results"


def _status() -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
            "hwm_mb": round(int(fields["VmHWM"].split()[0]) / 1024, 1),
            "threads": int(fields["Threads"].strip()), "fds": len(os.listdir("/proc/self/fd"))}


def _malloc_trim() -> bool:
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def pymalloc_arenas() -> int | None:
    """How many 1 MiB arenas Python's small-object allocator holds now (sys._debugmallocstats, which
    writes to file descriptor 2: read back through a temporary file). An arena is given back only when
    every object in it is gone, so a few survivors per arena keep it: fragmentation, not a leak."""
    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        for line in tmp.read().decode(errors="replace").splitlines():
            if line.startswith("# arenas allocated current"):
                return int(line.split("=")[1].replace(",", "").strip())
    return None


def _types() -> Counter:
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def sample(label: str) -> tuple[dict[str, Any], Counter]:
    """The engine's figures right now, after a full collection; the per-type counts apart."""
    gc.collect()
    row: dict[str, Any] = {"after": label, **_status(), "threads_python": threading.active_count()}
    if tracemalloc.is_tracing():
        current, peak = tracemalloc.get_traced_memory()
        row["traced_mb"], row["traced_peak_mb"] = round(current / 2**20, 1), round(peak / 2**20, 1)
        tracemalloc.reset_peak()
    types = _types()
    row["gc_objects"] = sum(types.values())
    row["pymalloc_arenas"] = pymalloc_arenas()
    _malloc_trim()
    row["rss_after_trim_mb"] = _status()["rss_mb"]
    return row, types


def batch(prov: Provisioner, stack: stack_lib.Stack, n: int) -> dict[str, Any]:
    """Create ``n`` nodes, check them in BIND, destroy them, check nothing is left; times and problems."""
    names = [f"node{i}" for i in range(n)]
    start = time.perf_counter()
    outcomes = prov.create_many([CreateRequest(name, "ubuntu", "22.04", {"volumes": {"count": 1, "size": 1}})
                                 for name in names])
    created = time.perf_counter() - start
    problems = [f"{o.name}: {o.error}" for o in outcomes if not o.ok]
    named = zone_names(stack)
    wrong = [o.name for o in outcomes if o.ok and named.get(o.name) != o.node.address]
    if wrong:
        problems.append(f"{len(wrong)} ready nodes not named in BIND, e.g. {wrong[:3]}")
    start = time.perf_counter()
    destroyed = prov.destroy_many(names)
    destroy_s = time.perf_counter() - start
    problems += [f"destroy {o.name}: {o.error}" for o in destroyed if not o.ok]
    left = stack.cloud.resources()
    leftover = len(left["servers"]) + len(left["volumes"]) + len(set(zone_names(stack)) & set(names))
    if leftover:
        problems.append(f"{leftover} servers, volumes or DNS names left")
    return {"create_s": round(created, 2), "destroy_s": round(destroy_s, 2), "problems": problems,
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def top_diff(first: tracemalloc.Snapshot, last: tracemalloc.Snapshot, limit: int = 15) -> list[dict[str, Any]]:
    """The allocation sites whose held bytes grew most from ``first`` to ``last``."""
    skip = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap*>")]
    stats = last.filter_traces(skip).compare_to(first.filter_traces(skip), "traceback")
    return [{"size_diff_kb": round(s.size_diff / 1024, 1), "size_kb": round(s.size / 1024, 1),
             "count_diff": s.count_diff, "where": [f"{f.filename}:{f.lineno}" for f in s.traceback][-6:]}
            for s in stats[:limit]]


def type_growth(first: Counter, last: Counter, limit: int = 15) -> dict[str, int]:
    """The object types whose live count grew most from ``first`` to ``last``."""
    grew = {k: last[k] - first.get(k, 0) for k in last if last[k] - first.get(k, 0) > 0}
    return dict(sorted(grew.items(), key=lambda kv: -kv[1])[:limit])


def _engine(stack: stack_lib.Stack, args: argparse.Namespace, dns: DNSClient, tag: str) -> Provisioner:
    config = stack.lab_config(args.max_parallel)
    adapter = adapter_for(config.provider("dev"), token_cache=FileTokenCache(stack.work / f"tokens-{tag}"))
    return Provisioner(config, "dev", dns, ProvisionerOptions(adapter=adapter, poll_cap=args.poll_cap,
                                                                   shared_polls=True))


def run(stack: stack_lib.Stack, args: argparse.Namespace) -> dict[str, Any]:
    """One engine (or, with ``--fresh-engine``, one per batch, as bench_scale.py does), ``args.batches``
    batches; a sample before the first and after each."""
    dns = DNSClient(stack.dns_service.update_url)
    rows, snaps, types = [], [], []
    with ExitStack() as keep:
        prov = keep.enter_context(_engine(stack, args, dns, "kept"))
        batch(prov, stack, 1)  # imports, token, first connections: not growth
        if args.fresh_engine:
            keep.close()
            prov = None
        row, t = sample("warm-up (1 node)")
        rows.append(row)
        types.append(t)
        if tracemalloc.is_tracing():
            snaps.append(tracemalloc.take_snapshot())
        for b in range(1, args.batches + 1):
            if args.fresh_engine:
                with _engine(stack, args, dns, f"batch{b}") as fresh:
                    got = batch(fresh, stack, args.nodes)
                del fresh
            else:
                got = batch(prov, stack, args.nodes)
            row, t = sample(f"batch {b}")
            row.update(got)
            rows.append(row)
            types.append(t)
            if tracemalloc.is_tracing():
                snaps.append(tracemalloc.take_snapshot())
            print(f"batch {b}: create {got['create_s']} s destroy {got['destroy_s']} s load {got['load_avg_1m']} | "
                  f"RSS {row['rss_mb']} MB (trimmed {row['rss_after_trim_mb']}) HWM {row['hwm_mb']} "
                  f"threads {row['threads']} fds {row['fds']} objects {row['gc_objects']} arenas {row['pymalloc_arenas']}"
                  + (f" traced {row['traced_mb']} MB" if "traced_mb" in row else "")
                  + (f" PROBLEMS {got['problems'][:3]}" if got["problems"] else ""), flush=True)
    del prov
    dns.close()
    after_close, _ = sample("engine closed")
    out: dict[str, Any] = {"rows": rows, "after_close": after_close,
                           "types_grew_batch1_to_last": type_growth(types[1], types[-1]),
                           "types_grew_warmup_to_batch1": type_growth(types[0], types[1])}
    if len(snaps) > 2:
        out["tracemalloc_grew_batch1_to_last"] = top_diff(snaps[1], snaps[-1])
        out["tracemalloc_grew_warmup_to_batch1"] = top_diff(snaps[0], snaps[1], 10)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--tracemalloc", type=int, default=0, help="trace allocations with this many frames (0: off)")
    parser.add_argument("--fresh-engine", action="store_true", help="a new Provisioner per batch (as bench_scale.py)")
    parser.add_argument("--label", default="")
    stack_lib.add_stack_arguments(parser)
    parser.set_defaults(max_parallel=200)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.tracemalloc:
        tracemalloc.start(args.tracemalloc)
    nofile = raise_open_files()
    work = Path(tempfile.mkdtemp(prefix="bench-engine-growth-"))
    stack = stack_lib.start_stack(work, nodes=args.nodes, volumes=args.volumes, boot_delay=args.boot_delay,
                                  ssh_delay=args.ssh_delay, volume_delay=args.volume_delay)
    try:
        result = run(stack, args)
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    result = {"benchmark": "engine-growth", "label": args.label,
              "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"), "fresh_engine": args.fresh_engine,
              "tracemalloc_frames": args.tracemalloc,
              "python": sys.version.split()[0], "open_files_limit": list(nofile),
              "settings": stack_lib.stack_settings(args, stack.limit), "nodes": args.nodes, **result}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"engine-growth-{stamp}{'-' + args.label if args.label else ''}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("types grown batch 1 -> last:", result["types_grew_batch1_to_last"])
    for s in result.get("tracemalloc_grew_batch1_to_last", [])[:8]:
        print(f"  {s['size_diff_kb']:+.0f} KB ({s['count_diff']:+d}) {s['where'][-1]}")
    print(f"written: {out}")
    if any(r.get("problems") for r in result["rows"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
