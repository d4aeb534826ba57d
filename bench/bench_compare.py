"""`make bench`: lablease and teuthology 1.3.0's own libcloud backend side by side, on the same devcloud.

One devcloud (a real sshd per server, boot delay 3 s, SSH delay 1 s, one 1 GB volume per node), one real
BIND 9 and one `lablease dns serve` for both. lablease locks N nodes as a lab does: one `lock_many` of N
through a fresh `lablease serve` lab service per run, then one `unlock_many` (bench/lab_side.py);
`--engine-too` also runs the engine alone (`Provisioner.create_many` / `destroy_many`, poll cap
--poll-cap, system "lablease-engine"), the figures the request-count test asserts. teuthology creates
its N nodes one after another with its own provisioner, as its lock client does, in its own venv
(bench/teuthology_runner.py says exactly what had to change for it to run on devcloud; not its sleeps,
polls or retries), then destroys them the same way. Both reach real readiness: an SSH login and the
cloud-init marker.

Reported per system and N: time until all N are ready and until all are destroyed (medians over the
repeats), the ratio to the physical limit (boot + SSH + runcmd delay), cloud requests per node (devcloud's
counters), what is left behind (servers and volumes, DNS records), and peak RSS (teuthology's process;
for lablease the bench process, which runs the engine).

    .venv/bin/python bench/bench_compare.py [--lablease-nodes 1,5,20] [--teuthology-nodes 1,3] [--repeats 3]
        [--teuthology-repeats 1] [--no-teuthology] [--engine-too] [--rate-limit R] [--tag NAME]

Defaults finish in about four minutes on a 2-core machine (teuthology takes ~27 s per node: its 5 s
`wait_until_running` poll, a refused first attach, its fixed 20 s sleep). Writes bench/results/compare-*.json
and a Markdown table beside it, and PNG plots (bench/plots.py) when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import paramiko
import yaml
from lab_side import run_lab_service
from peak_rss import PeakRSS
from plots import provision_plots
from provision_stack import (
    Stack,
    add_stack_arguments,
    cpus,
    rate_limited_count,
    run_lablease,
    stack_settings,
    start_stack,
    summarize,
    write_results,
)

from lablease.dns.client import DNSClient

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
HINTS = "{\"openstack\": {\"volumes\": {\"count\": %d, \"size\": 1}}}"


def teuthology_python() -> tuple[Path | None, str]:
    """teuthology's venv Python (installed once from PyPI by the test helper), or None and why not."""
    sys.path.insert(0, str(BENCH.parent))
    try:
        from tests.integration.test_teuthology_client import teuthology_venv

        return teuthology_venv() / "bin" / "python", ""
    except BaseException as exc:  # MissingComponent when pip cannot install it
        return None, f"teuthology 1.3.0 unavailable: {exc}"


def teuthology_home(stack: Stack) -> Path:
    """A HOME for teuthology: its .teuthology.yaml for this lab and the key its cloud-config installs."""
    home = stack.work / "teuthology-home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    (home / ".cache").mkdir(exist_ok=True)  # its token cache and lock
    key = paramiko.RSAKey.generate(2048)
    key.write_private_key_file(str(home / ".ssh" / "id_rsa"))
    (home / ".ssh" / "id_rsa.pub").write_text(f"ssh-rsa {key.get_base64()} teuthology@bench\n")
    (home / ".teuthology.yaml").write_text(yaml.safe_dump({
        "lab_domain": stack.bind.zone.rstrip("."), "nsupdate_url": stack.dns_service.update_url,
        "libcloud": {"providers": {"dev": {"driver": "openstack", "driver_args": stack.cloud.driver_args()}}},
    }))
    return home


def _teuthology(python: Path, home: Path, stack: Stack, command: str, names: list[str], volumes: int) -> tuple[dict, float]:
    """One teuthology_runner call; its JSON answer and the peak RSS (MB) of its process."""
    argv = [str(python), str(BENCH / "teuthology_runner.py"), command, "--names", ",".join(names),
            "--hints", HINTS % volumes, "--bind-port", str(stack.bind.port), "--ssh-port", str(stack.cloud.ssh_port)]
    env = {"HOME": str(home), "PATH": f"{python.parent}:/usr/bin:/bin", "LANG": "C.UTF-8"}
    with open(stack.work / "teuthology.log", "ab") as log_file:
        proc = subprocess.Popen(argv, env=env, cwd=home, stdout=subprocess.PIPE, stderr=log_file)
        peak = PeakRSS(proc.pid)
        out, _ = proc.communicate()
        peak.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"teuthology {command} exited {proc.returncode}; see {stack.work / 'teuthology.log'}")
    return json.loads(out.decode().strip().splitlines()[-1]), peak.mb


