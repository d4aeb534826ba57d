"""`make bench`: lablease and teuthology 1.3.0's own libcloud backend side by side, on the same devcloud.

One devcloud (a real sshd per server, boot delay 3 s, SSH delay 1 s, one 1 GB volume per node), one real
BIND 9 and one `lablease dns serve` for both. lablease creates N nodes with one engine call
(`Provisioner.create_many`, fresh engine per run) and destroys them (`destroy_many`); teuthology creates
its N nodes one after another with its own provisioner, as its lock client does, in its own venv
(bench/teuthology_runner.py says exactly what had to change for it to run on devcloud; not its sleeps,
polls or retries), then destroys them the same way. Both reach real readiness: an SSH login and the
cloud-init marker.

Reported per system and N: time until all N are ready and until all are destroyed (medians over the
repeats), the ratio to the physical limit (boot + SSH + runcmd delay), cloud requests per node (devcloud's
counters), what is left behind (servers and volumes, DNS records), and peak RSS (teuthology's process;
for lablease the bench process, which runs the engine).

    .venv/bin/python bench/bench_compare.py [--lablease-nodes 1,5,20] [--teuthology-nodes 1,3] [--repeats 3]
        [--teuthology-repeats 1] [--no-teuthology]

Defaults finish in about four minutes on a 2-core machine (teuthology takes ~27 s per node: its 5 s
`wait_until_running` poll, a refused first attach, its fixed 20 s sleep). Writes bench/results/compare-*.json
and a Markdown table beside it, and PNG plots when matplotlib is installed.
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
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import paramiko
import yaml
from provision_stack import (
    Stack,
    add_stack_arguments,
    cpus,
    run_lablease,
    stack_settings,
    start_stack,
    summarize,
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
    except BaseException as exc:  # pytest.skip's exception when pip cannot install it
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
        peak = _Peak(proc.pid)
        out, _ = proc.communicate()
        peak.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"teuthology {command} exited {proc.returncode}; see {stack.work / 'teuthology.log'}")
    return json.loads(out.decode().strip().splitlines()[-1]), peak.mb


class _Peak(threading.Thread):
    """The high-water RSS of a running process (VmHWM), read until it ends. Its rusage would not do: on
    Linux a child's ru_maxrss starts from the parent's RSS at fork (the bench's), whatever it uses."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.mb = pid, 0.0
        self._done = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._done.wait(0.2):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.mb = max(self.mb, round(int(line.split()[1]) / 1024, 1))

    def stop(self) -> None:
        self._done.set()
        self.join()


def run_teuthology(stack: Stack, python: Path, home: Path, n: int, volumes: int) -> dict:
    """teuthology creates ``n`` nodes one after another, then destroys them; what it leaves is cleaned up after."""
    names = [f"node{9000 + i}" for i in range(n)]  # apart from lablease's, and within the DNS service's allow pattern
    stack.cloud.reset_counts()
    created, rss_create = _teuthology(python, home, stack, "create", names, volumes)
    create_requests = sum(stack.cloud.request_counts().values())
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
        f"{s['max_parallel']}, poll cap {s['poll_cap']} s. Machine: {result['machine']['cpus']} CPUs, "
        f"{result['machine']['platform']}. Medians of {s['repeats']} (lablease) and {s['teuthology_repeats']} "
        f"(teuthology) runs.", "",
        "| system | N | all ready (median) | × physical limit | × one node | all destroyed | requests/node create "
        "| destroy | total | failed | left (servers+volumes / DNS records) | peak RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["summary"]:
        lines.append(
            f"| {r['system']} | {r['nodes']} | {r['create_s_median']:.1f} s | {r['ratio_to_limit']:.2f} | "
            f"{r['ratio_to_one_node'] or 0:.2f} | {r['destroy_s_median']:.1f} s | {r['requests_per_node_create']:.1f} | "
            f"{r['requests_per_node_destroy']:.1f} | {r['requests_per_node']:.1f} | {r['failed']} | {r['left']} / "
            f"{r['left_dns_records']} | {r['peak_rss_mb']:.0f} |")
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines) + "\n"


def plots(result: dict, stem: Path) -> list[Path]:
    """Time to ready and requests per node against N, one line per system (nothing without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    for key, label, name in (("create_s_median", "time until all N are ready (s)", "time"),
                             ("requests_per_node", "cloud requests per node (create + destroy)", "requests")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for system in sorted({r["system"] for r in result["summary"]}):
            mine = [r for r in result["summary"] if r["system"] == system]
            ax.plot([r["nodes"] for r in mine], [r[key] for r in mine], marker="o", label=system)
        ax.set_xlabel("N nodes")
        ax.set_ylabel(label)
        ax.legend()
        path = stem.with_name(f"{stem.name}-{name}.png")
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def run(args: argparse.Namespace) -> dict:
    lablease_counts = [int(n) for n in args.lablease_nodes.split(",") if n]
    teuthology_counts = [] if args.no_teuthology else [int(n) for n in args.teuthology_nodes.split(",") if n]
    python, note = (None, "teuthology left out (--no-teuthology)") if args.no_teuthology else teuthology_python()
    work = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    stack = start_stack(work, nodes=max(lablease_counts + teuthology_counts), volumes=args.volumes,
                        boot_delay=args.boot_delay, ssh_delay=args.ssh_delay, volume_delay=args.volume_delay,
                        rate_limit=args.rate_limit)
    rows: list[dict] = []
    try:
        home = teuthology_home(stack) if python else None
        # Interleaved, so a burst of other load on the machine hits every size alike.
        for repeat in range(max(args.repeats, args.teuthology_repeats)):
            if repeat < args.repeats:
                for n in lablease_counts:
                    rows.append({"repeat": repeat, **run_lablease(stack, n, volumes=args.volumes, tag=f"{n}-{repeat}",
                                                                  max_parallel=args.max_parallel,
                                                                  poll_cap=args.poll_cap, rate=args.rate)})
                    _progress(rows[-1])
            if python and repeat < args.teuthology_repeats:
                for n in teuthology_counts:
                    rows.append({"repeat": repeat, **run_teuthology(stack, python, home, n, args.volumes)})
                    _progress(rows[-1])
    finally:
        stack.stop()
    return {
        "benchmark": "provision-compare", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": cpus()},
        "settings": {**stack_settings(args, stack.limit), "repeats": args.repeats,
                     "teuthology_repeats": args.teuthology_repeats if python else 0},
        "note": note,
        "summary": summarize(rows, stack.limit),
        "rows": rows,
    }


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
    add_stack_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    started = time.monotonic()
    result = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"compare-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    stem.with_suffix(".md").write_text(table)
    written = [stem.with_suffix(".json"), stem.with_suffix(".md"), *plots(result, stem)]
    print("\n" + table)
    print(f"took {time.monotonic() - started:.0f}s; written: {', '.join(str(p) for p in written)}")


if __name__ == "__main__":
    main()
