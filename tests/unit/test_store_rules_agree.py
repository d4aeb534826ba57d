"""The node state machine and the eligibility rules say the same thing in Python and in SQL.

Every rule (lock, warm claim, unlock, destroy) and every move of the table is checked over every
combination of (state, locked, up, holder) on SQLite and PostgreSQL: first the rendered SQL
against the Python predicate, then each real lock path against the Python predicate. The
specifications below are written out by hand, so a rule that drifts fails here too.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, replace
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from lablease.store import InvalidRequest, NodeRecord, NodeState, NodeStore, StoreError
from lablease.store import pg_fast
from lablease.store.eligibility import DESTROY, LOCK, RULES, UNLOCK, WARM_CLAIM, Eligibility
from lablease.store.lifecycle import MOVES, can_move, check_move, move_sql, sources
from lablease.store.models import nodes
from lablease.store.pg_async import AsyncLockLane
from lablease.store.records import utcnow

ME, OTHER = "me", "other"
OS = ("ubuntu", "22.04")


@dataclass(frozen=True)
class Combo:
    """One row of the grid: what a node is, as the rules see it."""

    state: NodeState
    locked: bool
    up: bool | None
    locked_by: str | None


COMBOS = [Combo(*c) for c in itertools.product(NodeState, (False, True), (True, False, None), (ME, OTHER, None))]

# The specifications, by hand (paddles' semantics plus the lab's states).
SPEC = {
    "lock": lambda c: c.state == "idle" and not c.locked and c.up is True,
    "warm claim": lambda c: c.state == "ready" and not c.locked and c.up is True,
    "unlock": lambda c: c.state == "idle" and c.locked and c.locked_by == ME,
    "destroy": lambda c: c.state in ("ready", "destroy-failed") and c.locked and c.locked_by == ME,
}
SPEC_MOVES = {
    ("idle", "provisioning"), ("provisioning", "ready"), ("provisioning", "destroying"), ("provisioning", "idle"),
    ("ready", "destroying"),
    ("destroying", "idle"), ("destroying", "destroy-failed"), ("destroy-failed", "destroying"),
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def url(request, tmp_path) -> str:
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path / 's.db'}"


@pytest.fixture
def store(url):
    s = NodeStore.open(url)
    yield s
    s.close()


def careful(store: NodeStore) -> NodeStore:
    """The same store without the PostgreSQL one-statement paths: only the transactional path runs."""
    return NodeStore(replace(store.engines, autocommit=None))


def grid(store: NodeStore, prefix: str) -> dict[str, Combo]:
    """Insert one node per combination, each of its own machine type (``<prefix><i>``); name -> combo."""
    now = utcnow()
    rows = {f"{prefix}{i}": c for i, c in enumerate(COMBOS)}
    with store.engines.write.begin() as conn:
        conn.execute(insert(nodes), [
            dict(name=name, machine_type=name, state=c.state.value, locked=c.locked, up=c.up, locked_by=c.locked_by,
                 locked_since=now if c.locked else None, description=None, os_type=OS[0], os_version=OS[1],
                 is_vm=True, created_at=now, updated_at=now)
            for name, c in rows.items()])
    return rows


def record(c: Combo) -> NodeRecord:
    return NodeRecord(id=0, name="x", state=c.state, locked=c.locked, up=c.up, locked_by=c.locked_by)


def allowed(rule: Eligibility, rows: dict[str, Combo]) -> set[str]:
    return {name for name, c in rows.items() if rule.allows(record(c), ME)}


def selected_by_sql(store: NodeStore, rule: Eligibility, prefix: str) -> dict[str, set[str]]:
    """The names each SQL rendering of ``rule`` selects: the SQLAlchemy clause, and on PostgreSQL the
    psycopg text the one-statement paths paste in."""
    mine = nodes.c.name.like(f"{prefix}%")
    with store.engines.read.connect() as conn:
        found = {"clause": set(conn.execute(select(nodes.c.name).where(mine, rule.clause("by")), {"by": ME}).scalars())}
        if store.engines.dialect == "postgresql":
            sql = f"SELECT name FROM nodes WHERE name LIKE %(prefix)s AND {rule.sql('%(by)s::text')}"
            found["psycopg"] = {r.name for r in conn.exec_driver_sql(sql, {"prefix": f"{prefix}%", "by": ME})}
    return found


def assert_sql_agrees(store: NodeStore, rule: Eligibility) -> None:
    rows = grid(store, "g")
    want = allowed(rule, rows)
    assert want and len(want) < len(rows)  # a rule that takes nothing or everything would prove nothing
    for rendering, got in selected_by_sql(store, rule, "g").items():
        wrong = sorted(((rows[n], n in got) for n in (got ^ want)), key=repr)
        assert not wrong, f"{rule.action} ({rendering}) disagrees with Python on: {wrong}"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.action)
def test_python_rules_say_what_the_specification_says_for_every_state_locked_up_owner(rule):
    wrong = [c for c in COMBOS if rule.allows(record(c), ME) != bool(SPEC[rule.action](c))]
    assert not wrong


def test_sql_and_python_agree_on_lock_eligibility_for_every_state_locked_up_owner(store):
    assert_sql_agrees(store, LOCK)


def test_sql_and_python_agree_on_warm_claim_eligibility_for_every_state_locked_up_owner(store):
    assert_sql_agrees(store, WARM_CLAIM)


def test_sql_and_python_agree_on_unlock_eligibility_for_every_state_locked_up_owner(store):
    assert_sql_agrees(store, UNLOCK)


def test_sql_and_python_agree_on_destroy_eligibility_for_every_state_locked_up_owner(store):
    assert_sql_agrees(store, DESTROY)


class _Drifted(Eligibility):
    """LOCK with its SQL changed the subtle way: a node whose ``up`` was never set counts as up."""

    def sql(self, caller: str | None = None) -> str:
        return super().sql(caller).replace("up IS TRUE", "up IS NOT FALSE")


def test_a_sql_condition_that_drifted_from_the_python_rule_is_caught(store):
    drifted = _Drifted(**{k: getattr(LOCK, k) for k in ("action", "states", "locked", "needs_up", "held_by_caller")})
    with pytest.raises(AssertionError, match="disagrees with Python"):
        assert_sql_agrees(store, drifted)


# -- the real lock paths ---------------------------------------------------------------------------

def taken(call) -> bool:  # noqa: ANN001
    """Whether a path took the node: it answered with it (a refusal is a StoreError or nothing)."""
    try:
        return bool(call())
    except StoreError:
        return False


def disagreements(rows: dict[str, Combo], expect, took: dict[str, bool]) -> list[tuple[Combo, bool]]:  # noqa: ANN001
    return sorted(((rows[n], took[n]) for n in rows if took[n] != expect(rows[n])), key=repr)


def lock_paths(store: NodeStore, url: str) -> dict[str, Any]:
    """Each lock path as ``name -> took it?``; the provisioning paths also make the move to provisioning."""
    plain = careful(store)
    paths: dict[str, Any] = {
        "careful": lambda n: plain.lock_many(1, n, ME, "job"),
        "lock_many": lambda n: store.lock_many(1, n, ME, "job"),
        "provisioning": lambda n: plain.lock_many(1, n, ME, "job", os_type="ubuntu", provision=True),
        "lock_to_provision": lambda n: plain.lock_to_provision(
            n, {"locked": True, "locked_by": ME, "description": "job", "os_type": "ubuntu"})[1],
    }
    if store.engines.dialect == "postgresql":
        def fast(n: str) -> list[NodeRecord]:
            flags, params = pg_fast.lock_params(1, n, ME, "job")
            with store.engines.autocommit.connect() as conn:
                return pg_fast.lock_first_free(conn, flags, params, utcnow())
        paths["sql fast lane"] = fast
        paths["async lane"] = lambda n: run_lane(url, lambda lane: lane.lock_many(1, n, ME, "job"))
    return paths


def run_lane(url: str, call) -> Any:  # noqa: ANN001
    async def main() -> Any:
        lane = AsyncLockLane(url, max_size=1)
        await lane.open()
        try:
            return await call(lane)
        finally:
            await lane.close()
    return asyncio.run(main())


def test_every_lock_path_takes_exactly_what_the_lock_rule_allows(store, url):
    provisioning = {"provisioning", "lock_to_provision"}
    for i, (path, lock) in enumerate(lock_paths(store, url).items()):
        rows = grid(store, f"l{i}-")
        took = {n: taken(lambda: lock(n)) for n in rows}
        if path in provisioning:  # it writes state in SQL: the move table must allow idle -> provisioning too
            def expect(c: Combo) -> bool:
                return LOCK.allows(record(c)) and can_move(c.state, NodeState.PROVISIONING)
        else:
            def expect(c: Combo) -> bool:
                return LOCK.allows(record(c))
        assert sum(took.values()) == 3, path  # idle, free and up, whoever held it last
        assert not disagreements(rows, expect, took), path
        if path in provisioning:
            assert {store.get(n).state for n in rows if took[n]} == {"provisioning"}


def test_the_warm_pool_claims_exactly_what_the_warm_claim_rule_allows(store):
    rows = grid(store, "w")
    took = {n: taken(lambda: store.claim_warm(1, n, *OS, ME, "job")) for n in rows}
    assert sum(took.values()) == 3
    assert not disagreements(rows, lambda c: WARM_CLAIM.allows(record(c)), took)


def test_every_unlock_path_frees_exactly_what_the_unlock_rule_allows(store, url):
    plain = careful(store)
    paths: dict[str, Any] = {
        "careful": lambda n: plain.unlock_many([n], ME),
        "unlock_many": lambda n: store.unlock_many([n], ME),
        "begin_destroy": lambda n: store.begin_destroy([n], ME)[1],  # the nodes it unlocked at once
    }
    if store.engines.dialect == "postgresql":
        def fast(n: str) -> list[NodeRecord]:
            with store.engines.autocommit.connect() as conn:
                return pg_fast.unlock_all(conn, [n], ME, None, utcnow())
        paths["sql fast lane"] = fast
        paths["async lane"] = lambda n: run_lane(url, lambda lane: lane.unlock_many([n], ME))
    for i, (path, unlock) in enumerate(paths.items()):
        rows = grid(store, f"u{i}-")
        took = {n: taken(lambda: unlock(n)) for n in rows}
        assert sum(took.values()) == 3, path  # idle, held by me: up, down or never said
        assert not disagreements(rows, lambda c: UNLOCK.allows(record(c), ME), took), path
        assert not any(store.get(n).locked for n in rows if took[n])


def test_an_owners_unlock_starts_the_destroy_of_exactly_what_the_destroy_rule_allows(store):
    rows = grid(store, "d")
    took = {n: taken(lambda: store.begin_destroy([n], ME)[0]) for n in rows}
    assert sum(took.values()) == 6  # ready or destroy-failed, held by me: up, down or never said
    assert not disagreements(rows, lambda c: DESTROY.allows(record(c), ME), took)
    assert {store.get(n).state for n in rows if took[n]} == {"destroying"}


# -- the move table --------------------------------------------------------------------------------

PAIRS = list(itertools.product(NodeState, NodeState))


def test_the_move_table_is_the_specified_one():
    assert {(a.value, b.value) for a, targets in MOVES.items() for b in targets} == SPEC_MOVES
    assert set(MOVES) == set(NodeState)  # every state is in the table, even with nowhere to go


def test_sql_and_python_agree_on_every_allowed_and_forbidden_move(store):
    now = utcnow()
    with store.engines.write.begin() as conn:
        conn.execute(insert(nodes), [dict(name=f"m-{a.value}-{b.value}", machine_type="m", state=a.value,
                                          locked=True, locked_by=ME, up=True, is_vm=True, created_at=now,
                                          updated_at=now) for a, b in PAIRS])
        movable = {to: set(conn.execute(select(nodes.c.name).where(
            nodes.c.machine_type == "m", text(move_sql(to)))).scalars()) for to in NodeState}
    for a, b in PAIRS:
        name = f"m-{a.value}-{b.value}"
        spec = (a.value, b.value) in SPEC_MOVES
        assert can_move(a, b) is spec and can_move(a.value, b.value) is spec
        assert (a in sources(b)) is spec
        assert (name in movable[b]) is spec, f"SQL says {a} -> {b} is {'not ' if spec else ''}allowed"
        if spec:
            check_move(name, a, b)
            assert store.transition(name, a, b).state == b
        else:
            with pytest.raises(InvalidRequest, match=f"cannot go from {a} to {b}"):
                store.transition(name, a, b)
            assert store.get(name).state == a


def test_the_rules_only_take_nodes_the_move_table_can_move_on():
    # A lock to provision moves the node to provisioning; an owner's unlock of a cloud node, to destroying.
    assert LOCK.states <= sources(NodeState.PROVISIONING)
    assert DESTROY.states <= sources(NodeState.DESTROYING)
    assert WARM_CLAIM.states <= sources(NodeState.DESTROYING)  # a warm node that fails its check is destroyed


def test_states_keep_their_stored_values():
    assert [s.value for s in NodeState] == ["idle", "provisioning", "ready", "destroying", "destroy-failed"]
    assert f"{NodeState.DESTROY_FAILED}" == "destroy-failed" and NodeState.IDLE == "idle"
