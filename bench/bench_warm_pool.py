"""Benchmark: lock-many latency from a warm pool against cold provisioning, for 1 and 5 nodes.

One lab service, two machine types on the same devcloud (real sshd per server, boot delay as given):
`warm` keeps `min_ready` nodes of ubuntu-22.04 provisioned, `cold` provisions on lock. Each round
waits until the warm pool is full, locks N warm nodes, unlocks them, then locks and unlocks N cold
ones; prints the median and p95 lock latency per kind and N, and writes JSON under bench/results/.
The goal (issue 10): warm answers within 100 ms at p50, whatever the boot time.

    .venv/bin/python bench/bench_warm_pool.py [--rounds 5] [--counts 1,5] [--boot-delay 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from lablease.provision.devlab import devcloud_lab_data, generate_lab_key
from lablease.testing.bind import start_bind
from lablease.testing.devcloud import DevcloudHandle, start_devcloud
from lablease.testing.dns import start_dns_service
from lablease.testing.lockserver import LockServer, start_lock_server

RESULTS = Path(__file__).resolve().parent / "results"
DOMAIN = "lab.example"


def _wait_warm(http: httpx.Client, count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes = http.get("/nodes/", params={"machine_type": "warm"}).json()
        if sum(1 for n in nodes if n["state"] == "ready" and not n["locked"]) >= count:
            return
        time.sleep(0.2)
    raise TimeoutError("the warm pool did not fill")


def _lock(http: httpx.Client, machine_type: str, count: int) -> tuple[float, list[str]]:
    started = time.perf_counter()
    got = http.post("/nodes/lock_many/", json={"count": count, "machine_type": machine_type, "locked_by": "bench",
                                               "description": None, "os_type": "ubuntu", "os_version": "22.04"})
    seconds = time.perf_counter() - started
    got.raise_for_status()
    return seconds, [n["name"] for n in got.json()]


def start_lab(work: Path, stop: contextlib.ExitStack, cloud_config: dict[str, Any],
              pool: int) -> tuple[DevcloudHandle, LockServer, Path]:
    """devcloud, BIND, the DNS service and a lab service (all stopped by ``stop``); its lab key file.

    Machine type ``warm`` keeps ``pool`` nodes of ubuntu-22.04 ready, ``cold`` provisions on lock; each
    has 2 × ``pool`` node records. Shared with profile_warm_lock.py, which profiles the same lab.
    """
    cloud = start_devcloud(work / "devcloud", cloud_config)
    stop.callback(cloud.stop)
    bind = start_bind(work / "bind", DOMAIN, f"*.{DOMAIN}.")
    stop.callback(bind.stop)
    dns = start_dns_service(work / "dns", bind, allow_pattern=r"(warm|cold)[0-9]+")
    stop.callback(dns.stop)
    key = generate_lab_key(work / "key")
    top = devcloud_lab_data(cloud, key, nsupdate_url=dns.update_url, lab_domain=DOMAIN, machine_type="warm",
                            min_ready={"ubuntu-22.04": pool})
    cold = devcloud_lab_data(cloud, key, nsupdate_url=dns.update_url, lab_domain=DOMAIN, machine_type="cold")
    top["libcloud"]["providers"]["cold"] = cold["libcloud"]["providers"]["cold"]
    server = start_lock_server(work / "lab", lab_domain=DOMAIN, top=top, extra={"reconcile_interval": 0})
    stop.callback(server.stop)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for kind in ("warm", "cold"):
            for i in range(1, 2 * pool + 1):
                http.post("/nodes/", json={"name": f"{kind}{i:02d}.{DOMAIN}", "machine_type": kind,
                                           "up": True}).raise_for_status()
    return cloud, server, key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--counts", default="1,5")
    parser.add_argument("--boot-delay", type=float, default=3.0)
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    pool = max(counts)
    cloud_config = {"boot_delay": args.boot_delay, "volume_delay": 0.2,
                    "ssh": {"enabled": True, "delay": 1.0, "runcmd_delay": 0.2},
                    "quotas": {"instances": 100, "volumes": 100, "cores": 1000, "ram": 10_000_000}}
    latencies: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="lablease-bench-") as tmp, contextlib.ExitStack() as stop:
        _, server, _ = start_lab(Path(tmp), stop, cloud_config, pool)
        http = httpx.Client(base_url=server.url, timeout=600)
        for _ in range(args.rounds):
            for count in counts:
                for kind in ("warm", "cold"):
                    if kind == "warm":
                        _wait_warm(http, pool)
                    seconds, names = _lock(http, kind, count)
                    latencies.setdefault(f"{kind} n={count}", []).append(seconds)
                    http.post("/nodes/unlock_many/", json={"names": names, "locked_by": "bench"}).raise_for_status()
    rows = {k: {"p50_s": round(statistics.median(v), 3), "p95_s": round(sorted(v)[int(0.95 * (len(v) - 1))], 3),
                "runs": len(v)} for k, v in latencies.items()}
    print(f"{'lock-many':<12} {'p50 s':>8} {'p95 s':>8} {'runs':>5}")
    for key, row in rows.items():
        print(f"{key:<12} {row['p50_s']:>8.3f} {row['p95_s']:>8.3f} {row['runs']:>5}")
    result = {"when": datetime.now(timezone.utc).isoformat(), "args": vars(args), "latency": rows}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"warm-pool-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
