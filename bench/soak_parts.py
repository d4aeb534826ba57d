"""Pieces of the soak (bench_soak.py): the simulated lab users, the /proc sampler and the growth figures.

A user loops like a teuthology job would: lock-many of 1-3 nodes with an OS, an SSH login to one of
them (the lab key; the host key must be the ``ssh_pub_key`` the lock answered), a short job, unlock.
"""

from __future__ import annotations

import getpass
import random
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paramiko

import proc_usage

WARM_OS = ("ubuntu", "22.04")
COLD_OS = (("centos", "9"), ("ubuntu", "20.04"))
WAIT = "only "  # a 503 "only N nodes available": the documented wait under contention, not an error


@dataclass
class Tally:
    """What every user saw: lock latencies by kind (warm OS or cold OS), waits and errors by kind."""

    lock_seconds: dict[str, list[float]] = field(default_factory=lambda: {"warm": [], "cold": []})
    waits: int = 0
    errors: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    logins: int = 0
    nodes_locked: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def error(self, kind: str, detail: str) -> None:
        """Count one error of ``kind``, keeping the first ``detail`` of each kind for the report."""
        with self.lock:
            self.errors[kind] += 1
            self.examples.setdefault(kind, detail[:300])


@dataclass
class Lab:
    """Where the users go: the lock servers' URLs, the lab key, devcloud's SSH port, the machine type."""

    urls: list[str]
    key_file: Path
    ssh_port: int
    machine_type: str = "dev"


def ssh_login(address: str, port: int, key_file: Path, expected_host_key: str) -> str | None:
    """Log in as the lab would and run a command; None when all is well, else what went wrong."""
    client = paramiko.SSHClient()
    seen: dict[str, str] = {}

    class Pin(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, _client: Any, _host: str, key: paramiko.PKey) -> None:
            seen["key"] = f"{key.get_name()} {key.get_base64()}"

    client.set_missing_host_key_policy(Pin())
    try:
        client.connect(address, port=port, username=getpass.getuser(), key_filename=str(key_file),
                       look_for_keys=False, allow_agent=False, timeout=15, banner_timeout=15, auth_timeout=15)
        _, out, _ = client.exec_command("echo soak", timeout=15)
        said = out.read().decode().strip()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        return f"ssh: {type(exc).__name__}: {exc}"
    finally:
        client.close()
    if seen.get("key") != expected_host_key:
        return f"hostkey: served {seen.get('key')!r}, lock answered {expected_host_key!r}"
    return None if said == "soak" else f"ssh: said {said!r}"


def user_loop(i: int, lab: Lab, stop_at: float, tally: Tally, seed: int, job_seconds: tuple[float, float]) -> None:
    """One lab user: lock, log in, work, unlock, until ``stop_at`` (monotonic); never leaves a lock held."""
    rng = random.Random(seed * 1000 + i)
    owner = f"user{i}@soak"
    with httpx.Client(timeout=300) as http:
        while time.monotonic() < stop_at:
            kind = "warm" if rng.random() < 0.5 else "cold"
            os_type, os_version = WARM_OS if kind == "warm" else rng.choice(COLD_OS)
            body: dict[str, Any] = {"count": rng.randint(1, 3), "machine_type": lab.machine_type,
                                    "locked_by": owner, "description": f"soak job {i}",
                                    "os_type": os_type, "os_version": os_version}
            if kind == "cold" and rng.random() < 0.5:
                body["openstack"] = {"volumes": {"count": 1, "size": 1}}
            started = time.monotonic()
            try:
                got = http.post(f"{rng.choice(lab.urls)}/nodes/lock_many/", json=body)
            except httpx.HTTPError as exc:
                tally.error(f"lock-{type(exc).__name__}", str(exc))
                continue
            seconds = time.monotonic() - started
            if got.status_code == 503 and WAIT in got.text:
                with tally.lock:
                    tally.waits += 1
                time.sleep(rng.uniform(1.0, 3.0))  # teuthology's scheduler waits too
                continue
            if got.status_code != 200:
                tally.error(f"lock-{got.status_code}", got.text)
                time.sleep(1.0)
                continue
            nodes = got.json()
            with tally.lock:
                tally.lock_seconds[kind].append(seconds)
                tally.nodes_locked += len(nodes)
            node = rng.choice(nodes)
            problem = ssh_login(node["addresses"][0], lab.ssh_port, lab.key_file, node["ssh_pub_key"])
            if problem:
                tally.error(problem.split(":", 1)[0], f"{node['name']}: {problem}")
            else:
                with tally.lock:
                    tally.logins += 1
            time.sleep(rng.uniform(*job_seconds))
            _unlock(http, rng.choice(lab.urls), [n["name"] for n in nodes], owner, tally)