def run_teuthology(stack: Stack, python: Path, home: Path, n: int, volumes: int) -> dict:
    """teuthology creates ``n`` nodes one after another, then destroys them; what it leaves is cleaned up after."""
    names = [f"node{9000 + i}" for i in range(n)]  # apart from lablease's, and within the DNS service's allow pattern
    stack.cloud.reset_counts()
    refused_before = rate_limited_count(stack)
    created, rss_create = _teuthology(python, home, stack, "create", names, volumes)
    create_requests = sum(stack.cloud.request_counts().values())
    refused_create = rate_limited_count(stack) - refused_before
    stack.cloud.reset_counts()
    destroyed, rss_destroy = _teuthology(python, home, stack, "destroy", names, volumes)
    destroy_requests = sum(stack.cloud.request_counts().values())
    left = stack.cloud.resources()
    records = [name for name in names if stack.bind.addresses(name)]
    dns = DNSClient(stack.dns_service.update_url)
    try:
        for name in records:  # teuthology never removes them; the next run must start clean
            dns.delete(name)
    finally:
        dns.close()
    create_s = sum(node["seconds"] for node in created["nodes"])
    return {
        "system": "teuthology", "nodes": n, "load_avg_1m": round(os.getloadavg()[0], 2),
        "create_s": round(create_s, 3), "destroy_s": round(sum(node["seconds"] for node in destroyed["nodes"]), 3),
        "create_s_per_node": [node["seconds"] for node in created["nodes"]],
        "ratio_to_limit": round(create_s / stack.limit, 3),
        "requests_per_node_create": round(create_requests / n, 2),
        "requests_per_node_destroy": round(destroy_requests / n, 2),
        "rate_limited_create": refused_create,
        "failed": [node["name"] for node in created["nodes"] if not node["ok"]],
        "destroy_failed": [node["name"] for node in destroyed["nodes"] if not node["ok"]],
        "left_servers": len(left["servers"]), "left_volumes": len(left["volumes"]), "left_dns_records": len(records),
        "peak_rss_mb": max(rss_create, rss_destroy),
    }


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        f"# Provisioning side by side ({result['when']})", "",
        f"devcloud: boot {s['boot_delay']} s, SSH {s['ssh_delay']} s, runcmd {s['runcmd_delay']} s (physical limit "
        f"{s['physical_limit_s']} s), {s['volumes_per_node']} volume(s) per node; lablease max_parallel "
        f"{s['max_parallel']}. lablease: one lock_many / unlock_many through a fresh `lablease serve` per run "
        f"(peak RSS: that service); lablease-engine: create_many / destroy_many, poll cap {s['poll_cap']} s (peak "
        f"RSS: the bench process). Machine: {result['machine']['cpus']} CPUs, {result['machine']['platform']}, "
        f"load average {result['machine'].get('load_avg')} at the end. Medians of {s['repeats']} (lablease) and "
        f"{s['teuthology_repeats']} (teuthology) runs.", "",
        "| system | N | all ready (median) | × physical limit | × one node | all destroyed | requests/node create "
        "| destroy | total | failed | left (servers+volumes / DNS records) | peak RSS MB | load 1m |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["summary"]:
        lines.append(
            f"| {r['system']} | {r['nodes']} | {r['create_s_median']:.1f} s | {r['ratio_to_limit']:.2f} | "
            f"{r['ratio_to_one_node'] or 0:.2f} | {r['destroy_s_median']:.1f} s | {r['requests_per_node_create']:.1f} | "
            f"{r['requests_per_node_destroy']:.1f} | {r['requests_per_node']:.1f} | {r['failed']} | {r['left']} / "
            f"{r['left_dns_records']} | {r['peak_rss_mb']:.0f} | {_loads(result, r)} |")
    if result.get("note"):
        lines += ["", result["note"]]
    for e in result.get("errors", []):
        lines += ["", f"Left out: {e['system']} N = {e['nodes']} run {e['repeat']} broke down at load "
                      f"{e['load_avg_1m']}: {e['error'][:200]}"]
    return "\n".join(lines) + "\n"


def _loads(result: dict, summary_row: dict) -> str:
    """The 1-minute load averages of the runs behind one summary row."""
    return ", ".join(f"{r['load_avg_1m']:.1f}" for r in result["rows"]
                     if r["system"] == summary_row["system"] and r["nodes"] == summary_row["nodes"])


