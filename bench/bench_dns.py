"""Benchmark: DNS updates per second and latency, through the HTTP service and with bare dnspython.

Starts a real BIND 9 and `lablease dns serve` on loopback, then for 1 and 8 concurrent clients:
  - bare:  dnspython RFC 2136 + TSIG over TCP straight to BIND (one connection per update), the limit;
  - http-wN: `GET /update?name=nodeN&ip=...` through the service run with N uvicorn workers
    (keep-alive HTTP/1.1 connection per client thread).
Every update changes the address, so each one is a real query + update at BIND (never "no-change").
Runs are interleaved and repeated (the machine is shared, so one run alone says little); the table
shows the median run of each row by rate, the JSON under bench/results/ keeps every run.

    .venv/bin/python bench/bench_dns.py [--seconds 4] [--repeat 3] [--clients 1,8] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import dns.query
import dns.tsigkeyring
import dns.update

from lablease.testing.bind import BindServer, start_bind
from lablease.testing.dns import start_dns_service

RESULTS = Path(__file__).resolve().parent / "results"


def _address(client: int, i: int) -> str:
    return f"10.{client}.{(i >> 8) & 255}.{i & 255}"


def bare_worker(bind: BindServer, client: int, stop_at: float, latencies: list[float]) -> None:
    keyring = dns.tsigkeyring.from_file(bind.key_file)
    i = 0
    while time.perf_counter() < stop_at:
        i += 1
        msg = dns.update.UpdateMessage(bind.zone, keyring=keyring)
        msg.replace(f"node{client}", 300, "A", _address(client, i))
        start = time.perf_counter()
        answer = dns.query.tcp(msg, bind.host, port=bind.port, timeout=5)
        latencies.append(time.perf_counter() - start)
        assert answer.rcode() == 0, answer.rcode()


def http_worker(update_url: str, client: int, stop_at: float, latencies: list[float]) -> None:
    # http.client keeps the client's own CPU cost low on a 2-core machine shared with the server and BIND.
    parts = urlsplit(update_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    i = 0
    while time.perf_counter() < stop_at:
        i += 1
        path = f"{parts.path}?{urlencode({'name': f'node{client}', 'ip': _address(client, i)})}"
        start = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        latencies.append(time.perf_counter() - start)
        if response.status != 200 or body != b"success":
            raise RuntimeError(f"update failed: {response.status} {body[:200]!r}")
    conn.close()


def _cpu_seconds(root_pid: int) -> float:
    """CPU time (user + system) used so far by a process and all its descendants (service workers)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    wanted, total, changed = {root_pid}, 0, True
    while changed:
        changed = False
        for pid, (ppid, _) in stats.items():
            if ppid in wanted and pid not in wanted:
                wanted.add(pid)
                changed = True
    total = sum(stats[pid][1] for pid in wanted if pid in stats)
    return total / os.sysconf("SC_CLK_TCK")


def run(kind: str, target, clients: int, seconds: float, cpu_pid: int | None = None) -> dict:
    worker = bare_worker if kind == "bare" else http_worker
    per_client: list[list[float]] = [[] for _ in range(clients)]
    cpu_before = _cpu_seconds(cpu_pid) if cpu_pid else 0.0
    stop_at = time.perf_counter() + seconds
    threads = [threading.Thread(target=worker, args=(target, c + 1, stop_at, per_client[c])) for c in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    latencies = sorted(x for lat in per_client for x in lat)
    cpu_ms = (_cpu_seconds(cpu_pid) - cpu_before) * 1000 / len(latencies) if cpu_pid else None
    return {
        "service_cpu_ms_per_update": round(cpu_ms, 3) if cpu_ms is not None else None,
        "path": kind, "clients": clients, "updates": len(latencies), "seconds": round(elapsed, 2),
        "updates_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each run")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repetitions of every row")
    parser.add_argument("--clients", default="1,8", help="comma-separated client counts")
    parser.add_argument("--workers", default="1,2", help="comma-separated uvicorn worker counts, one service each")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]
    load_before = list(os.getloadavg())  # other work on the machine skews every figure: recorded with them

    with tempfile.TemporaryDirectory(prefix="bench-dns-") as tmp:
        bind = start_bind(Path(tmp) / "bind")
        services = {}
        try:
            for workers in worker_counts:
                services[f"http-w{workers}"] = start_dns_service(
                    Path(tmp) / f"w{workers}", bind, allow_pattern=r"node[0-9]+", workers=workers, log_level="WARNING")
            time.sleep(2.0)  # let every worker process finish starting
            runs = []
            for _ in range(args.repeat):
                for clients in counts:
                    runs.append(run("bare", bind, clients, args.seconds))
                    for path, service in services.items():
                        result = run("http", service.update_url, clients, args.seconds, cpu_pid=service.process.proc.pid)
                        runs.append({**result, "path": path})
        finally:
            for service in services.values():
                service.stop()
            bind.stop()

    rows = []
    for clients in counts:
        for path in ("bare", *services):
            mine = sorted((r for r in runs if r["path"] == path and r["clients"] == clients), key=lambda r: r["updates_per_s"])
            rows.append({**mine[len(mine) // 2], "min_per_s": mine[0]["updates_per_s"], "max_per_s": mine[-1]["updates_per_s"]})
    print(f"{'path':8} {'clients':>7} {'updates/s':>10} {'(min-max)':>15} {'p50 ms':>8} {'p99 ms':>8} {'service CPU ms/update':>22}")
    for r in rows:
        spread = f"{r['min_per_s']:.0f}-{r['max_per_s']:.0f}"
        cpu = "" if r["service_cpu_ms_per_update"] is None else r["service_cpu_ms_per_update"]
        print(f"{r['path']:8} {r['clients']:>7} {r['updates_per_s']:>10} {spread:>15} {r['p50_ms']:>8} {r['p99_ms']:>8} {cpu:>22}")
    for clients in counts:
        bare = next(r for r in rows if r["path"] == "bare" and r["clients"] == clients)
        for path in services:
            http = next(r for r in rows if r["path"] == path and r["clients"] == clients)
            print(f"{clients} client(s), {path}: {http['updates_per_s'] / bare['updates_per_s']:.0%} of bare dnspython")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"dns-{stamp}.json"
    out.write_text(json.dumps({
        "when": stamp, "python": sys.version.split()[0], "machine": platform.machine(),
        "seconds_per_run": args.seconds, "repeat": args.repeat, "service_workers": worker_counts,
        "load_average_before": load_before, "load_average_after": list(os.getloadavg()), "median_rows": rows, "runs": runs,
    }, indent=2) + "\n")
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