def _unlock(http: httpx.Client, url: str, names: list[str], owner: str, tally: Tally) -> None:
    for attempt in range(3):  # a lost answer must not leave the nodes locked: unlock_many is idempotent
        try:
            done = http.post(f"{url}/nodes/unlock_many/", json={"names": names, "locked_by": owner})
        except httpx.HTTPError as exc:
            tally.error(f"unlock-{type(exc).__name__}", str(exc))
            continue
        if done.status_code == 200:
            return
        tally.error(f"unlock-{done.status_code}", done.text)
        time.sleep(2.0 * (attempt + 1))


class Sampler(threading.Thread):
    """Every ``interval`` seconds, RSS, open files and threads of each named process, from /proc."""

    def __init__(self, pids: dict[str, int], interval: float = 10.0):
        super().__init__(daemon=True, name="soak-sampler")
        self.pids, self.interval = pids, interval
        self.samples: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self._done = threading.Event()
        self.start()

    def run(self) -> None:
        while True:
            row: dict[str, Any] = {"t": round(time.monotonic() - self.started, 1)}
            for name, pid in self.pids.items():
                row[name] = proc_usage.usage(pid)
            self.samples.append(row)
            if self._done.wait(self.interval):
                return

    def stop(self) -> list[dict[str, Any]]:
        """Stop sampling; every sample so far."""
        self._done.set()
        self.join()
        return self.samples


def growth(samples: list[dict[str, Any]], names: list[str], start: float,
           end: float | None = None) -> dict[str, dict[str, Any]]:
    """Per process: mean RSS of the first fifth of the samples taken from ``start`` to ``end`` (sampler
    seconds: warm-up over, users still running) vs the last fifth (percent), open files and threads at
    the first sample of that window vs the last, and their maxima. Samples after ``end`` (the users
    stopped: settling, leftovers) are no part of it."""
    window = [s for s in samples if s["t"] >= start and (end is None or s["t"] <= end)] or samples
    fifth = max(1, len(window) // 5)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        rows = [s[name] for s in window if s.get(name)]
        if not rows:
            continue
        first = statistics.mean(r["rss_mb"] for r in rows[:fifth])
        last = statistics.mean(r["rss_mb"] for r in rows[-fifth:])
        out[name] = {"rss_first_mb": round(first, 1), "rss_last_mb": round(last, 1),
                     "rss_growth_pct": round(100 * (last - first) / first, 1),
                     "fds_first": rows[0]["fds"], "fds_last": rows[-1]["fds"], "fds_max": max(r["fds"] for r in rows),
                     "threads_first": rows[0]["threads"], "threads_last": rows[-1]["threads"],
                     "threads_max": max(r["threads"] for r in rows), "samples": len(rows),
                     "window_s": [round(window[0]["t"], 1), round(window[-1]["t"], 1)]}
    return out


def steps(samples: list[dict[str, Any]], name: str, threshold_mb: float = 3.0) -> list[list[float]]:
    """[sampler seconds, MB] of every change of ``name``'s RSS by ``threshold_mb`` or more from one sample
    to the next: a slow rise is a leak's shape, a step up and back down an allocator's."""
    out, before = [], None
    for s in samples:
        row = s.get(name)
        if not row:
            continue
        if before is not None and abs(row["rss_mb"] - before) >= threshold_mb:
            out.append([s["t"], round(row["rss_mb"] - before, 1)])
        before = row["rss_mb"]
    return out


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank, rounded to ms; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)
