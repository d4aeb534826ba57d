"""Slow benchmark: 200 nodes created and destroyed on devcloud (a real sshd per server), against one node.

Issue 11's "hundreds of nodes": every node ready, named in BIND, and after the destroy nothing left
(servers, volumes, DNS names, sshd processes). Goal: 200 nodes ready within 1.5 x the time of one.
It runs N = 1 and N = 200 interleaved (1, 200, 1, 200, ...) on one stack, so load from other work on
the machine hits both alike, and reports medians: wall times, the ratio, CPU seconds per process
group (devcloud, its sshds, BIND, the DNS service, the engine = this process) and per node, peak RSS
(VmHWM: the high-water mark of each process's life, reached during the biggest batch).
``--profile DIR`` adds one more 200-node run with py-spy sampling devcloud, the DNS service and the
engine (collapsed stacks in DIR; read them with bench/profile_stacks.py); it is not timed.

    .venv/bin/python bench/bench_scale.py [--nodes 200] [--repeats 3] [--max-parallel 200] [--profile DIR]

Not part of CI (minutes of CPU). Exits 1 when any check fails. Writes bench/results/scale-*.json.
Host limits (open files, processes, loopback addresses): docs/performance.md, "200 nodes".
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import proc_usage
import provision_stack as stack_lib
from peak_rss import PeakRSS

from lablease.dns.client import DNSClient
from lablease.provision.adapters import adapter_for
from lablease.provision.context import ProvisionerOptions
from lablease.provision.engine import Provisioner
from lablease.provision.models import CreateRequest
from lablease.provision.tokencache import FileTokenCache

RESULTS = Path(__file__).resolve().parent / "results"
GOAL_RATIO = 1.5
GROUPS = ("devcloud", "sshd", "bind", "dns", "engine")


def raise_open_files() -> tuple[int, int]:
    """Soft open-files limit up to the hard limit (children inherit it): 200 nodes hold ~1,000 sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _roots(stack: stack_lib.Stack) -> dict[str, int]:
    return {"devcloud": stack.cloud.process.proc.pid, "bind": stack.bind.process.proc.pid,
            "dns": stack.dns_service.process.proc.pid}


def _cpu(stack: stack_lib.Stack) -> dict[str, float]:
    """CPU seconds so far per group; devcloud's children (sshds and their sessions, ssh-keygen) apart."""
    got = proc_usage.group_cpu(_roots(stack), split_children=frozenset({"devcloud"}))
    me = os.times()
    return {"devcloud": got.get("devcloud", 0.0), "sshd": got.get("devcloud-children", 0.0),
            "bind": got.get("bind", 0.0), "dns": got.get("dns", 0.0), "engine": me.user + me.system}


def _diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before.get(k, 0.0), 2) for k in after}


def zone_names(stack: stack_lib.Stack) -> dict[str, str]:
    """Short name -> A address of every A record in the zone, by one zone transfer."""
    found = {}
    suffix = "." + stack.bind.zone.rstrip(".") + "."
    for line in stack.bind.zone_dump():
        parts = line.split()
        if len(parts) >= 5 and parts[3] == "A":  # dnspython writes names relative to the zone or absolute
            name = parts[0][:-len(suffix)] if parts[0].endswith(suffix) else parts[0]
            found[name] = parts[4]
    return found


