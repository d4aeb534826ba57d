"""What the provisioning benchmarks share: the stack they run against and one lablease create/destroy run.

The stack is devcloud (one real sshd per server, boot and SSH delays), a real BIND 9 and `lablease dns
serve`, all on loopback. ``run_lablease`` creates N nodes with one engine call (`create_many`) and
destroys them (`destroy_many`) with a fresh engine (cold token and listings, as a new lab service
starts), and reports times and devcloud's request counts.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lablease.dns.client import DNSClient
from lablease.provision.adapters import adapter_for
from lablease.provision.devlab import devcloud_lab_config, generate_lab_key
from lablease.provision.context import ProvisionerOptions
from lablease.provision.engine import Provisioner
from lablease.provision.models import CreateRequest
from lablease.provision.tokencache import FileTokenCache
from lablease.testing.bind import start_bind
from lablease.testing.devcloud import start_devcloud
from lablease.testing.dns import start_dns_service

RUNCMD_DELAY = 0.5  # devcloud's cloud-init touches the readiness marker this long after sshd is up


@dataclass
class Stack:
    cloud: Any
    bind: Any
    dns_service: Any
    key: Path
    work: Path
    limit: float  # the physical limit: boot + SSH + runcmd delay, the time one server takes to be ready at best

    def lab_config(self, max_parallel: int, **provider: Any):
        return devcloud_lab_config(self.cloud, self.key, nsupdate_url=self.dns_service.update_url,
                                   max_parallel=max_parallel, **provider)

    def stop(self) -> None:
        self.dns_service.stop()
        self.bind.stop()
        self.cloud.stop()


def start_stack(work: Path, *, nodes: int, volumes: int, boot_delay: float, ssh_delay: float,
                volume_delay: float, cloud: dict[str, Any] | None = None, rate_limit: int = 0) -> Stack:
    """devcloud with quotas for ``nodes`` at once, BIND and the DNS service; stop() it when done.

    ``rate_limit`` > 0: devcloud answers 429 with Retry-After: 1 to requests beyond that many per second
    (all API requests of the account together), as a rate-limited cloud account does."""
    handle = start_devcloud(work / "cloud", {
        "boot_delay": boot_delay, "volume_delay": volume_delay,
        "ssh": {"enabled": True, "delay": ssh_delay, "runcmd_delay": RUNCMD_DELAY},
        "quotas": {"instances": nodes + 5, "volumes": nodes * max(volumes, 1) + 5, "cores": 100_000,
                   "ram": 100_000_000, "gigabytes": 1_000_000},
        **(cloud or {}),
    })
    try:
        if rate_limit:
            handle.set_faults({"rate_limits": [{"match": "*", "requests": rate_limit, "per_seconds": 1,
                                                "status": 429, "retry_after": 1}]})
        bind = start_bind(work / "bind")
        dns_service = start_dns_service(work / "dns", bind)
    except BaseException:
        handle.stop()
        raise
    return Stack(handle, bind, dns_service, generate_lab_key(work / "lab_key"), work,
                 boot_delay + ssh_delay + RUNCMD_DELAY)


def run_lablease(stack: Stack, n: int, *, volumes: int, max_parallel: int, poll_cap: float, tag: str,
                 shared_polls: bool = True, rate: float = 0.0) -> dict:
    """Create ``n`` nodes together, then destroy them together; times, requests per node, what is left.

    ``shared_polls=False`` makes every waiting node poll its own server and volumes (the engine before
    shared polls), for comparison. ``rate``: the provider's minimum seconds between API calls."""
    dns = DNSClient(stack.dns_service.update_url)
    config = stack.lab_config(max_parallel, rate=rate)
    names = [f"node{i}" for i in range(n)]
    hints = {"volumes": {"count": volumes, "size": 1}}
    cpu_before = _cpu_seconds()
    try:
        adapter = adapter_for(config.provider("dev"), token_cache=FileTokenCache(stack.work / f"tokens-{tag}"))
        with Provisioner(config, "dev", dns, ProvisionerOptions(adapter=adapter, poll_cap=poll_cap,
                                                                     shared_polls=shared_polls)) as prov:
            stack.cloud.reset_counts()
            start = time.perf_counter()
            outcomes = prov.create_many([CreateRequest(name, "ubuntu", "22.04", hints) for name in names])
            created = time.perf_counter() - start
            create_requests = sum(stack.cloud.request_counts().values())
            stack.cloud.reset_counts()
            start = time.perf_counter()
            destroyed = prov.destroy_many(names)
            destroy_time = time.perf_counter() - start
            destroy_requests = sum(stack.cloud.request_counts().values())
    finally:
        dns.close()
    cpu = _cpu_seconds() - cpu_before
    left = stack.cloud.resources()
    return {
        "system": "lablease" if shared_polls else "lablease-per-node-polls", "nodes": n,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "create_s": round(created, 3), "destroy_s": round(destroy_time, 3),
        "ratio_to_limit": round(created / stack.limit, 3),
        "requests_per_node_create": round(create_requests / n, 2),
        "requests_per_node_destroy": round(destroy_requests / n, 2),
        "failed": [str(o.error) for o in outcomes if not o.ok],
        "destroy_failed": [str(o.error) for o in destroyed if not o.ok],
        "left_servers": len(left["servers"]), "left_volumes": len(left["volumes"]),
        "left_dns_records": sum(1 for name in names if stack.bind.addresses(name)),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "engine_cpu_s": round(cpu, 2),  # this process: the engine's threads (devcloud, sshd, BIND, DNS run apart)
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def summarize(rows: list[dict], limit: float) -> list[dict]:
    """Medians per (system, N) over the repeats; the ratio to one node is against the same system's N = 1."""
    summary = []
    for system, n in sorted({(r["system"], r["nodes"]) for r in rows}):
        mine = [r for r in rows if r["system"] == system and r["nodes"] == n]
        med = {key: round(statistics.median(r[key] for r in mine), 3)
               for key in ("create_s", "destroy_s", "requests_per_node_create", "requests_per_node_destroy")}
        summary.append({
            "system": system, "nodes": n, "runs": len(mine),
            "create_s_median": med["create_s"], "create_s_min": min(r["create_s"] for r in mine),
            "create_s_max": max(r["create_s"] for r in mine), "destroy_s_median": med["destroy_s"],
            "requests_per_node_create": med["requests_per_node_create"],
            "requests_per_node_destroy": med["requests_per_node_destroy"],
            "requests_per_node": round(med["requests_per_node_create"] + med["requests_per_node_destroy"], 2),
            "ratio_to_limit": round(med["create_s"] / limit, 3),
            "failed": sum(len(r["failed"]) for r in mine),
            "left": max(r["left_servers"] + r["left_volumes"] for r in mine),
            "left_dns_records": max(r.get("left_dns_records", 0) for r in mine),
            "peak_rss_mb": max(r.get("peak_rss_mb", 0) for r in mine),
        })
    for s in summary:
        one = next((o for o in summary if o["system"] == s["system"] and o["nodes"] == 1), None)
        s["ratio_to_one_node"] = round(s["create_s_median"] / one["create_s_median"], 3) if one else None
    return summary


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    """The options both provisioning benchmarks take: the cloud's delays and limit, and the engine's settings."""
    parser.add_argument("--boot-delay", type=float, default=3.0)
    parser.add_argument("--ssh-delay", type=float, default=1.0)
    parser.add_argument("--volume-delay", type=float, default=0.3)
    parser.add_argument("--volumes", type=int, default=1, help="volumes per node")
    parser.add_argument("--max-parallel", type=int, default=20)
    parser.add_argument("--poll-cap", type=float, default=1.0)
    parser.add_argument("--rate-limit", type=int, default=0, help="devcloud answers 429 above this many requests/s")
    parser.add_argument("--rate", type=float, default=0.0, help="the provider's `rate`: seconds between API calls")


def stack_settings(args: argparse.Namespace, limit: float) -> dict[str, Any]:
    """The settings of ``add_stack_arguments`` as a results file records them."""
    return {"boot_delay": args.boot_delay, "ssh_delay": args.ssh_delay, "runcmd_delay": RUNCMD_DELAY,
            "volume_delay": args.volume_delay, "volumes_per_node": args.volumes, "max_parallel": args.max_parallel,
            "poll_cap": args.poll_cap, "rate_limit_per_s": args.rate_limit, "rate": args.rate,
            "physical_limit_s": limit}


def cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


def rate_limited_count(stack: Stack) -> int:
    """How many requests devcloud has refused for its rate limit so far (the lines its log has for them)."""
    try:
        text = (Path(stack.cloud.workdir) / "devcloud.log").read_text(errors="replace")
    except OSError:
        return 0
    return text.count("fault rate_limit ")


def write_results(prefix: str, result: dict, table: str, results: Path) -> Path:
    """``result`` as ``<results>/<prefix>-<UTC time>.json`` and ``table`` beside it as .md; returns that stem."""
    from datetime import datetime, timezone
    import json

    results.mkdir(parents=True, exist_ok=True)
    stem = results / f"{prefix}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(table)
    return stem
