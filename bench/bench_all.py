"""`make bench`: every benchmark of the quick set, one after another, and one summary of their figures.

Runs the existing scripts as they are (each its own process, so one that fails does not stop the others
and none shares a warm cache with the next), then gathers what each wrote under bench/results/ into
bench/results/bench-<time>.md and .json. The quick set, under 15 minutes on a 2-core machine:

- provisioning side by side (bench_compare.py): lablease's lock-many through the lab service at N = 1, 5,
  20, 50 (3 repeats), teuthology 1.3.0 at N = 1, 5 (once; ~27 s a node); PNG plots;
- under a 10 requests/s rate limit (bench_ratelimit.py): lablease N = 50, teuthology N = 5;
- lock server pairs/s, p50/p99 at 1, 4, 16 clients on SQLite and PostgreSQL (bench_lock.py);
- DNS updates/s at 1 and 8 clients through the service, bare dnspython to BIND as the limit (bench_dns.py);
- warm-pool lock latency against cold provisioning (bench_warm_pool.py).

    .venv/bin/python bench/bench_all.py [--only compare,ratelimit,lock,dns,warm] [--full]

``--full`` adds what does not fit in 15 minutes: lablease N = 200, teuthology N = 10, and teuthology N = 50
under the rate limit (~25 minutes on its own).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from summary_tables import TABLES

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"

QUICK = {
    "compare": ["bench_compare.py", "--lablease-nodes", "1,5,20,50", "--teuthology-nodes", "1,5", "--repeats", "3"],
    "ratelimit": ["bench_ratelimit.py", "--nodes", "50", "--rate-limit", "10", "--teuthology-nodes", "5"],
    "lock": ["bench_lock.py", "--seconds", "3", "--clients", "1,4,16", "--databases", "sqlite,postgresql"],
    "dns": ["bench_dns.py", "--seconds", "2", "--repeat", "3", "--clients", "1,8", "--workers", "1"],
    "warm": ["bench_warm_pool.py", "--rounds", "3", "--counts", "1,5"],
}
FULL = {
    "compare": ["bench_compare.py", "--lablease-nodes", "1,5,20,50,200", "--teuthology-nodes", "1,5,10",
                "--repeats", "3", "--max-parallel", "100"],
    "ratelimit": ["bench_ratelimit.py", "--nodes", "50", "--rate-limit", "10", "--teuthology-nodes", "50"],
}


def run_step(name: str, argv: list[str]) -> dict:
    """Run one benchmark script; what it wrote under results/, its exit status, time and the load around it."""
    before = set(RESULTS.glob("*")) if RESULTS.exists() else set()
    load_before = os.getloadavg()
    started = time.monotonic()
    print(f"== {name}: {' '.join(argv)}  (load {load_before[0]:.2f})", flush=True)
    rc = subprocess.call([sys.executable, str(BENCH / argv[0]), *argv[1:]], cwd=BENCH)
    written = sorted(str(p.relative_to(BENCH.parent)) for p in set(RESULTS.glob("*")) - before)
    return {"name": name, "argv": argv, "rc": rc, "seconds": round(time.monotonic() - started, 1),
            "load_avg_before": [round(x, 2) for x in load_before],
            "load_avg_after": [round(x, 2) for x in os.getloadavg()], "written": written}


def summary(steps: list[dict], when: str) -> str:
    """The Markdown summary: per step the command, its load and its figures (tables from summary_tables)."""
    lines = [f"# `make bench` ({when})", "",
             f"Machine: {os.cpu_count()} CPUs, {os.uname().sysname} {os.uname().release}; shared with other work, "
             f"so every step records the load average (1, 5, 15 min) around it.", ""]
    for step in steps:
        lines += [f"## {step['name']}", "",
                  f"`.venv/bin/python bench/{' '.join(step['argv'])}`: exit {step['rc']}, {step['seconds']:.0f} s, "
                  f"load {step['load_avg_before']} before, {step['load_avg_after']} after.", ""]
        files = [BENCH.parent / w for w in step["written"]]
        table = TABLES.get(step["name"])
        if table is not None:
            lines += table(files)
        lines += [f"![{Path(f).stem}]({Path(f).name})" for f in step["written"] if f.endswith(".png")]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(QUICK), help="comma-separated steps: " + ",".join(QUICK))
    parser.add_argument("--full", action="store_true", help="the long set (not quick; see the docstring)")
    args = parser.parse_args()
    plan = {**QUICK, **(FULL if args.full else {})}
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    steps = [run_step(name, plan[name]) for name in args.only.split(",") if name]
    when = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    stem = RESULTS / f"bench-{when}"
    stem.with_suffix(".json").write_text(json.dumps({"when": when, "steps": steps,
                                                     "seconds": round(time.monotonic() - started, 1)}, indent=2) + "\n")
    stem.with_suffix(".md").write_text(summary(steps, when))
    print(f"\n`make bench` took {time.monotonic() - started:.0f}s; summary: {stem}.md")
    sys.exit(1 if any(step["rc"] for step in steps) else 0)


if __name__ == "__main__":
    main()
