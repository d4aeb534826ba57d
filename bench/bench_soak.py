"""Soak: lab users locking, logging in and unlocking through several lab services for minutes on end.

Starts PostgreSQL (durable), devcloud (real sshd per server, short boot delays), BIND, the DNS service
and S `lablease serve` lab services on one database, the provider keeping a warm pool of ubuntu-22.04;
U simulated users (threads, bench_soak's soak_parts.user_loop) loop lock-many of 1-3 nodes (the warm OS
or a cold one), an SSH login to one node (lab key, host key pinned to `ssh_pub_key`), a short job,
unlock; devcloud answers a few percent of compute calls with 500. Every 10 s it samples RSS, open files
and threads of each service process. At the end: locks/min, lock latency (warm and cold OS apart), errors
by kind (a 503 "only N nodes available" is the documented wait, counted apart), leftovers once every
user stopped (servers/volumes in devcloud and DNS names beyond the warm pool's, locked records) and
growth (RSS first vs last fifth of the samples taken while the users ran, after warm-up; open
files and threads) and every RSS step of 3 MB or more between two samples. Writes
bench/results/soak-*.json.

    .venv/bin/python bench/bench_soak.py [--minutes 30] [--users 50] [--services 2] [--nodes 40]
        [--warm-check-interval 300] [--trace-dir DIR] [--label WORD]

``--trace-dir``: the lab services trace their allocations (bench/soak_trace/sitecustomize.py, not part
of lablease) and write what grew every 30 s into DIR, to find what a step or a rise is made of.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # soak_parts, proc_usage (also when a test loads us)

import soak_parts  # noqa: E402
from lablease.dns.client import DNSClient  # noqa: E402
from lablease.provision.devlab import devcloud_lab_data, generate_lab_key  # noqa: E402
from lablease.testing.bind import start_bind  # noqa: E402
from lablease.testing.devcloud import start_devcloud  # noqa: E402
from lablease.testing.dns import start_dns_service  # noqa: E402
from lablease.testing.lockserver import start_lock_server  # noqa: E402
from lablease.testing.postgres import start_postgres  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TRACE_HOOK = Path(__file__).resolve().parent / "soak_trace"  # its sitecustomize.py: see Soak.trace_dir
DOMAIN = "lab.example"
MACHINE = "dev"
CLOUD = {"boot_delay": 0.5, "volume_delay": 0.1, "ssh": {"enabled": True, "delay": 0.2, "runcmd_delay": 0.05},
         "quotas": {"instances": 500, "volumes": 1000, "cores": 5000, "ram": 10_000_000}}
# a low rate of cloud faults: 500s on a few percent of compute calls (the engine's retries absorb them)
FAULTS = {"seed": 19, "errors": [{"match": "GET /compute/*", "probability": 0.02},
                                 {"match": "POST /compute/v2.1/servers", "probability": 0.02},
                                 {"match": "DELETE /compute/*", "probability": 0.02}]}


def _nodes(url: str) -> list[dict[str, Any]]:
    return httpx.get(f"{url}/nodes/", params={"machine_type": MACHINE}, timeout=30).json()


def _warm_ready(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [n for n in nodes if n["state"] == "ready" and not n["locked"]]


def _settle(url: str, warm: int, timeout: float = 180) -> list[dict[str, Any]]:
    """Wait until nothing is provisioning or being destroyed and the warm pool is full; the nodes then."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = _nodes(url)
        busy = [n for n in nodes if n["state"] in ("provisioning", "destroying") or n["locked"]]
        if (not busy and len(_warm_ready(nodes)) >= warm) or time.monotonic() > deadline:
            return nodes
        time.sleep(1.0)


def leftovers(url: str, cloud: Any, dns_update_url: str, warm: int) -> dict[str, Any]:
    """What remains once every user stopped: anything beyond the warm pool's ready nodes is left over."""
    nodes = _settle(url, warm)
    pool = _warm_ready(nodes)
    ids = {n["cloud_server_id"] for n in pool}
    short = {n["name"].split(".")[0] for n in pool}
    res = cloud.resources()
    with DNSClient(dns_update_url) as dns:
        names = dns.names()
    return {
        "servers": [s["id"] for s in res["servers"] if s["id"] not in ids],
        "volumes": [v["id"] for v in res["volumes"]],
        "dns_names": [n for n in names if n.split(".")[0] not in short],
        "locked_records": [n["name"] for n in nodes if n["locked"]],
        "records_not_idle_or_ready": {n["name"]: n["state"] for n in nodes if n["state"] not in ("idle", "ready")},
        "warm_pool_ready": len(pool),
    }


