"""lablease's side of the provisioning benchmarks as a lab uses it: lock-many and unlock through `lablease serve`.

A fresh lab service per run (cold token, listings and threads, as teuthology's side is a fresh process per
run): the bench registers N idle cloud records, times one `POST /nodes/lock_many/` of N nodes (it answers
when every node is ready over SSH) and one `POST /nodes/unlock_many/` (it answers when every node is
destroyed), and reads devcloud's request counts around each. The engine's own settings are the product's
defaults (poll cap 5 s), not the engine-direct run's (see bench_compare.py's --engine-too).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
from peak_rss import PeakRSS
from provision_stack import Stack, rate_limited_count

from lablease.provision.devlab import devcloud_lab_data
from lablease.testing.lockserver import start_lock_server

MACHINE_TYPE = "dev"
OWNER = "bench@lab"


def run_lab_service(stack: Stack, n: int, *, volumes: int, max_parallel: int, tag: str, rate: float = 0.0,
                    system: str = "lablease", env: dict[str, str] | None = None) -> dict:
    """Lock ``n`` nodes in one lock_many through a new lab service, then unlock them in one unlock_many.

    ``env`` replaces the service's environment (PYTHONPATH=<another checkout>/src runs that code instead);
    ``system`` names the row."""
    domain = stack.bind.zone.rstrip(".")
    top = devcloud_lab_data(stack.cloud, stack.key, nsupdate_url=stack.dns_service.update_url, lab_domain=domain,
                            machine_type=MACHINE_TYPE, max_parallel=max_parallel, rate=rate)
    # No reconciler pass during the run: its listings would be counted as the run's requests.
    service = start_lock_server(Path(stack.work) / f"lab-{tag}", lab_domain=domain, top=top,
                                extra={"reconcile_interval": 3600}, env=env,
                                timeout=120)  # the shared 2-core machine has been seen at load 39
    peak = PeakRSS(service.process.proc.pid)
    short = [f"node{i}" for i in range(n)]
    try:
        with httpx.Client(base_url=service.url, timeout=900) as http:
            for name in short:
                http.post("/nodes/", json={"name": f"{name}.{domain}", "machine_type": MACHINE_TYPE, "up": True,
                                           "is_vm": True}).raise_for_status()
            stack.cloud.reset_counts()
            refused_before = rate_limited_count(stack)
            start = time.perf_counter()
            locked = http.post("/nodes/lock_many/", json={
                "count": n, "machine_type": MACHINE_TYPE, "locked_by": OWNER, "description": f"bench {tag}",
                "os_type": "ubuntu", "os_version": "22.04", "openstack": {"volumes": {"count": volumes, "size": 1}}})
            created = time.perf_counter() - start
            create_requests = sum(stack.cloud.request_counts().values())
            refused_create = rate_limited_count(stack) - refused_before
            failed = [] if locked.status_code == 200 else [f"{locked.status_code} {locked.text[:300]}"]
            names = [node["name"] for node in locked.json()] if locked.status_code == 200 else []
            stack.cloud.reset_counts()
            start = time.perf_counter()
            unlocked = http.post("/nodes/unlock_many/", json={"names": names, "locked_by": OWNER}) if names else None
            destroy_time = time.perf_counter() - start
            destroy_requests = sum(stack.cloud.request_counts().values())
            destroy_failed = [] if unlocked is None or unlocked.status_code == 200 else [unlocked.text[:300]]
    finally:
        rss = peak.stop()
        service.stop()
    left = stack.cloud.resources()
    return {
        "system": system, "path": "lab service lock_many/unlock_many", "nodes": n,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "create_s": round(created, 3), "destroy_s": round(destroy_time, 3),
        "ratio_to_limit": round(created / stack.limit, 3),
        "requests_per_node_create": round(create_requests / n, 2),
        "requests_per_node_destroy": round(destroy_requests / n, 2),
        "rate_limited_create": refused_create,
        "failed": failed, "destroy_failed": destroy_failed,
        "left_servers": len(left["servers"]), "left_volumes": len(left["volumes"]),
        "left_dns_records": sum(1 for name in short if stack.bind.addresses(name)),
        "peak_rss_mb": rss,  # the lab service process (the bench process only sends two requests)
    }
