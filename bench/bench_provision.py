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
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from lablease.dns.client import DNSClient
from lablease.provision.devlab import devcloud_lab_config, generate_lab_key
from lablease.provision.engine import Provisioner
from lablease.provision.models import CreateRequest
from lablease.testing.bind import start_bind
from lablease.testing.devcloud import start_devcloud
from lablease.testing.dns import start_dns_service

RESULTS = Path(__file__).resolve().parent / "results"


def run(args: argparse.Namespace) -> dict:
    counts = [int(n) for n in args.nodes.split(",")]
    top = max(counts)
    work = Path(tempfile.mkdtemp(prefix="bench-provision-"))
    runcmd_delay = 0.5
    cloud = start_devcloud(work / "cloud", {
        "boot_delay": args.boot_delay, "volume_delay": args.volume_delay,
        "ssh": {"enabled": True, "delay": args.ssh_delay, "runcmd_delay": runcmd_delay},
        "quotas": {"instances": top + 5, "volumes": top * max(args.volumes, 1) + 5, "cores": 1000, "ram": 10_000_000,
                   "gigabytes": 100_000},
    })
    bind = start_bind(work / "bind")
    dns_service = start_dns_service(work / "dns", bind)
    limit = args.boot_delay + args.ssh_delay + runcmd_delay
    rows = []
    try:
        key = generate_lab_key(work / "lab_key")
        config = devcloud_lab_config(cloud, key, nsupdate_url=dns_service.update_url, max_parallel=args.max_parallel)
        # Repeats interleave the sizes (1, 5, 20, 1, 5, 20, ...) so a burst of load from other
        # work on the machine hits all of them alike; the summary takes medians.
        for repeat, n in ((r, n) for r in range(args.repeats) for n in counts):
            dns = DNSClient(dns_service.update_url)
            prov = Provisioner(config, "dev", dns, token_cache_dir=work / f"tokens-{n}", poll_cap=args.poll_cap)
            names = [f"node{i}" for i in range(n)]
            hints = {"volumes": {"count": args.volumes, "size": 1}}
            cloud.reset_counts()
            start = time.perf_counter()
            outcomes = prov.create_many([CreateRequest(name, "ubuntu", "22.04", hints) for name in names])
            created = time.perf_counter() - start
            create_requests = sum(cloud.request_counts().values())
            failed = [str(o.error) for o in outcomes if not o.ok]
            cloud.reset_counts()
            start = time.perf_counter()
            destroyed = prov.destroy_many(names)
            destroy_time = time.perf_counter() - start
            destroy_requests = sum(cloud.request_counts().values())
            left = cloud.resources()
            dns.close()
            rows.append({
                "repeat": repeat, "load_avg_1m": round(os.getloadavg()[0], 2), "nodes": n, "create_s": round(created, 3), "destroy_s": round(destroy_time, 3),
                "ratio_to_limit": round(created / limit, 3),
                "requests_per_node_create": round(create_requests / n, 2),
                "requests_per_node_destroy": round(destroy_requests / n, 2),
                "failed": failed, "destroy_failed": [str(o.error) for o in destroyed if not o.ok],
                "left_servers": len(left["servers"]), "left_volumes": len(left["volumes"]),
            })
            print(f"run {repeat} N={n:>3}  create {created:6.2f}s  destroy {destroy_time:5.2f}s  "
                  f"create/limit {created / limit:4.2f}  req/node create {create_requests / n:5.1f} "
                  f"destroy {destroy_requests / n:5.1f}  failed {len(failed)}", flush=True)
    finally:
        dns_service.stop()
        bind.stop()
        cloud.stop()
    summary = []
    for n in counts:
        mine = [r for r in rows if r["nodes"] == n]
        summary.append({"nodes": n, "runs": len(mine),
                        "create_s_median": round(statistics.median(r["create_s"] for r in mine), 3),
                        "create_s_min": min(r["create_s"] for r in mine),
                        "create_s_max": max(r["create_s"] for r in mine),
                        "destroy_s_median": round(statistics.median(r["destroy_s"] for r in mine), 3),
                        "requests_per_node_create": statistics.median(r["requests_per_node_create"] for r in mine),
                        "requests_per_node_destroy": statistics.median(r["requests_per_node_destroy"] for r in mine),
                        "failed": sum(len(r["failed"]) for r in mine)})
    one = next((s for s in summary if s["nodes"] == 1), None)
    for s in summary:
        s["ratio_to_limit"] = round(s["create_s_median"] / limit, 3)
        s["ratio_to_one_node"] = round(s["create_s_median"] / one["create_s_median"], 3) if one else None
    return {
        "benchmark": "provision", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": _cpus()},
        "settings": {"boot_delay": args.boot_delay, "ssh_delay": args.ssh_delay, "runcmd_delay": runcmd_delay,
                     "volume_delay": args.volume_delay, "volumes_per_node": args.volumes,
                     "max_parallel": args.max_parallel, "poll_cap": args.poll_cap, "physical_limit_s": limit},
        "summary": summary,
        "rows": rows,
    }


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1,5,20")
    parser.add_argument("--boot-delay", type=float, default=3.0)
    parser.add_argument("--ssh-delay", type=float, default=1.0)
    parser.add_argument("--volume-delay", type=float, default=0.3)
    parser.add_argument("--volumes", type=int, default=1)
    parser.add_argument("--max-parallel", type=int, default=20)
    parser.add_argument("--poll-cap", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
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