def run(args: argparse.Namespace) -> dict:
    lablease_counts = [int(n) for n in args.lablease_nodes.split(",") if n]
    teuthology_counts = [] if args.no_teuthology else [int(n) for n in args.teuthology_nodes.split(",") if n]
    python, note = (None, "teuthology left out (--no-teuthology)") if args.no_teuthology else teuthology_python()
    work = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    stack = start_stack(work, nodes=max(lablease_counts + teuthology_counts), volumes=args.volumes,
                        boot_delay=args.boot_delay, ssh_delay=args.ssh_delay, volume_delay=args.volume_delay,
                        rate_limit=args.rate_limit)
    rows: list[dict] = []
    errors: list[dict] = []
    try:
        home = teuthology_home(stack) if python else None
        # Interleaved, so a burst of other load on the machine hits every size alike.
        for repeat in range(max(args.repeats, args.teuthology_repeats)):
            if repeat < args.repeats:
                for n in lablease_counts:
                    measure(rows, errors, "lablease", n, repeat, lambda: run_lab_service(
                        stack, n, volumes=args.volumes, tag=f"{n}-{repeat}", max_parallel=args.max_parallel,
                        rate=args.rate))
                    if args.engine_too:
                        measure(rows, errors, "lablease-engine", n, repeat, lambda: {
                            **run_lablease(stack, n, volumes=args.volumes, tag=f"engine-{n}-{repeat}",
                                           max_parallel=args.max_parallel, poll_cap=args.poll_cap, rate=args.rate),
                            "system": "lablease-engine", "path": "Provisioner.create_many/destroy_many"})
            if python and repeat < args.teuthology_repeats:
                for n in teuthology_counts:
                    measure(rows, errors, "teuthology", n, repeat,
                            lambda: run_teuthology(stack, python, home, n, args.volumes))
    finally:
        stack.stop()
    return {
        "benchmark": "provision-compare", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {**stack_settings(args, stack.limit), "repeats": args.repeats,
                     "teuthology_repeats": args.teuthology_repeats if python else 0},
        "note": note,
        "summary": summarize(rows, stack.limit),
        "rows": rows,
        "errors": errors,  # runs that broke down (e.g. a service that did not start in time), left out above
    }


def measure(rows: list[dict], errors: list[dict], system: str, n: int, repeat: int, run_once,
            progress=None) -> None:
    """One run into ``rows``; a run that breaks down goes to ``errors`` and the benchmark goes on, because
    the machine is shared and one starved start must not throw away the other runs' figures."""
    try:
        rows.append({"repeat": repeat, **run_once()})
    except Exception as exc:  # noqa: BLE001 - recorded in the results, not hidden
        errors.append({"system": system, "nodes": n, "repeat": repeat, "error": f"{type(exc).__name__}: {exc}"[:600],
                       "load_avg_1m": round(os.getloadavg()[0], 2)})
        print(f"{system:>10} N={n:>3}  run {repeat} broke down: {errors[-1]['error'][:200]}", flush=True)
        return
    (progress or _progress)(rows[-1])


def machine() -> dict:
    """What a result was measured on, with the load it ran under (the machine is shared)."""
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": cpus(),
            "load_avg": [round(x, 2) for x in os.getloadavg()]}


def _progress(row: dict) -> None:
    print(f"{row['system']:>10} N={row['nodes']:>3}  ready {row['create_s']:7.2f}s  destroyed {row['destroy_s']:6.2f}s  "
          f"requests/node {row['requests_per_node_create']:5.1f} + {row['requests_per_node_destroy']:4.1f}  "
          f"failed {len(row['failed'])}  left {row['left_servers'] + row['left_volumes']}/{row['left_dns_records']}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lablease-nodes", default="1,5,20")
    parser.add_argument("--teuthology-nodes", default="1,3")
    parser.add_argument("--repeats", type=int, default=3, help="runs per N for lablease")
    parser.add_argument("--teuthology-repeats", type=int, default=1, help="runs per N for teuthology (~27 s a node)")
    parser.add_argument("--no-teuthology", action="store_true")
    parser.add_argument("--engine-too", action="store_true",
                        help="also run lablease's engine alone (create_many/destroy_many, no lab service)")
    parser.add_argument("--tag", default="", help="added to the results' file names (e.g. ratelimit)")
    add_stack_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    started = time.monotonic()
    result = run(args)
    table = markdown(result)
    stem = write_results(f"compare{'-' + args.tag if args.tag else ''}", result, table, RESULTS)
    written = [stem.with_suffix(".json"), stem.with_suffix(".md"), *provision_plots(result["summary"], stem)]
    print("\n" + table)
    print(f"took {time.monotonic() - started:.0f}s; written: {', '.join(str(p) for p in written)}")


if __name__ == "__main__":
    main()
