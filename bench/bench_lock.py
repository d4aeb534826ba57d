"""Benchmark: lock+unlock pairs per second and pair latency through the /nodes API.

Starts `lablease serve` (subprocess) on SQLite and/or on a real PostgreSQL (durable settings:
fsync and synchronous_commit on), creates nodes, then for each client count runs that many
client processes, each looping `POST /nodes/lock_many/ {count: 1}` + `POST /nodes/unlock_many/`
over a keep-alive connection. Counts every non-200 answer (a refusal while nodes are free is a
failure). Also measures the CPU time each party spends per pair (server processes, PostgreSQL
processes, client processes, and everything else on the machine), which shows what a pair costs
whatever else the shared machine is doing. Prints a table and writes JSON under bench/results/.

    .venv/bin/python bench/bench_lock.py [--seconds 10] [--clients 1,4,16] [--databases sqlite,postgresql]
                                          [--workers 2] [--nodes 64]

Side by side (several servers on the same database, levels interleaved, medians over rounds):

    .venv/bin/python bench/bench_lock.py --databases postgresql --clients 16 --rounds 5 \\
        --variant old:2:/tmp/old-checkout/src --variant new:1 --variant new:2

A variant is ``LABEL[:WORKERS[:PYTHONPATH]]``; PYTHONPATH points at another checkout's ``src``
(e.g. from ``git archive <commit> src | tar -x -C /tmp/old-checkout``).
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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from lablease.testing.lockserver import LockServer, start_lock_server
from lablease.testing.postgres import start_postgres

RESULTS = Path(__file__).resolve().parent / "results"
MTYPE = "bench"
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Variant:
    label: str
    workers: int
    pythonpath: str | None = None

    @classmethod
    def parse(cls, spec: str, default_workers: int) -> "Variant":
        parts = spec.split(":", 2)
        return cls(parts[0], int(parts[1]) if len(parts) > 1 and parts[1] else default_workers,
                   parts[2] if len(parts) > 2 and parts[2] else None)


def _http_client_pair(port: int, who: str):  # noqa: ANN202
    """A pair with the standard library's http.client (what the earlier results used)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {"Content-Type": "application/json"}
    lock_body = json.dumps({"count": 1, "machine_type": MTYPE, "locked_by": who, "description": None}).encode()

    def post(path: str, body: bytes) -> tuple[int, bytes]:
        conn.request("POST", path, body, headers)
        resp = conn.getresponse()
        return resp.status, resp.read()

    def lock() -> tuple[int, bytes]:
        return post("/nodes/lock_many/", lock_body)

    def unlock(name: str) -> tuple[int, bytes]:
        return post("/nodes/unlock_many/", json.dumps({"names": [name], "locked_by": who}).encode())
    return lock, unlock, conn.close


def _lean_pair(port: int, who: str):  # noqa: ANN202
    """A pair over a raw keep-alive socket: the same requests, a fraction of http.client's CPU
    (which parses every response header with the email package). Answers must carry Content-Length."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray()

    def request(path: str, body: bytes) -> bytes:
        return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    def exchange(data: bytes) -> tuple[int, bytes]:
        sock.sendall(data)
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf.extend(sock.recv(65536) or b"")
        head = bytes(buf[:end]).decode("latin-1").lower()
        length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
        while len(buf) < end + 4 + length:
            buf.extend(sock.recv(65536) or b"")
        body = bytes(buf[end + 4:end + 4 + length])
        del buf[:end + 4 + length]
        return int(head.split(" ", 2)[1]), body

    lock_req = request("/nodes/lock_many/",
                       json.dumps({"count": 1, "machine_type": MTYPE, "locked_by": who, "description": None}).encode())

    def lock() -> tuple[int, bytes]:
        return exchange(lock_req)

    def unlock(name: str) -> tuple[int, bytes]:
        return exchange(request("/nodes/unlock_many/", json.dumps({"names": [name], "locked_by": who}).encode()))
    return lock, unlock, sock.close


CLIENTS = {"http.client": _http_client_pair, "lean": _lean_pair}


def client(kind: str, port: int, who: str, start_at: float, stop_at: float, out) -> None:  # noqa: ANN001
    """One client process: lock one node, unlock it, repeat; report latencies, failures, own CPU."""
    lock, unlock, close = CLIENTS[kind](port, who)
    pairs: list[float] = []
    failures: dict[str, int] = {}
    while time.perf_counter() < start_at:
        time.sleep(0.001)
    cpu0 = time.process_time()
    while time.perf_counter() < stop_at:
        t0 = time.perf_counter()
        status, data = lock()
        if status != 200:
            failures[f"lock {status}"] = failures.get(f"lock {status}", 0) + 1
            continue
        status, _ = unlock(json.loads(data)[0]["name"])
        if status != 200:
            failures[f"unlock {status}"] = failures.get(f"unlock {status}", 0) + 1
            continue
        pairs.append(time.perf_counter() - t0)
    cpu = time.process_time() - cpu0
    close()
    out.put((pairs, failures, cpu))


# -- CPU accounting from /proc ------------------------------------------------------------
def _tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _cpu_by_pid(pids: list[int]) -> dict[int, tuple[float, float]]:
    """(user, kernel) CPU seconds of each process."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) / TICK, int(fields[12]) / TICK)  # utime, stime
    return out


