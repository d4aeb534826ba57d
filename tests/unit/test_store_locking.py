"""NodeStore locking: lock_many and unlock_many semantics, the PostgreSQL slow path, retries."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from lablease.store import Forbidden, InvalidRequest, NodeStore, Unavailable
from lablease.store.retry import is_transient, run_with_retry
from lablease.testing.waiting import wait_until


def _store(request, tmp_path) -> NodeStore:
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'store.db'}"
    return NodeStore.open(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request, tmp_path):
    s = _store(request, tmp_path)
    for i in range(1, 6):
        s.create(f"n{i}", {"machine_type": "t", "up": True})
    yield s
    s.close()


def test_lock_many_takes_the_first_free_nodes_by_name_and_writes_lock_events(store):
    got = store.lock_many(2, "t", "alice", "job-1")
    assert [n.name for n in got] == ["n1", "n2"]
    assert all(n.locked and n.locked_by == "alice" and n.description == "job-1" for n in got)
    assert store.events("n1")[-1].action == "lock"
    assert [n.name for n in store.lock_many(2, "t", "bob", None)] == ["n3", "n4"]


def test_lock_many_is_all_or_nothing_when_too_few_are_free(store):
    store.lock_many(4, "t", "alice", None)
    with pytest.raises(Unavailable, match="only 1 nodes available"):
        store.lock_many(2, "t", "bob", None)
    assert not store.get("n5").locked


def test_lock_many_ignores_nodes_that_are_down_or_of_unknown_state(store):
    store.update("n1", up=False)
    store.update("n2", up=None)
    assert [n.name for n in store.lock_many(3, "t", "a", None)] == ["n3", "n4", "n5"]


def test_lock_many_accepts_either_of_two_machine_types(store):
    store.create("m1", {"machine_type": "m", "up": True})
    assert sorted(n.name for n in store.lock_many(6, "t|m", "a", None)) == ["m1", "n1", "n2", "n3", "n4", "n5"]


def test_lock_many_refuses_bad_counts(store):
    for count in (0, -1, True, "2"):
        with pytest.raises(InvalidRequest):
            store.lock_many(count, "t", "a", None)  # type: ignore[arg-type]


def test_unlock_many_is_atomic(store):
    mine = [n.name for n in store.lock_many(2, "t", "alice", None)]
    store.lock_many(1, "t", "bob", None)
    with pytest.raises(Forbidden, match="n3"):
        store.unlock_many(mine + ["n3"], "alice")
    assert all(store.get(n).locked for n in mine)
    with pytest.raises(InvalidRequest, match="Could not find all nodes!"):
        store.unlock_many(mine + ["ghost"], "alice")
    assert [n.locked for n in store.unlock_many(mine, "alice")] == [False, False]


@pytest.mark.integration
def test_on_postgresql_a_node_held_by_a_rolled_back_transaction_is_still_given_out(request, tmp_path):
    """SKIP LOCKED skips rows another transaction holds; when that leaves too few, the store
    waits for those rows instead of answering 503 while they are in fact free."""
    s = NodeStore.open(request.getfixturevalue("postgres_url"))
    s.create("only", {"machine_type": "t", "up": True})
    result: dict = {}
    with s.engines.write.connect() as conn:
        tx = conn.begin()
        conn.execute(text("SELECT id FROM nodes WHERE name = 'only' FOR UPDATE"))

        def lock() -> None:
            try:
                result["nodes"] = s.lock_many(1, "t", "alice", None)
            except Exception as exc:  # noqa: BLE001 - reported below
                result["error"] = exc

        def blocked_on_the_row() -> bool:
            assert worker.is_alive(), f"lock_many answered while the row was held: {result}"
            with s.engines.autocommit.connect() as watch:  # a fresh snapshot of pg_stat_activity each time
                return watch.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                          "AND datname = current_database()")).scalar() > 0

        worker = threading.Thread(target=lock)
        worker.start()
        wait_until(blocked_on_the_row, what="lock_many to wait for the held row's lock", timeout=10)
        assert worker.is_alive() and not result, result
        tx.rollback()
        worker.join(10)
    assert [n.name for n in result.get("nodes", [])] == ["only"], result
    s.close()


def test_transient_database_errors_are_retried_then_become_unavailable():
    calls = []

    class Busy(Exception):
        pass

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("BEGIN IMMEDIATE", {}, Busy("database is locked"))
        return "done"

    assert run_with_retry(flaky) == "done" and len(calls) == 3

    def always():
        raise OperationalError("BEGIN IMMEDIATE", {}, Busy("database is locked"))

    with pytest.raises(Unavailable, match="please retry"):
        run_with_retry(always)
    assert not is_transient(OperationalError("x", {}, Busy("no such table: nodes")))


def test_an_unreachable_database_is_unavailable_503_not_an_internal_error(caplog):
    from lablease.netutil import free_port

    s = NodeStore.open(f"postgresql+psycopg://nobody:pw-not-logged@127.0.0.1:{free_port()}/none?connect_timeout=5",
                       run_migrations=False)
    try:
        with pytest.raises(Unavailable, match="please retry"):
            s.get("n1")
        with pytest.raises(Unavailable, match="please retry"):
            s.lock_many(1, "t", "alice", None)
    finally:
        s.close()
    assert "store database failure" in caplog.text and "pw-not-logged" not in caplog.text


@pytest.mark.integration
def test_on_postgresql_a_row_held_by_a_stuck_session_is_waited_for_a_bounded_time_then_503(request):
    """An admin's forgotten open transaction must not hold request threads for ever."""
    s = NodeStore.open(request.getfixturevalue("postgres_url"), lock_timeout_ms=100)
    s.create("stuck", {"machine_type": "t", "up": True})
    result: dict = {}
    with s.engines.write.connect() as conn:
        tx = conn.begin()
        conn.execute(text("SELECT id FROM nodes WHERE name = 'stuck' FOR UPDATE"))

        def update() -> None:
            try:
                result["node"] = s.update("stuck", description="x")
            except Exception as exc:  # noqa: BLE001 - reported below
                result["error"] = exc

        worker = threading.Thread(target=update)
        worker.start()
        worker.join(15)
        hung = worker.is_alive()
        tx.rollback()
        worker.join(15)
    s.close()
    assert not hung, "the store waited for the row lock without a bound"
    assert isinstance(result.get("error"), Unavailable), result
