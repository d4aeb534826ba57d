"""Benchmark: create and destroy N nodes against devcloud with a boot delay and an SSH delay.

Starts devcloud (sshd per server), a real BIND 9 and `lablease dns serve` on loopback, then for each N
creates N nodes with one engine call (`create_many`), then destroys them (`destroy_many`), with a fresh
engine per N (cold token and listings, as a new lab service would start). Reports wall time of create
and destroy, cloud API requests per node (counted by devcloud), and the ratio of create time to the
physical limit: boot delay + SSH delay + runcmd delay, the time one server takes to be ready at best.
Goal: 20 nodes ready within 1.25 x the time of one node.

    .venv/bin/python bench/bench_provision.py [--nodes 1,5,20] [--boot-delay 3] [--ssh-delay 1] [--volumes 1]

Prints a table and writes JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import provision_stack as stack_lib

RESULTS = Path(__file__).resolve().parent / "results"


def run(args: argparse.Namespace) -> dict:
    counts = [int(n) for n in args.nodes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-provision-"))
    stack = stack_lib.start_stack(work, nodes=max(counts), volumes=args.volumes, boot_delay=args.boot_delay,
                        ssh_delay=args.ssh_delay, volume_delay=args.volume_delay, rate_limit=args.rate_limit)
    rows = []
    try:
        # Repeats interleave the sizes (1, 5, 20, 1, 5, 20, ...) so a burst of load from other
        # work on the machine hits all of them alike; the summary takes medians.
        for repeat, n in ((r, n) for r in range(args.repeats) for n in counts):
            row = stack_lib.run_lablease(stack, n, volumes=args.volumes, max_parallel=args.max_parallel,
                                         poll_cap=args.poll_cap,
                                         tag=f"{n}-{repeat}", shared_polls=not args.per_node_polls, rate=args.rate)
            rows.append({"repeat": repeat, **row})
            print(f"run {repeat} N={n:>3}  create {row['create_s']:6.2f}s  destroy {row['destroy_s']:5.2f}s  "
                  f"create/limit {row['ratio_to_limit']:4.2f}  req/node create {row['requests_per_node_create']:5.1f} "
                  f"destroy {row['requests_per_node_destroy']:5.1f}  engine CPU {row['engine_cpu_s']:5.1f}s  "
                  f"failed {len(row['failed'])}", flush=True)
    finally:
        stack.stop()
    return {
        "benchmark": "provision", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": stack_lib.cpus()},
        "settings": {**stack_lib.stack_settings(args, stack.limit), "shared_polls": not args.per_node_polls},
        "summary": stack_lib.summarize(rows, stack.limit),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1,5,20")
    parser.add_argument("--repeats", type=int, default=3)
    stack_lib.add_stack_arguments(parser)
    parser.add_argument("--per-node-polls", action="store_true", help="each node polls its own resources (as before)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"provision-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nphysical limit (boot + ssh + runcmd delay): {result['settings']['physical_limit_s']:.2f}s; "
          f"medians of {args.repeats} interleaved runs")
    for s in result["summary"]:
        print(f"N={s['nodes']:>3}: create {s['create_s_median']:.2f}s (min {s['create_s_min']:.2f}, max "
              f"{s['create_s_max']:.2f}) = {s['ratio_to_limit']:.2f} x limit"
              + (f" = {s['ratio_to_one_node']:.2f} x one node" if s["ratio_to_one_node"] else "")
              + f"; requests/node create {s['requests_per_node_create']:.1f} destroy {s['requests_per_node_destroy']:.1f}")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