def _cpu_used(roots: list[int], before: dict[int, tuple[float, float]]) -> tuple[float, float]:
    """(user, kernel) CPU seconds the trees under ``roots`` used since ``before`` (new processes from 0)."""
    now = _cpu_by_pid([p for r in roots for p in _tree(r)])
    user = sum(u - before.get(pid, (0.0, 0.0))[0] for pid, (u, _) in now.items())
    kernel = sum(k - before.get(pid, (0.0, 0.0))[1] for pid, (_, k) in now.items())
    return user, kernel


def _machine_busy_seconds() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / TICK


def run_level(port: int, clients: int, seconds: float, server_root: int, pg_root: int | None,
              kind: str = "http.client") -> dict:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    start_at = time.perf_counter() + 0.5
    stop_at = start_at + seconds
    procs = [ctx.Process(target=client, args=(kind, port, f"bench{i}", start_at, stop_at, out)) for i in range(clients)]
    for p in procs:
        p.start()
    while time.perf_counter() < start_at - 0.05:
        time.sleep(0.01)
    pg_roots = [pg_root] if pg_root else []
    s0, g0 = _cpu_by_pid(_tree(server_root)), _cpu_by_pid([p for r in pg_roots for p in _tree(r)])
    m0 = _machine_busy_seconds()
    while time.perf_counter() < stop_at:
        time.sleep(0.01)
    (s_user, s_kernel), pg, m1 = _cpu_used([server_root], s0), sum(_cpu_used(pg_roots, g0)), _machine_busy_seconds()
    server = s_user + s_kernel
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    lat = sorted(x for pairs, _, _ in results for x in pairs)
    failures: dict[str, int] = {}
    for _, f, _ in results:
        for k, v in f.items():
            failures[k] = failures.get(k, 0) + v
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [float("nan")] * 99
    n = max(len(lat), 1)
    cl, busy = sum(c for _, _, c in results), m1 - m0
    return {"clients": clients, "pairs": len(lat), "pairs_per_s": round(len(lat) / seconds, 1),
            "p50_ms": round(q[49] * 1000, 2), "p99_ms": round(q[98] * 1000, 2), "failures": failures,
            "cpu_ms_per_pair": {"server": round(server * 1000 / n, 3),
                                "server_kernel": round(s_kernel * 1000 / n, 3), "postgres": round(pg * 1000 / n, 3),
                                "clients": round(cl * 1000 / n, 3)},
            "cpu_cores_busy": {"server": round(server / seconds, 2), "postgres": round(pg / seconds, 2),
                               "clients": round(cl / seconds, 2),
                               "everything_else": round(max(busy - server - pg - cl, 0.0) / seconds, 2)}}


