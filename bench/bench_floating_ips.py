"""Benchmark: cloud requests per node with and without floating IPs (issue 21), counted by devcloud.

One devcloud with a reachable network `pub-net` (the OVH shape: the server's own address answers SSH)
and a private network `lab-net` whose servers are reached through floating IPs from the external network
`public` (the private-cloud shape). The same engine and driver (libcloud's 2.x, Keystone v2) create N nodes
together and destroy them together on each shape; devcloud counts every request by its route.

    .venv/bin/python bench/bench_floating_ips.py [--nodes 1,10,20] [--repeats 2]

Prints a table (requests per node for create and destroy, the floating IP requests on their own) and writes
JSON and Markdown under bench/results/ (floating-ips-<time>.*).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from lablease.dns.client import DNSClient
from lablease.provision.context import ProvisionerOptions
from lablease.provision.devlab import devcloud_lab_config, generate_lab_key
from lablease.provision.engine import Provisioner
from lablease.provision.models import CreateRequest
from lablease.testing.bind import start_bind
from lablease.testing.devcloud import start_devcloud
from lablease.testing.dns import start_dns_service

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = {
    "public address (OVH)": {"networks": ["pub-net"]},
    "floating IP": {"networks": ["lab-net"], "floating_ip_pool": "public"},
}


def _cloud(nodes: int) -> dict:
    return {"boot_delay": 1.0, "volume_delay": 0.1, "ssh": {"enabled": True, "delay": 0.3, "runcmd_delay": 0.1},
            "networks": [{"name": "pub-net"}, {"name": "lab-net", "public": False, "reachable": False},
                         {"name": "public", "external": True}],
            "quotas": {"instances": nodes + 5, "volumes": nodes + 5, "cores": 100_000, "ram": 100_000_000,
                       "gigabytes": 1_000_000, "floating_ips": nodes + 5}}


def _floating(route: str) -> bool:
    return "floatingips" in route or "/ports" in route


def run_shape(cloud, bind, dns, key, shape: str, n: int, tag: str) -> dict:  # noqa: ANN001
    config = devcloud_lab_config(cloud, key, nsupdate_url=dns.update_url, max_parallel=n,
                                 driver_args=cloud.driver_args("2.0_password", "2.0"), **SHAPES[shape])
    names = [f"node{i}" for i in range(n)]
    client = DNSClient(dns.update_url)
    try:
        with Provisioner(config, "dev", client, ProvisionerOptions(token_cache_dir=Path(tempfile.mkdtemp()) / tag,
                                                                   poll_first=0.5, poll_cap=2.0)) as prov:
            cloud.reset_counts()
            start = time.perf_counter()
            outcomes = prov.create_many([CreateRequest(name, "ubuntu", "22.04") for name in names])
            created = time.perf_counter() - start
            create = Counter(cloud.request_counts())
            cloud.reset_counts()
            destroyed = prov.destroy_many(names)
            destroy = Counter(cloud.request_counts())
    finally:
        client.close()
    left = cloud.resources()
    return {
        "shape": shape, "nodes": n, "create_s": round(created, 2),
        "requests_per_node_create": round(sum(create.values()) / n, 2),
        "requests_per_node_destroy": round(sum(destroy.values()) / n, 2),
        "floating_requests_per_node": round(sum(v for k, v in (create + destroy).items() if _floating(k)) / n, 2),
        "create_routes": dict(sorted(create.items())), "destroy_routes": dict(sorted(destroy.items())),
        "failed": [str(o.error) for o in outcomes if not o.ok] + [str(o.error) for o in destroyed if not o.ok],
        "left": {k: len(left.get(k, [])) for k in ("servers", "volumes", "floating_ips")},
        "left_dns_records": sum(1 for name in names if bind.addresses(name)),
    }


def table(rows: list[dict]) -> str:
    lines = ["| shape | N | requests/node create | destroy | total | of which floating IP (ports, floatingips) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for shape in SHAPES:
        for n in sorted({r["nodes"] for r in rows}):
            mine = [r for r in rows if r["shape"] == shape and r["nodes"] == n]
            c = statistics.median(r["requests_per_node_create"] for r in mine)
            d = statistics.median(r["requests_per_node_destroy"] for r in mine)
            f = statistics.median(r["floating_requests_per_node"] for r in mine)
            lines.append(f"| {shape} | {n} | {c:.2f} | {d:.2f} | {c + d:.2f} | {f:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1,10,20")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-fip-"))
    cloud = start_devcloud(work / "cloud", _cloud(max(counts)))
    bind = start_bind(work / "bind")
    dns = start_dns_service(work / "dns", bind)
    key = generate_lab_key(work / "lab_key")
    rows = []
    try:
        for repeat in range(args.repeats):
            for n in counts:
                for shape in SHAPES:
                    row = run_shape(cloud, bind, dns, key, shape, n, f"{repeat}-{n}-{len(rows)}")
                    rows.append({"repeat": repeat, **row})
                    print(f"{shape:22s} N={n:>3} create {row['create_s']:6.2f}s req/node create "
                          f"{row['requests_per_node_create']:5.2f} destroy {row['requests_per_node_destroy']:5.2f} "
                          f"floating {row['floating_requests_per_node']:4.2f} failed {len(row['failed'])} "
                          f"left {row['left']}", flush=True)
    finally:
        dns.stop()
        bind.stop()
        cloud.stop()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    out = {"benchmark": "floating-ips", "when": stamp, "python": sys.version.split()[0], "rows": rows}
    (RESULTS / f"floating-ips-{stamp}.json").write_text(json.dumps(out, indent=1))
    text = table(rows)
    (RESULTS / f"floating-ips-{stamp}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
