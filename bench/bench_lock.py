"""Benchmark: lock+unlock pairs per second and pair latency through the /nodes API.

Starts `lablease serve` (subprocess) on SQLite and/or on a real PostgreSQL (durable settings:
fsync and synchronous_commit on), creates nodes, then for each client count runs that many
client processes, each looping `POST /nodes/lock_many/ {count: 1}` + `POST /nodes/unlock_many/`
over a keep-alive connection. Counts every non-200 answer (a refusal while nodes are free is a
failure). Prints a table and writes JSON under bench/results/.

    .venv/bin/python bench/bench_lock.py [--seconds 10] [--clients 1,4,16] [--databases sqlite,postgresql]
                                          [--workers 2] [--nodes 64]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from lablease.store import NodeStore
from lablease.testing.lockserver import start_lock_server
from lablease.testing.postgres import start_postgres

RESULTS = Path(__file__).resolve().parent / "results"
MTYPE = "bench"


def client(port: int, who: str, start_at: float, stop_at: float, out) -> None:  # noqa: ANN001
    """One client process: lock one node, unlock it, repeat; report latencies and failures."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {"Content-Type": "application/json"}
    lock_body = json.dumps({"count": 1, "machine_type": MTYPE, "locked_by": who, "description": None}).encode()
    pairs: list[float] = []
    failures: dict[str, int] = {}
    while time.perf_counter() < start_at:
        time.sleep(0.001)
    while time.perf_counter() < stop_at:
        t0 = time.perf_counter()
        conn.request("POST", "/nodes/lock_many/", lock_body, headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            failures[f"lock {resp.status}"] = failures.get(f"lock {resp.status}", 0) + 1
            continue
        name = json.loads(data)[0]["name"]
        conn.request("POST", "/nodes/unlock_many/", json.dumps({"names": [name], "locked_by": who}).encode(), headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            failures[f"unlock {resp.status}"] = failures.get(f"unlock {resp.status}", 0) + 1
            continue
        pairs.append(time.perf_counter() - t0)
    conn.close()
    out.put((pairs, failures))


def run_level(port: int, clients: int, seconds: float) -> dict:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    start_at = time.perf_counter() + 0.5
    stop_at = start_at + seconds
    procs = [ctx.Process(target=client, args=(port, f"bench{i}", start_at, stop_at, out)) for i in range(clients)]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    lat = sorted(x for pairs, _ in results for x in pairs)
    failures: dict[str, int] = {}
    for _, f in results:
        for k, v in f.items():
            failures[k] = failures.get(k, 0) + v
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [float("nan")] * 99
    return {"clients": clients, "pairs": len(lat), "pairs_per_s": round(len(lat) / seconds, 1),
            "p50_ms": round(q[49] * 1000, 2), "p99_ms": round(q[98] * 1000, 2), "failures": failures}


def prepare(url: str, nodes: int) -> None:
    store = NodeStore.open(url)
    for i in range(nodes):
        store.create(f"{MTYPE}{i:03d}.example.com", {"machine_type": MTYPE, "up": True})
    store.close()


def bench_database(database: str, args: argparse.Namespace, tmp: Path) -> list[dict]:
    pg = None
    if database == "postgresql":
        pg = start_postgres(tmp / "pg", durable=not args.fast_postgres)
        url = pg.create_database("bench")
    else:
        url = f"sqlite:///{tmp / 'bench.db'}"
    try:
        prepare(url, args.nodes)
        server = start_lock_server(tmp / f"server-{database}", database_url=url, workers=args.workers)
        try:
            rows = []
            for n in args.clients:
                load_before = os.getloadavg()[0]
                row = {"database": database, "workers": args.workers, **run_level(server.port, n, args.seconds),
                       "loadavg_1min_before": round(load_before, 2)}
                print(f"{database:10s} workers={args.workers} clients={n:2d}  {row['pairs_per_s']:8.1f} pairs/s  "
                      f"p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:7.2f} ms  failures {row['failures'] or 0}  "
                      f"(load {load_before:.1f} before)",
                      flush=True)
                rows.append(row)
            return rows
        finally:
            server.stop()
    finally:
        if pg:
            pg.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--nodes", type=int, default=64)
    parser.add_argument("--fast-postgres", action="store_true", help="fsync off (not durable): an upper bound")
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-lock-") as tmp:
        os.chmod(tmp, 0o755)  # the postgres account must reach its data directory
        for database in args.databases.split(","):
            d = Path(tmp) / database
            d.mkdir()
            rows += bench_database(database, args, d)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"lock-{stamp}{('-' + args.tag) if args.tag else ''}.json"
    path.write_text(json.dumps({
        "benchmark": "lock+unlock pairs through /nodes (lock_many count 1 + unlock_many)",
        "note": "the machine is shared; loadavg_1min_before shows how busy it was before each level",
        "when": stamp, "seconds_per_level": args.seconds, "nodes": args.nodes,
        "postgres_durable": not args.fast_postgres, "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                                                                "platform": platform.platform()},
        "results": rows,
    }, indent=2) + "\n")
    print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
