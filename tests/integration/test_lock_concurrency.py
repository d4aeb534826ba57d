"""16 HTTP clients lock_many and unlock for 30 s; a database trigger, independent of lablease's
code, logs every change of ``locked_by``. No node may ever have two owners, no unlock may be
lost, and no request may be refused (403/503) or fail (500) while free nodes remain.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import create_engine, text

from lablease.store import NodeStore
from lablease.testing.lockserver import start_lock_server

pytestmark = pytest.mark.integration

CLIENTS = 16
SECONDS = 30
NODES = 64  # > CLIENTS * MAX_COUNT: a refusal is never justified
MAX_COUNT = 3
MTYPE = "race"

SQLITE_TRIGGER = [
    "CREATE TABLE lock_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, node TEXT NOT NULL, old_by TEXT, new_by TEXT)",
    """CREATE TRIGGER lock_log_trg AFTER UPDATE OF locked_by ON nodes
       WHEN OLD.locked_by IS NOT NEW.locked_by
       BEGIN INSERT INTO lock_log (node, old_by, new_by) VALUES (NEW.name, OLD.locked_by, NEW.locked_by); END""",
]
POSTGRES_TRIGGER = [
    "CREATE TABLE lock_log (seq BIGSERIAL PRIMARY KEY, node TEXT NOT NULL, old_by TEXT, new_by TEXT)",
    """CREATE FUNCTION lock_log_fn() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN INSERT INTO lock_log (node, old_by, new_by) VALUES (NEW.name, OLD.locked_by, NEW.locked_by);
       RETURN NEW; END $$""",
    """CREATE TRIGGER lock_log_trg AFTER UPDATE ON nodes FOR EACH ROW
       WHEN (OLD.locked_by IS DISTINCT FROM NEW.locked_by) EXECUTE FUNCTION lock_log_fn()""",
]


@dataclass
class ClientLog:
    holds: list[tuple[str, float, float]] = field(default_factory=list)  # node, got (after answer), released (before request)
    statuses: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)


def run_client(url: str, who: str, stop_at: float, seed: int, out: ClientLog) -> None:
    rnd = random.Random(seed)
    with httpx.Client(base_url=url, timeout=60) as http:
        k = 0
        while time.monotonic() < stop_at:
            k += 1
            count = rnd.randint(1, MAX_COUNT)
            r = http.post("/nodes/lock_many/", json={"count": count, "locked_by": who, "machine_type": MTYPE,
                                                     "description": f"{who}-{k}"})
            got = time.monotonic()
            out.statuses["lock_many"].append(r.status_code)
            if r.status_code != 200:
                out.errors.append(f"lock_many {r.status_code} {r.text[:200]}")
                continue
            names = [n["name"] for n in r.json()]
            if len(names) != count or any(n["locked_by"] != who for n in r.json()):
                out.errors.append(f"lock_many answered {r.text[:200]} for count {count}")
            time.sleep(rnd.uniform(0.001, 0.008))  # the scenario: hold the nodes a few ms before unlocking
            released = time.monotonic()
            out.holds += [(n, got, released) for n in names]
            if k % 2:
                r = http.post("/nodes/unlock_many/", json={"names": names, "locked_by": who})
                out.statuses["unlock_many"].append(r.status_code)
                if r.status_code != 200:
                    out.errors.append(f"unlock_many {r.status_code} {r.text[:200]}")
            else:
                for n in names:
                    r = http.put(f"/nodes/{n}/lock/", json={"name": n, "locked": False, "locked_by": who,
                                                            "description": f"{who}-{k}"})
                    out.statuses["unlock_one"].append(r.status_code)
                    if r.status_code != 200:
                        out.errors.append(f"unlock {n} {r.status_code} {r.text[:200]}")


def prepare(url: str) -> None:
    store = NodeStore.open(url)
    for i in range(NODES):
        store.create(f"{MTYPE}{i:03d}.example.com", {"machine_type": MTYPE, "up": True})
    store.close()
    engine = create_engine(url)
    statements = POSTGRES_TRIGGER if engine.dialect.name == "postgresql" else SQLITE_TRIGGER
    with engine.begin() as conn:
        for stmt in statements:
            conn.execute(text(stmt))
    engine.dispose()


def read_log(url: str) -> list[tuple[int, str, str | None, str | None]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text("SELECT seq, node, old_by, new_by FROM lock_log ORDER BY seq"))]
        still_locked = conn.execute(text("SELECT count(*) FROM nodes WHERE locked OR locked_by IS NOT NULL")).scalar()
    engine.dispose()
    assert still_locked == 0, f"{still_locked} nodes were left locked: an unlock was lost"
    return rows


@pytest.mark.timeout(240)
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_sixteen_clients_never_share_a_node_and_are_never_refused_while_nodes_are_free(
        database, tmp_path, request):
    if database == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'race.db'}"
    prepare(url)
    server = start_lock_server(tmp_path / "server", database_url=url, workers=2)
    logs = [ClientLog() for _ in range(CLIENTS)]
    try:
        stop_at = time.monotonic() + SECONDS
        threads = [threading.Thread(target=run_client, args=(server.url, f"client{i}", stop_at, i, logs[i]))
                   for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=SECONDS + 120)
        assert not any(t.is_alive() for t in threads), "a client hung"
    finally:
        server.stop()

    errors = [e for log in logs for e in log.errors]
    assert errors == [], f"{len(errors)} requests failed or were refused, e.g. {errors[:5]}"
    locks = sum(len(log.holds) for log in logs)
    assert locks > 200, f"only {locks} locks in {SECONDS}s: the test did not exercise anything"

    # The trigger's log: per node, owners must alternate None -> X -> None -> Y ...
    log = read_log(url)
    per_node: dict[str, list[tuple[str | None, str | None]]] = defaultdict(list)
    for _seq, node, old, new in log:
        per_node[node].append((old, new))
    for node, changes in per_node.items():
        holder = None
        for old, new in changes:
            assert old == holder, f"{node}: log shows {old!r} -> {new!r} while held by {holder!r}"
            assert old is None or new is None, f"{node} went from {old!r} straight to {new!r}: two owners"
            holder = new
        assert holder is None, f"{node} still held by {holder!r}"
    log_locks = sum(1 for _s, _n, old, new in log if old is None and new is not None)
    log_unlocks = sum(1 for _s, _n, old, new in log if old is not None and new is None)
    assert log_locks == locks == log_unlocks, (log_locks, locks, log_unlocks)

    # The clients' own view agrees: on every node, one hold ends before the next begins.
    by_node: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for client in logs:
        for node, got, released in client.holds:
            by_node[node].append((got, released))
    for node, holds in by_node.items():
        holds.sort()
        for (_g1, r1), (g2, _r2) in zip(holds, holds[1:]):
            assert g2 > r1, f"{node} was handed out before its previous holder let go"
    print(f"{database}: {locks} locks by {CLIENTS} clients in {SECONDS}s, {len(log)} logged changes")