def prepare(port: int, nodes: int) -> None:
    """Create the nodes through the server's API, so each variant's own code writes its own schema."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for i in range(nodes):
        body = json.dumps({"name": f"{MTYPE}{i:03d}.example.com", "machine_type": MTYPE, "up": True})
        conn.request("POST", "/nodes/", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"creating node {i}: {resp.status} {resp.read()[:200]!r}")
        resp.read()
    conn.close()


def _start(variant: Variant, workdir: Path, url: str) -> LockServer:
    env = dict(os.environ)
    if variant.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [variant.pythonpath, env.get("PYTHONPATH")]))
    return start_lock_server(workdir, database_url=url, workers=variant.workers, env=env)


def bench_database(database: str, args: argparse.Namespace, tmp: Path) -> list[dict]:
    pg = start_postgres(tmp / "pg", durable=not args.fast_postgres) if database == "postgresql" else None
    servers: dict[Variant, LockServer] = {}
    try:
        pg_root = int((pg.workdir / "data" / "postmaster.pid").read_text().split()[0]) if pg else None
        for i, v in enumerate(args.variants):
            # Each variant on its own database (in the same cluster), migrated by its own code.
            url = pg.create_database(f"bench{i}") if pg else f"sqlite:///{tmp / f'bench{i}.db'}"
            servers[v] = _start(v, tmp / f"server-{database}-{i}", url)
            prepare(servers[v].port, args.nodes)
        rows = []
        for rnd in range(args.rounds):
            for n in args.clients:
                # Rotate the order each round so no variant always runs right after another.
                order = args.variants[rnd % len(args.variants):] + args.variants[:rnd % len(args.variants)]
                for v in order:
                    load_before = os.getloadavg()[0]
                    level = run_level(servers[v].port, n, args.seconds, servers[v].process.proc.pid, pg_root,
                                      args.client)
                    row = {"database": database, "variant": v.label, "workers": v.workers, "round": rnd + 1,
                           **level, "loadavg_1min_before": round(load_before, 2)}
                    cpu = row["cpu_ms_per_pair"]
                    print(f"{database:10s} {v.label:>6s} w={v.workers} r={rnd + 1} clients={n:2d} "
                          f"{row['pairs_per_s']:7.1f} pairs/s  p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:7.2f} ms  "
                          f"cpu/pair ms srv {cpu['server']:.2f} (kernel {cpu['server_kernel']:.2f}) pg {cpu['postgres']:.2f} "
                          f"cl {cpu['clients']:.2f}  others {row['cpu_cores_busy']['everything_else']:.2f} cores  "
                          f"failures {row['failures'] or 0}  (load {load_before:.1f})", flush=True)
                    rows.append(row)
        return rows
    finally:
        for s in servers.values():
            s.stop()
        if pg:
            pg.stop()


def medians(rows: list[dict]) -> list[dict]:
    """Per database, variant and client count: the median of the rounds."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["database"], r["variant"], r["workers"], r["clients"]), []).append(r)
    out = []
    for (db, label, workers, clients), rs in groups.items():
        def med(get):  # noqa: ANN001, ANN202
            return round(statistics.median(get(r) for r in rs), 3)
        out.append({"database": db, "variant": label, "workers": workers, "clients": clients, "rounds": len(rs),
                    "pairs_per_s": med(lambda r: r["pairs_per_s"]), "p50_ms": med(lambda r: r["p50_ms"]),
                    "p99_ms": med(lambda r: r["p99_ms"]),
                    "cpu_ms_per_pair": {k: med(lambda r, k=k: r["cpu_ms_per_pair"][k])
                                        for k in ("server", "server_kernel", "postgres", "clients")},
                    "others_cores": med(lambda r: r["cpu_cores_busy"]["everything_else"]),
                    "loadavg_1min_before": med(lambda r: r["loadavg_1min_before"]),
                    "failures": sum(sum(r["failures"].values()) for r in rs)})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--nodes", type=int, default=64)
    parser.add_argument("--fast-postgres", action="store_true", help="fsync off (not durable): an upper bound")
    parser.add_argument("--variant", action="append", default=[],
                        help="LABEL[:WORKERS[:PYTHONPATH]], repeatable: servers compared side by side")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every level this often (medians reported)")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="http.client",
                        help="HTTP client of the client processes (lean: raw socket, less client CPU)")
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    args.variants = [Variant.parse(s, args.workers) for s in args.variant] or [Variant("current", args.workers)]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-lock-") as tmp:
        os.chmod(tmp, 0o755)  # the postgres account must reach its data directory
        for database in args.databases.split(","):
            d = Path(tmp) / database
            d.mkdir()
            rows += bench_database(database, args, d)
    summary = medians(rows)
    print("medians:")
    for m in summary:
        cpu = m["cpu_ms_per_pair"]
        print(f"  {m['database']:10s} {m['variant']:>6s} w={m['workers']} clients={m['clients']:2d} "
              f"{m['pairs_per_s']:7.1f} pairs/s  p50 {m['p50_ms']:.2f} ms  p99 {m['p99_ms']:.2f} ms  "
              f"cpu/pair ms srv {cpu['server']:.2f} (kernel {cpu['server_kernel']:.2f}) pg {cpu['postgres']:.2f} "
              f"cl {cpu['clients']:.2f}  others {m['others_cores']:.2f} cores  load {m['loadavg_1min_before']:.1f}  failures {m['failures']}")
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"lock-{stamp}{('-' + args.tag) if args.tag else ''}.json"
    path.write_text(json.dumps({
        "benchmark": "lock+unlock pairs through /nodes (lock_many count 1 + unlock_many)",
        "note": "the machine is shared; loadavg_1min_before and cpu_cores_busy.everything_else show how busy "
                "it was; cpu_ms_per_pair is CPU time per pair of the server, PostgreSQL and client processes",
        "when": stamp, "client": args.client, "seconds_per_level": args.seconds, "nodes": args.nodes, "rounds": args.rounds,
        "variants": [vars(v) for v in args.variants],
        "postgres_durable": not args.fast_postgres, "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                                                                "platform": platform.platform()},
        "medians": summary, "results": rows,
    }, indent=2) + "\n")
    print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
