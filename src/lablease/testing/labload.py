"""Load on lab services: clients that lock and unlock cloud nodes through any of several servers.

Shared by the multi-process test (seconds) and its benchmark (minutes).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx


@dataclass
class LoadResult:
    """Answers by status, unlock failures, and the seconds each successful lock_many took."""

    statuses: Counter = field(default_factory=Counter)
    unlock_errors: list[str] = field(default_factory=list)
    lock_seconds: list[float] = field(default_factory=list)
    nodes_locked: int = 0


def run_load(urls: list[str], machine_type: str, clients: int, seconds: float, seed: int = 0) -> LoadResult:
    """``clients`` threads each loop lock_many (1 or 2 nodes) then unlock_many, on random servers, for ``seconds``."""
    result = LoadResult()
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        with httpx.Client(timeout=300) as http:
            while time.monotonic() < stop:
                started = time.monotonic()
                got = http.post(f"{rng.choice(urls)}/nodes/lock_many/", json={
                    "count": rng.choice((1, 2)), "machine_type": machine_type, "locked_by": f"user{i}",
                    "description": f"job {i}"})
                with lock:
                    result.statuses[got.status_code] += 1
                if got.status_code != 200:
                    time.sleep(rng.uniform(0.05, 0.3))
                    continue
                held = [n["name"] for n in got.json()]
                with lock:
                    result.lock_seconds.append(time.monotonic() - started)
                    result.nodes_locked += len(held)
                done = http.post(f"{rng.choice(urls)}/nodes/unlock_many/", json={"names": held,
                                                                                   "locked_by": f"user{i}"})
                if done.status_code != 200:
                    with lock:
                        result.unlock_errors.append(f"{done.status_code} {done.text[:200]}")

    threads = [threading.Thread(target=client, args=(i,), name=f"load-{i}") for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return result