@contextmanager
def profiling(pids: dict[str, int], out: Path | None, rate: int) -> Iterator[None]:
    """py-spy record (collapsed stacks of the thread holding the GIL: CPU in Python, not waits) on each pid while the block runs; nothing when ``out`` is None."""
    if out is None:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).with_name("py-spy"))
    procs = [subprocess.Popen([spy, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate),
                               "--nonblocking", "--gil", "-o", str(out / f"{name}.txt")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for name, pid in pids.items()]
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        for p in procs:
            p.send_signal(2)  # SIGINT: py-spy writes its file and exits
        for p in procs:
            p.wait(timeout=60)


def run_once(stack: stack_lib.Stack, n: int, args: argparse.Namespace, tag: str,
             profile: Path | None = None) -> dict:
    """Create ``n`` nodes with one engine call, check them in BIND, destroy them, check nothing is left."""
    dns = DNSClient(stack.dns_service.update_url)
    config = stack.lab_config(args.max_parallel)
    names = [f"node{i}" for i in range(n)]
    hints = {"volumes": {"count": args.volumes, "size": 1}}
    problems: list[str] = []
    try:
        adapter = adapter_for(config.provider("dev"), token_cache=FileTokenCache(stack.work / f"tokens-{tag}"))
        # shared_polls: an injected adapter does not get them by default (see Provisioner)
        with Provisioner(config, "dev", dns, ProvisionerOptions(adapter=adapter, poll_cap=args.poll_cap,
                                                                     shared_polls=True)) as prov, \
                ExitStack() as spies:
            pids = {**_roots(stack), "engine": os.getpid()}
            spies.enter_context(profiling({k: pids[k] for k in ("devcloud", "dns", "engine")}, profile, args.spy_rate))
            stack.cloud.reset_counts()
            load = os.getloadavg()
            cpu0 = _cpu(stack)
            peaks = {k: PeakRSS(pids[k]) for k in ("engine", "devcloud", "dns")}  # high-water marks (VmHWM)
            start = time.perf_counter()
            outcomes = prov.create_many([CreateRequest(name, "ubuntu", "22.04", hints) for name in names])
            created = time.perf_counter() - start
            peak_rss = {k: p.stop() for k, p in peaks.items()}
            cpu1 = _cpu(stack)
            create_requests = sum(stack.cloud.request_counts().values())
            sshds = proc_usage.count_children(pids["devcloud"], "sshd")
            failed = [f"{o.name}: {o.error}" for o in outcomes if not o.ok]
            problems += failed
            named = zone_names(stack)
            wrong = [o.name for o in outcomes if o.ok and named.get(o.name) != o.node.address]
            if wrong:
                problems.append(f"{len(wrong)} ready nodes not named in BIND with their address, e.g. {wrong[:3]}")
            if sshds < n - len(failed):
                problems.append(f"only {sshds} sshd processes for {n - len(failed)} ready nodes")
            stack.cloud.reset_counts()
            start = time.perf_counter()
            destroyed = prov.destroy_many(names)
            destroy_time = time.perf_counter() - start
            cpu2 = _cpu(stack)
            destroy_requests = sum(stack.cloud.request_counts().values())
    finally:
        dns.close()
    problems += [f"destroy {o.name}: {o.error}" for o in destroyed if not o.ok]
    left = stack.cloud.resources()
    left_names = sorted(set(zone_names(stack)) & set(names))
    left_sshd = proc_usage.count_children(stack.cloud.process.proc.pid, "sshd")
    for what, count in (("servers", len(left["servers"])), ("volumes", len(left["volumes"])),
                        ("DNS names", len(left_names)), ("sshd processes", left_sshd)):
        if count:
            problems.append(f"{count} {what} left after the destroy")
    create_cpu, destroy_cpu = _diff(cpu1, cpu0), _diff(cpu2, cpu1)
    return {
        "nodes": n, "tag": tag, "profiled": profile is not None,
        "load_avg_before": [round(x, 2) for x in load], "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "create_s": round(created, 3), "destroy_s": round(destroy_time, 3),
        "requests_per_node_create": round(create_requests / n, 2),
        "requests_per_node_destroy": round(destroy_requests / n, 2),
        "cpu_create_s": create_cpu, "cpu_destroy_s": destroy_cpu,
        "cpu_create_ms_per_node": round(sum(create_cpu.values()) * 1000 / n, 1),
        "peak_rss_mb": peak_rss, "sshd_processes_ready": sshds,
        "problems": problems,
    }


def summarize(rows: list[dict]) -> list[dict]:
    """Medians per N over the timed (not profiled) runs; the ratio is against N = 1's median."""
    out = []
    for n in sorted({r["nodes"] for r in rows}):
        mine = [r for r in rows if r["nodes"] == n and not r["profiled"]]
        if not mine:
            continue

        def med(key: str, sub: str | None = None) -> float:
            return round(statistics.median(r[key][sub] if sub else r[key] for r in mine), 3)

        out.append({
            "nodes": n, "runs": len(mine), "create_s_median": med("create_s"),
            "create_s_all": [r["create_s"] for r in mine], "destroy_s_median": med("destroy_s"),
            "cpu_create_s_median": {g: med("cpu_create_s", g) for g in GROUPS},
            "cpu_create_ms_per_node_median": med("cpu_create_ms_per_node"),
            "cpu_destroy_s_median": {g: med("cpu_destroy_s", g) for g in GROUPS},
            "requests_per_node_create": med("requests_per_node_create"),
            "requests_per_node_destroy": med("requests_per_node_destroy"),
            "peak_rss_mb_max": {g: max(r["peak_rss_mb"].get(g, 0) for r in mine) for g in ("engine", "devcloud", "dns")},
            "load_avg_1m": [r["load_avg_before"][0] for r in mine],
            "problems": sum(len(r["problems"]) for r in mine),
        })
    one = next((s for s in out if s["nodes"] == 1), None)
    for s in out:
        s["ratio_to_one_node"] = round(s["create_s_median"] / one["create_s_median"], 3) if one else None
    return out


def _print_row(row: dict) -> None:
    cpu = row["cpu_create_s"]
    print(f"{row['tag']:>10} N={row['nodes']:>3}  create {row['create_s']:6.2f}s  destroy {row['destroy_s']:5.2f}s  "
          f"load {row['load_avg_before'][0]:.2f}  CPU(create) " + " ".join(f"{g} {cpu[g]:.1f}" for g in GROUPS)
          + f"  = {row['cpu_create_ms_per_node']:.0f} ms/node  rss engine {row['peak_rss_mb'].get('engine', 0):.0f} MB"
          + (f"  PROBLEMS {len(row['problems'])}: {row['problems'][:3]}" if row["problems"] else ""), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", type=Path, default=None, help="also run once under py-spy, stacks into this dir")
    parser.add_argument("--spy-rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument("--label", default="", help="a word for the results file name (e.g. before, after)")
    stack_lib.add_stack_arguments(parser)
    parser.set_defaults(max_parallel=200)  # below N the batch runs in waves: >= 2 x one node at 100
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    nofile = raise_open_files()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    stack = stack_lib.start_stack(work, nodes=args.nodes, volumes=args.volumes, boot_delay=args.boot_delay,
                                  ssh_delay=args.ssh_delay, volume_delay=args.volume_delay)
    rows = []
    try:
        run_once(stack, 1, args, "warm-up")  # first imports, token, sshd binary in the page cache
        for repeat in range(args.repeats):
            for n in (1, args.nodes):
                rows.append(run_once(stack, n, args, f"{n}-{repeat}"))
                _print_row(rows[-1])
        if args.profile is not None:
            rows.append(run_once(stack, args.nodes, args, "profiled", profile=args.profile))
            _print_row(rows[-1])
    finally:
        stack.stop()
    summary = summarize(rows)
    result = {
        "benchmark": "scale", "label": args.label, "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": stack_lib.cpus(),
                    "open_files_limit": list(nofile)},
        "settings": stack_lib.stack_settings(args, stack.limit), "goal_ratio": GOAL_RATIO,
        "summary": summary, "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"scale-{stamp}{'-' + args.label if args.label else ''}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nphysical limit (boot + ssh + runcmd delay) {stack.limit:.2f}s; medians of {args.repeats} interleaved runs")
    for s in summary:
        print(f"N={s['nodes']:>3}: create {s['create_s_median']:.2f}s {s['create_s_all']}"
              + (f" = {s['ratio_to_one_node']:.2f} x one node (goal {GOAL_RATIO})" if s["nodes"] != 1 else "")
              + f"; CPU {s['cpu_create_ms_per_node_median']:.0f} ms/node "
              + " ".join(f"{g} {v:.1f}s" for g, v in s["cpu_create_s_median"].items())
              + f"; peak RSS {s['peak_rss_mb_max']}; loads {s['load_avg_1m']}")
    print(f"written: {out}")
    bad = [p for r in rows for p in r["problems"]]
    if bad:
        print(f"FAILED: {len(bad)} problems, first: {bad[:5]}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
