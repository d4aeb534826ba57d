"""Benchmark: two revisions of lablease side by side in one run (a restructuring must cost nothing).

Exports each revision's ``src`` and ``bench`` (``git archive``) to a temporary folder, then in the same
run, interleaved round by round so load from elsewhere hits both alike:

- cloud API requests per node and create time (``bench_provision.py`` of that revision: devcloud,
  BIND, the DNS service, the engine's create_many and destroy_many) at each N;
- lock+unlock pairs per second through the lock API (``bench_lock.py``'s variants: both revisions'
  servers on the same database, levels interleaved).

Prints medians per revision and writes JSON and Markdown under bench/results/.

    .venv/bin/python bench/bench_before_after.py --before 7710a10 --after HEAD [--rounds 3] [--nodes 1,10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"


def export(rev: str, into: Path) -> Path:
    """``rev``'s src and bench in ``into`` (a revision name or a folder holding a checkout)."""
    into.mkdir(parents=True)
    if Path(rev).is_dir():
        subprocess.run(["cp", "-r", f"{rev}/src", f"{rev}/bench", str(into)], check=True)
        return into
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src", "bench"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run_provision(tree: Path, nodes: str, tag: str) -> list[dict]:
    """One pass of that revision's bench_provision.py (one repeat of each N); its summary rows."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    subprocess.run([sys.executable, str(tree / "bench" / "bench_provision.py"), "--nodes", nodes, "--repeats", "1"],
                   env=env, check=True, cwd=tree, stdout=subprocess.DEVNULL)
    # The copy writes its result into its own bench/results.
    made = sorted((tree / "bench" / "results").glob("provision-*.json"))
    result = json.loads(made[-1].read_text())
    for path in made:
        path.unlink()
    print(f"  {tag}: " + "; ".join(f"N={s['nodes']} create {s['create_s_median']:.2f}s "
                                   f"req/node {s['requests_per_node']:.1f}" for s in result["summary"]), flush=True)
    return result["summary"]


def run_lock(trees: dict[str, Path], rounds: int, seconds: float, clients: str) -> dict:
    """bench_lock.py (of the newer revision) with one variant per revision, on SQLite."""
    variants = [arg for label, tree in trees.items() for arg in ("--variant", f"{label}:1:{tree / 'src'}")]
    newest = list(trees.values())[-1]
    env = {**os.environ, "PYTHONPATH": str(newest / "src")}
    subprocess.run([sys.executable, str(newest / "bench" / "bench_lock.py"), "--databases", "sqlite",
                    "--clients", clients, "--seconds", str(seconds), "--rounds", str(rounds), *variants],
                   env=env, check=True, cwd=newest)
    made = sorted((newest / "bench" / "results").glob("lock-*.json"))
    return json.loads(made[-1].read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="a git revision or a checkout folder")
    parser.add_argument("--after", default="HEAD", help="a git revision or a checkout folder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nodes", default="1,10")
    parser.add_argument("--lock-seconds", type=float, default=8.0)
    parser.add_argument("--lock-clients", default="4")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-before-after-"))
    trees = {"before": export(args.before, work / "before"), "after": export(args.after, work / "after")}
    rows: dict[str, list[dict]] = {"before": [], "after": []}
    for round_ in range(args.rounds):
        print(f"round {round_ + 1} of {args.rounds}", flush=True)
        order = ["before", "after"] if round_ % 2 == 0 else ["after", "before"]
        for label in order:
            rows[label].extend(run_provision(trees[label], args.nodes, label))
    lock = run_lock(trees, args.rounds, args.lock_seconds, args.lock_clients)
    table = ["| revision | N | requests per node (median) | create s (median) |", "| --- | --- | --- | --- |"]
    summary: dict[str, dict] = {}
    for label, rev in (("before", args.before), ("after", args.after)):
        for n in sorted({r["nodes"] for r in rows[label]}):
            mine = [r for r in rows[label] if r["nodes"] == n]
            med = {"requests_per_node": statistics.median(r["requests_per_node"] for r in mine),
                   "create_s": statistics.median(r["create_s_median"] for r in mine), "runs": len(mine)}
            summary.setdefault(label, {})[n] = med
            table.append(f"| {label} ({rev}) | {n} | {med['requests_per_node']:.1f} | {med['create_s']:.2f} |")
    table += ["", "| variant | clients | pairs/s (median) | p50 ms | p99 ms |", "| --- | --- | --- | --- | --- |"]
    for row in lock["medians"]:
        table.append(f"| {row['variant']} | {row['clients']} | {row['pairs_per_s']} | {row['p50_ms']} | "
                     f"{row['p99_ms']} |")
    print("\n".join(table))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"before-after-{stamp}.json"
    out.write_text(json.dumps({"benchmark": "before-after", "before": args.before, "after": args.after,
                               "rounds": args.rounds, "provision": summary, "provision_rows": rows,
                               "lock": lock}, indent=2, default=str) + "\n")
    (RESULTS / f"before-after-{stamp}.md").write_text("\n".join(table) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
