"""EC2 figures: requests per node (create + destroy, one volume) and time to ready, against moto through the harness.

The engine alone (``Provisioner.create_many`` / ``destroy_many``, poll cap 1 s, ``max_parallel`` 20), as
``bench_compare.py --engine-too`` measures it on devcloud, so the figures sit beside OpenStack's: libcloud's stock
EC2 driver over HTTP to a real moto server (the moto harness: instances ``pending`` for ``--pending`` seconds,
volumes ``creating`` for 0.2 s, a real sshd per running instance on 127.x), one 1 GB volume per node, SSH
readiness over real SSH, no DNS. Requests are the harness's count of EC2 Actions around each step.

    .venv/bin/python bench/bench_ec2.py [--nodes 1,10,20] [--repeats 1] [--pending 3]

Prints a table; writes bench/results/ec2-<stamp>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lablease.config.lab import LabConfig
from lablease.provision.context import ProvisionerOptions
from lablease.provision.devlab import ec2_lab_data, generate_lab_key
from lablease.provision.engine import Provisioner
from lablease.provision.models import CreateRequest
from lablease.testing.moto_ec2 import READY_COMMAND, MotoEc2Handle, start_moto_ec2
from lablease.testing.moto_settings import MotoSettings

RESULTS = Path(__file__).resolve().parent / "results"
PROVIDER = {"max_parallel": 20, "boot_timeout": 120, "ready_timeout": 120, "volume_timeout": 60,
            "delete_timeout": 60, "ready_command": READY_COMMAND}


def one_run(ec2: MotoEc2Handle, config: LabConfig, n: int, run: int) -> dict[str, Any]:
    """Create N nodes (one volume each) and destroy them; the times and EC2 requests of each step."""
    names = [f"node{run}x{i}" for i in range(n)]
    prov = Provisioner(config, "aws", None, ProvisionerOptions(token_cache_dir=None, poll_cap=1.0))
    try:
        ec2.admin.reset_counts()
        started = time.monotonic()
        outcomes = prov.create_many([CreateRequest(name, "ubuntu", "22.04", {"volumes": {"count": 1, "size": 1}})
                                     for name in names], all_or_nothing=True)
        ready = time.monotonic() - started
        created = Counter(ec2.admin.request_counts())
        ec2.admin.reset_counts()
        started = time.monotonic()
        destroyed_ok = all(o.ok for o in prov.destroy_many(names))
        destroyed = time.monotonic() - started
        deleted = Counter(ec2.admin.request_counts())
    finally:
        prov.close()
    left = [i["id"] for i in ec2.instances() if i["state"] != "terminated"] + [v["id"] for v in ec2.volumes()]
    total = sum(created.values()) + sum(deleted.values())
    return {"n": n, "run": run, "ok": all(o.ok for o in outcomes) and destroyed_ok,
            "errors": [str(o.error) for o in outcomes if not o.ok], "ready_s": round(ready, 2),
            "destroyed_s": round(destroyed, 2), "create_requests": dict(created), "destroy_requests": dict(deleted),
            "requests_per_node": round(total / n, 2), "left": left}


def table(runs: list[dict[str, Any]]) -> str:
    lines = ["| N | all ready (median s) | × N = 1 | all destroyed (median s) | requests/node create + destroy | "
             "create requests (by Action, last run) | left |", "| --- | --- | --- | --- | --- | --- | --- |"]
    by_n: dict[int, list[dict[str, Any]]] = {}
    for r in runs:
        by_n.setdefault(r["n"], []).append(r)
    base = statistics.median(r["ready_s"] for r in by_n[min(by_n)])
    for n, rs in sorted(by_n.items()):
        ready = statistics.median(r["ready_s"] for r in rs)
        actions = ", ".join(f"{k} {v}" for k, v in sorted(rs[-1]["create_requests"].items()))
        lines.append(f"| {n} | {ready:.1f} | {ready / base:.2f} | {statistics.median(r['destroyed_s'] for r in rs):.1f}"
                     f" | {statistics.median(r['requests_per_node'] for r in rs):.2f} | {actions} | "
                     f"{sum(len(r['left']) for r in rs)} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1,10,20")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--pending", type=float, default=3.0, help="seconds a new instance stays pending")
    args = parser.parse_args()
    counts = [int(x) for x in args.nodes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-ec2-") as tmp:
        work = Path(tmp)
        ec2 = start_moto_ec2(work / "moto", MotoSettings(pending_seconds=args.pending, volume_creating_seconds=0.2))
        try:
            key = generate_lab_key(work / "lab_key")
            config = LabConfig.model_validate(ec2_lab_data(ec2, key, **PROVIDER))
            runs = []
            for repeat in range(args.repeats):
                for n in counts:
                    result = one_run(ec2, config, n, repeat)
                    runs.append(result)
                    print(f"N={n} run {repeat}: ready {result['ready_s']} s, destroyed {result['destroyed_s']} s, "
                          f"{result['requests_per_node']} requests/node, ok={result['ok']}, left={result['left']}",
                          flush=True)
            moto_version = ec2.moto_version
        finally:
            ec2.stop()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    summary = table(runs)
    meta = {"stamp": stamp, "moto": moto_version, "pending_s": args.pending, "load_1m": os.getloadavg()[0],
            "provider": PROVIDER, "runs": runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"ec2-{stamp}.json").write_text(json.dumps(meta, indent=1))
    (RESULTS / f"ec2-{stamp}.md").write_text(f"# EC2 against moto, {stamp}\n\nmoto {moto_version}, pending "
                                             f"{args.pending} s, load 1m at the end {meta['load_1m']:.1f}\n\n"
                                             f"{summary}\n")
    print(summary)
    print(f"wrote bench/results/ec2-{stamp}.json")
    return 0 if all(r["ok"] and not r["left"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
