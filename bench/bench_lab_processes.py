"""Benchmark: two lab services on one PostgreSQL under concurrent lock-many/unlock, checked by the event trail.

Starts PostgreSQL, devcloud (real sshd per server), BIND, the DNS service and N `lablease serve` lab
services on one database; C clients lock 1 or 2 nodes through a random service and unlock them through
another, for S seconds. Then every node's event trail is checked (no node provisioned twice, no double
owner) and devcloud and the zone must be empty. Prints locks per second, lock latency (p50/p95) and
answers by status; writes JSON under bench/results/.

    .venv/bin/python bench/bench_lab_processes.py [--seconds 60] [--clients 16] [--services 2] [--nodes 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

from lablease.provision.devlab import devcloud_lab_data, generate_lab_key
from lablease.store import NodeStore
from lablease.testing.bind import start_bind
from lablease.testing.devcloud import start_devcloud
from lablease.testing.dns import start_dns_service
from lablease.testing.labload import run_load
from lablease.testing.lockserver import start_lock_server
from lablease.testing.postgres import start_postgres
from lablease.testing.trail import check_trail

RESULTS = Path(__file__).resolve().parent / "results"
DOMAIN = "lab.example"
CLOUD = {"boot_delay": 0.2, "volume_delay": 0.05, "ssh": {"enabled": True, "delay": 0.1, "runcmd_delay": 0.05},
         "quotas": {"instances": 500, "volumes": 1000, "cores": 5000, "ram": 10_000_000}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--services", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lablease-bench-") as tmp, contextlib.ExitStack() as stop:
        work = Path(tmp)
        os.chmod(work, 0o755)  # the postgres account must reach its data directory
        pg = start_postgres(work / "pg")
        stop.callback(pg.stop)
        url = pg.create_database("bench")
        cloud = start_devcloud(work / "devcloud", CLOUD)
        stop.callback(cloud.stop)
        bind = start_bind(work / "bind", DOMAIN, f"*.{DOMAIN}.")
        stop.callback(bind.stop)
        dns = start_dns_service(work / "dns", bind, allow_pattern=r"node[0-9]+")
        stop.callback(dns.stop)
        top = devcloud_lab_data(cloud, generate_lab_key(work / "key"), nsupdate_url=dns.update_url,
                                lab_domain=DOMAIN, machine_type="dev", max_parallel=16)
        services = []
        for i in range(args.services):
            services.append(start_lock_server(work / f"lab{i}", database_url=url, lab_domain=DOMAIN, top=top,
                                              extra={"reconcile_interval": 5}))
            stop.callback(services[-1].stop)
        names = [f"node{i}.{DOMAIN}" for i in range(1, args.nodes + 1)]
        for name in names:
            httpx.post(f"{services[0].url}/nodes/", json={"name": name, "machine_type": "dev", "up": True,
                                                          "is_vm": True}).raise_for_status()
        started = time.monotonic()
        load = run_load([s.url for s in services], "dev", args.clients, args.seconds)
        elapsed = time.monotonic() - started
        store = NodeStore.open(url, run_migrations=False, pool_size=2)
        try:
            provisioned = check_trail(store, names)
        finally:
            store.close()
        left = cloud.resources()
        lat = sorted(load.lock_seconds)
        result = {
            "when": datetime.now(timezone.utc).isoformat(), "args": vars(args), "seconds": round(elapsed, 1),
            "statuses": dict(load.statuses), "unlock_errors": load.unlock_errors,
            "locks_per_second": round(len(lat) / elapsed, 2), "nodes_per_second": round(load.nodes_locked / elapsed, 2),
            "lock_p50_s": round(statistics.median(lat), 3) if lat else None,
            "lock_p95_s": round(lat[int(0.95 * (len(lat) - 1))], 3) if lat else None,
            "provisionings": sum(provisioned.values()), "trail": "ok",
            "left_in_cloud": {"servers": len(left["servers"]), "volumes": len(left["volumes"])},
        }
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"lab-processes-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
