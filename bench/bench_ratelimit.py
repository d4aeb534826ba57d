"""Time to ready under a cloud rate limit: devcloud answers 429 (Retry-After: 1) above R requests/s.

With a per-account limit of R requests/s, N nodes that need Q accepted requests cannot be ready before
Q / R seconds, whatever the parallelism: that is the bound each run is set against (Q from devcloud's
counters minus the requests it refused). lablease locks N nodes through a fresh lab service
(bench/lab_side.py); teuthology creates its nodes one after another with its own backend
(bench_compare.py's runner), ~27 s a node, so its N is an option of its own.

    .venv/bin/python bench/bench_ratelimit.py [--nodes 50] [--rate-limit 10] [--teuthology-nodes 5]
        [--repeats 1] [--baseline-src DIR/src --baseline-label NAME]

``--baseline-src`` runs the lab service of another checkout too (e.g. the gate before a change:
``git archive <commit> src | tar -x -C /tmp/old``), interleaved with this one. Writes
bench/results/ratelimit-*.json and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench_compare import machine, measure, run_teuthology, teuthology_home, teuthology_python
from lab_side import run_lab_service
from provision_stack import add_stack_arguments, stack_settings, start_stack, write_results

RESULTS = Path(__file__).resolve().parent / "results"


def against_bound(row: dict, rate_limit: int) -> dict:
    """The run's accepted create requests, the bound they set (requests / R) and the time against it."""
    total = row["requests_per_node_create"] * row["nodes"]
    accepted = total - row.get("rate_limited_create", 0)
    bound = accepted / rate_limit
    return {**row, "create_requests": round(total), "create_requests_accepted": round(accepted),
            "bound_s": round(bound, 2), "ratio_to_bound": round(row["create_s"] / bound, 2) if bound else None}


def summarize(rows: list[dict]) -> list[dict]:
    """Medians per system and N (the machine is shared: one run says little)."""
    out = []
    for system, n in sorted({(r["system"], r["nodes"]) for r in rows}):
        mine = [r for r in rows if r["system"] == system and r["nodes"] == n]
        med = {k: statistics.median(r[k] for r in mine) for k in
               ("create_s", "destroy_s", "bound_s", "create_requests", "rate_limited_create")}
        out.append({"system": system, "nodes": n, "runs": len(mine), **{k: round(v, 2) for k, v in med.items()},
                    "ratio_to_bound": round(med["create_s"] / med["bound_s"], 2) if med["bound_s"] else None,
                    "failed": sum(len(r["failed"]) for r in mine),
                    "left": max(r["left_servers"] + r["left_volumes"] for r in mine),
                    "load_avg_1m": [r["load_avg_1m"] for r in mine]})
    return out


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [f"# Time to ready under a rate limit of {s['rate_limit_per_s']} requests/s ({result['when']})", "",
             f"devcloud refuses requests beyond {s['rate_limit_per_s']}/s with 429 and Retry-After: 1; boot "
             f"{s['boot_delay']} s, SSH {s['ssh_delay']} s (physical limit {s['physical_limit_s']} s), "
             f"{s['volumes_per_node']} volume(s) per node, lablease max_parallel {s['max_parallel']}. "
             f"Machine: {result['machine']['cpus']} CPUs, load average {result['machine']['load_avg']}.", "",
             "| system | N | all ready (median) | bound: accepted requests / R | × bound | requests sent "
             "(create) | refused (429) | all destroyed | failed | left | load 1m |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["summary"]:
        lines.append(f"| {r['system']} | {r['nodes']} | {r['create_s']:.1f} s | {r['bound_s']:.1f} s | "
                     f"{r['ratio_to_bound'] or 0:.2f} | {r['create_requests']:.0f} | {r['rate_limited_create']:.0f} | "
                     f"{r['destroy_s']:.1f} s | {r['failed']} | {r['left']} | {r['load_avg_1m']} |")
    lines += [f"\nLeft out: {e['system']} N = {e['nodes']} broke down at load {e['load_avg_1m']}: {e['error'][:200]}"
              for e in result.get("errors", [])]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> dict:
    python, note = (None, "teuthology left out") if not args.teuthology_nodes else teuthology_python()
    stack = start_stack(Path(tempfile.mkdtemp(prefix="bench-ratelimit-")), nodes=max(args.nodes, args.teuthology_nodes),
                        volumes=args.volumes, boot_delay=args.boot_delay, ssh_delay=args.ssh_delay,
                        volume_delay=args.volume_delay, rate_limit=args.rate_limit)
    variants = [("lablease", None)]
    if args.baseline_src:
        variants.append((args.baseline_label, {**os.environ, "PYTHONPATH": str(Path(args.baseline_src).resolve())}))
    rows: list[dict] = []
    errors: list[dict] = []
    try:
        home = teuthology_home(stack) if python else None
        for repeat in range(args.repeats):
            for system, env in variants:
                measure(rows, errors, system, args.nodes, repeat, lambda: against_bound(run_lab_service(
                    stack, args.nodes, volumes=args.volumes, max_parallel=args.max_parallel,
                    tag=f"rl-{system}-{repeat}", rate=args.rate, system=system, env=env), args.rate_limit),
                    progress=_progress)
        if python:  # once: ~27 s a node
            measure(rows, errors, "teuthology", args.teuthology_nodes, 0, lambda: against_bound(
                run_teuthology(stack, python, home, args.teuthology_nodes, args.volumes), args.rate_limit),
                progress=_progress)
    finally:
        stack.stop()
    return {"benchmark": "provision-ratelimit", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(), "settings": {**stack_settings(args, stack.limit), "repeats": args.repeats},
            "note": note, "summary": summarize(rows), "rows": rows, "errors": errors}


def _progress(row: dict) -> None:
    print(f"{row['system']:>10} N={row['nodes']:>3}  ready {row['create_s']:7.2f}s (bound {row['bound_s']:.1f}s, "
          f"x{row['ratio_to_bound']})  requests {row['create_requests']} of which 429 {row.get('rate_limited_create')}  "
          f"failed {len(row['failed'])}  load {row['load_avg_1m']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--teuthology-nodes", type=int, default=5, help="0 leaves teuthology out (~27 s a node)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--baseline-src", default="", help="another checkout's src/ to run as a second lab service")
    parser.add_argument("--baseline-label", default="baseline")
    add_stack_arguments(parser)
    parser.set_defaults(rate_limit=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    started = time.monotonic()
    result = run(args)
    table = markdown(result)
    stem = write_results("ratelimit", result, table, RESULTS)
    print("\n" + table)
    print(f"took {time.monotonic() - started:.0f}s; written: {stem}.json, {stem}.md")


if __name__ == "__main__":
    main()