def _wait_warm(url: str, warm: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while len(_warm_ready(_nodes(url))) < warm:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the warm pool did not reach {warm} ready nodes in {timeout:.0f} s")
        time.sleep(0.5)


@dataclass
class Soak:
    """How long, how many users and services, and what the lab services run with (see module doc).

    ``warm_check_interval``: the provider's setting (None: its default, 300 s). ``trace_dir``: each lab
    service runs with bench/soak_trace on its PYTHONPATH, whose sitecustomize traces its allocations
    (tracemalloc) and writes what grew every ``trace_every`` seconds into that directory."""

    minutes: float
    users: int
    services: int = 2
    nodes: int = 40
    warm: int = 3
    job_seconds: tuple[float, float] = (1.0, 4.0)
    sample_every: float = 10.0
    seed: int = 0
    faults: bool = True
    progress: bool = False
    warm_check_interval: float | None = None
    trace_dir: Path | None = None
    trace_every: float = 30.0


def _serve_env(soak: Soak) -> dict[str, str] | None:
    """The lab services' environment: ours, plus the tracing sitecustomize when ``trace_dir`` is set."""
    if soak.trace_dir is None:
        return None
    soak.trace_dir.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(p for p in (str(TRACE_HOOK), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "LABLEASE_SOAK_TRACE_DIR": str(soak.trace_dir),
            "LABLEASE_SOAK_TRACE_EVERY": str(soak.trace_every)}


def run_soak(work: Path, soak: Soak | None = None, **settings: Any) -> dict[str, Any]:
    """Start the stack in ``work``, run the users for ``minutes``, and return the figures (see module doc).

    ``settings``: the fields of ``Soak`` when ``soak`` is not given."""
    soak = soak or Soak(**settings)
    minutes, users, services, nodes, warm = soak.minutes, soak.users, soak.services, soak.nodes, soak.warm
    job_seconds, seed, faults, progress = soak.job_seconds, soak.seed, soak.faults, soak.progress
    provider: dict[str, Any] = {}
    if soak.warm_check_interval is not None:
        provider["warm_check_interval"] = soak.warm_check_interval
    with contextlib.ExitStack() as stop:
        os.chmod(work, 0o755)  # the postgres account must reach its data directory
        pg = start_postgres(work / "pg", durable=True)
        stop.callback(pg.stop)
        db = pg.create_database("soak")
        cloud = start_devcloud(work / "devcloud", CLOUD)
        stop.callback(cloud.stop)
        bind = start_bind(work / "bind", DOMAIN, f"*.{DOMAIN}.")
        stop.callback(bind.stop)
        dns = start_dns_service(work / "dns", bind, allow_pattern=r"node[0-9]+")
        stop.callback(dns.stop)
        key = generate_lab_key(work / "key")
        top = devcloud_lab_data(cloud, key, nsupdate_url=dns.update_url, lab_domain=DOMAIN, machine_type=MACHINE,
                                max_parallel=16, min_ready={"-".join(soak_parts.WARM_OS): warm}, **provider)
        labs, serve_started = [], []
        for i in range(services):
            serve_started.append(time.monotonic())
            labs.append(start_lock_server(work / f"lab{i}", database_url=db, lab_domain=DOMAIN, top=top,
                                          extra={"reconcile_interval": 10}, env=_serve_env(soak),
                                          timeout=30 if soak.trace_dir is None else 120))
            stop.callback(labs[-1].stop)
        for n in range(1, nodes + 1):
            httpx.post(f"{labs[0].url}/nodes/", json={"name": f"node{n}.{DOMAIN}", "machine_type": MACHINE,
                                                      "up": True, "is_vm": True}, timeout=30).raise_for_status()
        _wait_warm(labs[0].url, warm)
        pids = {f"serve{i}": lab.process.proc.pid for i, lab in enumerate(labs)}
        pids.update(devcloud=cloud.process.proc.pid, dns=dns.process.proc.pid,
                    bind=bind.process.proc.pid)
        sampler = soak_parts.Sampler(pids, soak.sample_every)
        if faults:
            cloud.set_faults(FAULTS)
        tally = soak_parts.Tally()
        lab = soak_parts.Lab([s.url for s in labs], key, cloud.ssh_port, MACHINE)
        started = time.monotonic()
        stop_at = started + minutes * 60
        threads = [threading.Thread(target=soak_parts.user_loop, name=f"user{i}", daemon=True,
                                    args=(i, lab, stop_at, tally, seed, job_seconds)) for i in range(users)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            time.sleep(1.0)
            if progress and int(time.monotonic() - started) % 30 == 0:
                done = sum(len(v) for v in tally.lock_seconds.values())
                print(f"[{(time.monotonic() - started) / 60:5.1f} min] locks {done} waits {tally.waits} "
                      f"errors {dict(tally.errors)} last sample {sampler.samples[-1]}", flush=True)
        elapsed = time.monotonic() - started
        users_from = started - sampler.started  # the users' run in the sampler's seconds
        sampler_started = sampler.started
        cloud.clear_faults()
        left = leftovers(labs[0].url, cloud, dns.update_url, warm)
        samples = sampler.stop()
    warmup = min(120.0, elapsed / 5)
    window = (users_from + warmup, users_from + elapsed)  # growth: users running, warm-up over; not after
    locks = sum(len(v) for v in tally.lock_seconds.values())
    return {
        "when": datetime.now(timezone.utc).isoformat(),
        "args": {"minutes": minutes, "users": users, "services": services, "nodes": nodes, "warm": warm,
                 "job_seconds": list(job_seconds), "faults": FAULTS if faults else None, "seed": seed,
                 "warm_check_interval": soak.warm_check_interval, "traced": soak.trace_dir is not None},
        # when each lab service started, in the sampler's seconds (negative: before the first sample);
        # its warm checks run every warm_check_interval from then on
        "serve_started_s": {f"serve{i}": round(t - sampler_started, 1) for i, t in enumerate(serve_started)},
        "seconds": round(elapsed, 1), "locks": locks, "locks_per_min": round(locks / (elapsed / 60), 1),
        "nodes_locked": tally.nodes_locked, "ssh_logins": tally.logins,
        "latency_s": {kind: {"n": len(v), "p50": soak_parts.percentile(v, 0.5), "p99": soak_parts.percentile(v, 0.99),
                             "max": soak_parts.percentile(v, 1.0), "over_30s": sum(1 for x in v if x > 30)}
                      for kind, v in tally.lock_seconds.items()},
        "waits_only_n_available": tally.waits, "errors": dict(tally.errors), "error_examples": tally.examples,
        "leftovers": left, "warmup_s": warmup, "growth_window_s": [round(t, 1) for t in window],
        "growth": soak_parts.growth(samples, list(pids), *window),
        "rss_steps_3mb": {name: soak_parts.steps(samples, name) for name in pids},
        "samples": samples,
    }


def clean(result: dict[str, Any]) -> bool:
    """True when the run had no error other than documented waits and left nothing behind."""
    left = result["leftovers"]
    return not result["errors"] and not any(left[k] for k in ("servers", "volumes", "dns_names", "locked_records",
                                                              "records_not_idle_or_ready"))


def print_table(result: dict[str, Any]) -> None:
    """The figures a reader wants first: throughput, latency, errors, leftovers, growth per process."""
    print(f"{result['seconds']:.0f} s, {result['args']['users']} users, {result['args']['services']} services: "
          f"{result['locks']} locks ({result['locks_per_min']}/min), {result['ssh_logins']} SSH logins, "
          f"{result['waits_only_n_available']} waits (503 only N available)")
    for kind, lat in result["latency_s"].items():
        print(f"  lock {kind:<4} n={lat['n']:<5} p50 {lat['p50']} s  p99 {lat['p99']} s  max {lat['max']} s  >30 s: {lat['over_30s']}")
    print(f"  errors: {result['errors'] or 'none'}")
    left = result["leftovers"]
    print(f"  leftovers: servers {len(left['servers'])} volumes {len(left['volumes'])} dns {len(left['dns_names'])} "
          f"locked {len(left['locked_records'])} busy {len(left['records_not_idle_or_ready'])} "
          f"(warm pool ready {left['warm_pool_ready']})")
    lo, hi = result["growth_window_s"]
    print(f"  growth: samples from {lo:.0f} s to {hi:.0f} s only (users running, after {result['warmup_s']:.0f} s "
          "of warm-up; not the samples after the users stopped)")
    print(f"  {'process':<9} {'RSS first MB':>12} {'last MB':>8} {'growth %':>9} {'fds':>9} {'threads':>9}")
    for name, g in result["growth"].items():
        print(f"  {name:<9} {g['rss_first_mb']:>12} {g['rss_last_mb']:>8} {g['rss_growth_pct']:>9} "
              f"{g['fds_first']:>4}->{g['fds_last']:<4} {g['threads_first']:>4}->{g['threads_last']:<4}")
    for name, found in result.get("rss_steps_3mb", {}).items():
        if found:
            print(f"  {name}: RSS steps of 3 MB or more [s, MB]: {found}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--services", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=40)
    parser.add_argument("--warm", type=int, default=3, help="min_ready of ubuntu-22.04")
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warm-check-interval", type=float, default=None,
                        help="the provider's warm_check_interval in seconds (default: its default, 300; 0: off)")
    parser.add_argument("--trace-dir", type=Path, default=None,
                        help="trace the lab services' allocations (tracemalloc) into this directory")
    parser.add_argument("--label", default="", help="a word for the results file name")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lablease-soak-") as tmp:
        result = run_soak(Path(tmp), Soak(minutes=args.minutes, users=args.users, services=args.services,
                                          nodes=args.nodes, warm=args.warm, seed=args.seed, faults=not args.no_faults,
                                          progress=True, warm_check_interval=args.warm_check_interval,
                                          trace_dir=args.trace_dir))
    print_table(result)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"soak-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}{'-' + args.label if args.label else ''}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out}")
    sys.exit(0 if clean(result) else 1)


if __name__ == "__main__":
    main()
