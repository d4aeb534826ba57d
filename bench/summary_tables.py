"""Markdown tables of each benchmark's results file, for `make bench`'s summary (bench_all.py).

One function per step; each takes the files that step wrote and returns Markdown lines. The
provisioning benchmarks write their own tables, which are reused as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable


def _json(files: list[Path], prefix: str) -> dict | None:
    found = [f for f in files if f.name.startswith(prefix) and f.suffix == ".json"]
    return json.loads(found[-1].read_text()) if found else None


def own_table(files: list[Path]) -> list[str]:
    """The Markdown table the benchmark wrote itself, without its title line."""
    tables = [f for f in files if f.suffix == ".md"]
    if not tables:
        return ["(no table written)"]
    return [line for line in tables[-1].read_text().splitlines() if not line.startswith("# ")]


def lock_table(files: list[Path]) -> list[str]:
    """Lock server: lock+unlock pairs per second and pair latency, per database and client count."""
    data = _json(files, "lock-")
    if data is None:
        return ["(no results)"]
    lines = ["| database | clients | pairs/s | p50 ms | p99 ms | server CPU ms/pair | failures | load 1m before |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for m in data["medians"]:
        lines.append(f"| {m['database']} | {m['clients']} | {m['pairs_per_s']:.0f} | {m['p50_ms']:.1f} | "
                     f"{m['p99_ms']:.1f} | {m['cpu_ms_per_pair']['server']:.2f} | {m['failures']} | "
                     f"{m.get('loadavg_1min_before', '')} |")
    return lines


def dns_table(files: list[Path]) -> list[str]:
    """DNS updates: per path (bare dnspython to BIND = the limit, or through the service) and client count."""
    data = _json(files, "dns-")
    if data is None:
        return ["(no results)"]
    lines = ["| path | clients | updates/s (median run) | min–max | p50 ms | p99 ms |", "| --- | --- | --- | --- | --- | --- |"]
    for r in data["median_rows"]:
        lines.append(f"| {r['path']} | {r['clients']} | {r['updates_per_s']:.0f} | {r['min_per_s']:.0f}–"
                     f"{r['max_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    return lines + ["", f"load average before {_load(data['load_average_before'])}, after {_load(data['load_average_after'])}"]


def _load(value: float | list[float]) -> str:
    """A load average as bench_dns.py wrote it: one figure (older files) or the 1, 5 and 15 minute ones."""
    return ", ".join(f"{v:.2f}" for v in (value if isinstance(value, list) else [value]))


def warm_table(files: list[Path]) -> list[str]:
    """Warm pool: lock_many latency from warm nodes against cold provisioning."""
    data = _json(files, "warm-pool-")
    if data is None:
        return ["(no results)"]
    lines = ["| lock | p50 | p95 | runs |", "| --- | --- | --- | --- |"]
    for kind, v in data["latency"].items():
        lines.append(f"| {kind} | {v['p50_s'] * 1000:.0f} ms | {v['p95_s'] * 1000:.0f} ms | {v['runs']} |")
    return lines


TABLES: dict[str, Callable[[list[Path]], list[str]]] = {
    "compare": own_table, "ratelimit": own_table, "lock": lock_table, "dns": dns_table, "warm": warm_table,
}
