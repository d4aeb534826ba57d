"""The PostgreSQL fast paths never repeat a statement that may have committed.

Faults are real: the client's socket is shut down (as a dropped network would) either after the
one-statement lock/unlock committed on the server, or while the server still waits inside it; or
PostgreSQL itself fails the statement (lock timeout). Whatever happens, the caller ends up holding
exactly the nodes the answer lists, and an unlock that happened is never answered with a 403.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from lablease.store import NodeStore, StoreError
from lablease.store import pg_fast
from lablease.store.errors import Unavailable
from lablease.store.pg_async import AsyncLockLane

pytestmark = pytest.mark.integration

Fault = Callable[[Any, str, Any], Awaitable[Any]]
LOCK_MARK = "WITH picked AS"  # the one-statement lock_many
UNLOCK_MARK = "WITH cur AS"  # the one-statement unlock_many


def cut(pgconn: Any) -> None:
    """Shut the client side of a connection down; the server learns of it only when it next reads."""
    sock = socket.socket(fileno=os.dup(pgconn.socket))
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()


async def lost_after_commit(conn: psycopg.AsyncConnection, sql: str, params: Any) -> Any:
    """The statement runs and commits (autocommit), then the connection drops before its answer is used."""
    await conn.execute(sql, params)
    cut(conn.pgconn)
    return await conn.execute("SELECT 1")  # raises the real error of a dropped connection


def lost_while_waiting(conninfo: str) -> Fault:
    """The statement is sent and waits for a table lock on the server when the connection drops."""
    async def fault(conn: psycopg.AsyncConnection, sql: str, params: Any) -> Any:
        pid = conn.info.backend_pid
        running = asyncio.ensure_future(conn.execute(sql, params))
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as admin:
            for _ in range(500):
                cur = await admin.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
                if (await cur.fetchone() or [None])[0] == "Lock":
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the statement never waited for the lock")
        cut(conn.pgconn)
        return await running
    return fault


async def times_out_waiting(conn: psycopg.AsyncConnection, sql: str, params: Any) -> Any:
    """PostgreSQL fails the statement itself (lock_timeout, SQLSTATE 55P03): it rolled back."""
    await conn.execute("SET lock_timeout = '100ms'")
    return await conn.execute(sql, params)


class FaultyPool:
    """Hands out the lane's pooled connections; the first statement containing ``mark`` meets ``fault``."""

    def __init__(self, lane: AsyncLockLane, mark: str, fault: Fault):
        self.mark, self.fault, self.fired = mark, fault, False
        self.real_connection = lane.pool.connection
        lane.pool.connection = self.connection  # type: ignore[method-assign]

    @asynccontextmanager
    async def connection(self, timeout: float | None = None):  # noqa: ANN201
        async with self.real_connection(timeout=timeout) as conn:
            yield _Conn(conn, self)


class _Conn:
    def __init__(self, conn: psycopg.AsyncConnection, plan: FaultyPool):
        self._conn, self._plan = conn, plan

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def execute(self, sql: str, params: Any = None) -> Any:
        if self._plan.mark in sql and not self._plan.fired:
            self._plan.fired = True
            return await self._plan.fault(self._conn, sql, params)
        return await self._conn.execute(sql, params)


@pytest.fixture
def store(postgres_url: str):
    s = NodeStore.open(postgres_url, lock_timeout_ms=300)
    yield s
    s.close()


@pytest.fixture
def conninfo(postgres_url: str) -> str:
    return pg_fast.psycopg_conninfo(postgres_url)


def make_nodes(store: NodeStore, mtype: str, n: int, **fields: Any) -> list[str]:
    names = [f"{mtype}{i}" for i in range(1, n + 1)]
    for name in names:
        store.create(name, {"machine_type": mtype, "up": True, **fields})
    return names


def held_by(store: NodeStore, who: str) -> list[str]:
    return sorted(n.name for n in store.list() if n.locked and n.locked_by == who)


def run_lane(url: str, body: Callable[[AsyncLockLane], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        lane = AsyncLockLane(url, max_size=2)
        await lane.open()
        try:
            return await body(lane)
        finally:
            await lane.close()
    return asyncio.run(main())


async def lock_many(lane: AsyncLockLane, store: NodeStore, count: int, mtype: str, who: str) -> list[str]:
    """As the lock API does: the lane, else the store in a thread."""
    got = await lane.lock_many(count, mtype, who, "d")
    if got is None:
        got = await asyncio.to_thread(store.lock_many, count, mtype, who, "d")
    return [n.name for n in got]


async def unlock_many(lane: AsyncLockLane, store: NodeStore, names: list[str], who: str) -> list[str]:
    got = await lane.unlock_many(names, who)
    if got is None:
        got = await asyncio.to_thread(store.unlock_many, names, who)
    return [n.name for n in got]


# -- the async lane ------------------------------------------------------------------------------

def test_a_lock_whose_answer_was_lost_is_looked_up_not_repeated(store, postgres_url):
    make_nodes(store, "t", 6)

    async def body(lane: AsyncLockLane) -> list[str]:
        FaultyPool(lane, LOCK_MARK, lost_after_commit)
        got = await lock_many(lane, store, 2, "t", "alice")
        assert (lane.looked_up, lane.settled, lane.handed_over) == (1, 1, 0)
        return got

    got = run_lane(postgres_url, body)
    assert got == held_by(store, "alice") == ["t1", "t2"]
    assert [e.action for e in store.events("t1")][-1] == "lock" and len(store.events("t1")) == 3  # create, update, lock


def test_an_unlock_whose_answer_was_lost_is_not_answered_403(store, postgres_url):
    names = make_nodes(store, "t", 3)
    store.lock_many(3, "t", "alice", "d")

    async def body(lane: AsyncLockLane) -> list[str]:
        FaultyPool(lane, UNLOCK_MARK, lost_after_commit)
        return await unlock_many(lane, store, ["t3", "t1", "t2"], "alice")

    assert run_lane(postgres_url, body) == ["t3", "t1", "t2"]
    assert held_by(store, "alice") == []
    assert all([e.action for e in store.events(n)].count("unlock") == 1 for n in names)


def test_a_lock_still_waiting_on_the_server_is_ended_before_it_is_handed_over(store, postgres_url, conninfo):
    """The connection drops while the server waits inside the statement: had it been handed over at
    once, the statement would commit later, beside the threaded path's own lock."""
    make_nodes(store, "t", 6)
    blocker = psycopg.connect(conninfo)
    blocker.execute("LOCK TABLE node_events IN SHARE MODE")  # the statement's INSERT waits for this

    async def body(lane: AsyncLockLane) -> None:
        FaultyPool(lane, LOCK_MARK, lost_while_waiting(conninfo))
        assert await lane.lock_many(2, "t", "alice", "d") is None  # provably nothing written
        assert lane.looked_up == 1

    try:
        run_lane(postgres_url, body)
    finally:
        blocker.rollback()
        blocker.close()
    assert held_by(store, "alice") == []  # the lost statement can no longer commit
    assert [n.name for n in store.lock_many(2, "t", "alice", "d")] == held_by(store, "alice") == ["t1", "t2"]


def test_a_statement_postgresql_failed_is_handed_over_without_a_lookup(store, postgres_url, conninfo):
    make_nodes(store, "t", 4)
    blocker = psycopg.connect(conninfo)
    blocker.execute("LOCK TABLE node_events IN SHARE MODE")

    async def body(lane: AsyncLockLane) -> None:
        FaultyPool(lane, LOCK_MARK, times_out_waiting)
        assert await lane.lock_many(2, "t", "alice", "d") is None
        assert (lane.looked_up, lane.handed_over) == (0, 1)

    try:
        run_lane(postgres_url, body)
    finally:
        blocker.rollback()
        blocker.close()
    assert held_by(store, "alice") == []


def test_a_lock_whose_hosts_query_failed_is_answered_with_its_hosts(store, postgres_url):
    """The lock committed; only the VM hosts' query after it failed: a hand-over would lock again."""
    make_nodes(store, "host", 1)
    make_nodes(store, "vm", 3, is_vm=True, vm_host="host1")

    async def body(lane: AsyncLockLane) -> list:
        FaultyPool(lane, pg_fast.HOSTS_SQL, lost_after_commit)
        return await lane.lock_many(2, "vm", "alice", "d")

    got = run_lane(postgres_url, body)
    assert [n.name for n in got] == held_by(store, "alice") == ["vm1", "vm2"]
    assert all(n.vm_host is not None and n.vm_host.name == "host1" for n in got)


def test_when_the_lookup_fails_the_answer_is_503_and_nothing_more_is_locked(store, postgres_url):
    make_nodes(store, "t", 6)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]

    async def body(lane: AsyncLockLane) -> None:
        FaultyPool(lane, LOCK_MARK, lost_after_commit)
        lane.url = postgres_url.replace(f":{store.engines.write.url.port}/", f":{dead_port}/")
        with pytest.raises(Unavailable, match="encountered a DB error; please retry"):
            await lane.lock_many(2, "t", "alice", "d")
        assert lane.handed_over == 0

    run_lane(postgres_url, body)
    assert held_by(store, "alice") == ["t1", "t2"]  # what the lost statement locked, and no more


def test_through_the_http_api_lock_and_unlock_survive_lost_answers(tmp_path, postgres_url):
    from lablease.server.app import create_app
    from lablease.lockapi.settings import LockSettings

    settings = LockSettings.from_mapping({"lablease": {"database_url": postgres_url}}, data_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        for i in range(1, 5):
            assert client.post("/nodes/", json={"name": f"n{i}", "machine_type": "t", "up": True}).status_code == 200
        lane = client.app.state.lane
        FaultyPool(lane, LOCK_MARK, lost_after_commit)
        r = client.post("/nodes/lock_many/", json={"count": 2, "machine_type": "t", "locked_by": "a",
                                                   "description": "d"})
        assert r.status_code == 200 and [n["name"] for n in r.json()] == ["n1", "n2"]
        locked = client.get("/nodes/", params={"locked": "true"}).json()
        assert sorted(n["name"] for n in locked) == ["n1", "n2"]
        FaultyPool(lane, UNLOCK_MARK, lost_after_commit)
        r = client.post("/nodes/unlock_many/", json={"names": ["n2", "n1"], "locked_by": "a"})
        assert r.status_code == 200 and [n["name"] for n in r.json()] == ["n2", "n1"]
        assert lane.looked_up == 2 and lane.handed_over == 0


def test_only_errors_postgresql_reports_for_the_statement_count_as_rolled_back(conninfo):
    with psycopg.connect(conninfo, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as failed:
            conn.execute("SELECT 1 / 0")
        assert pg_fast.statement_failed(failed.value)
        cut(conn.pgconn)
        with pytest.raises(psycopg.OperationalError) as lost:
            conn.execute("SELECT 1")
        assert not pg_fast.statement_failed(lost.value)
    with psycopg.connect(conninfo, autocommit=True) as conn, psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", [conn.info.backend_pid])
        with pytest.raises(psycopg.OperationalError) as ended:
            conn.execute("SELECT 1")  # FATAL 57P01 (or the closed socket): the session is gone
        assert not pg_fast.statement_failed(ended.value)
    assert not pg_fast.statement_failed(psycopg.OperationalError("consuming input failed"))


# -- NodeStore's own fast paths (threads, SQLAlchemy) -----------------------------------------------

def drop_after(store: NodeStore, mark: str) -> None:
    """The first statement containing ``mark`` commits, then the connection drops before its answer."""
    fired = []

    @event.listens_for(store.engines.write, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if mark in statement and not fired:
            fired.append(statement)
            cut(cursor.connection.pgconn)
            cursor.connection.execute("SELECT 1")  # raises the real error of a dropped connection


def test_store_lock_many_whose_answer_was_lost_is_looked_up_not_retried(store):
    make_nodes(store, "t", 6)
    drop_after(store, LOCK_MARK)
    got = store.lock_many(2, "t", "alice", "d")
    assert [n.name for n in got] == held_by(store, "alice") == ["t1", "t2"]


def test_store_unlock_many_whose_answer_was_lost_is_not_a_false_error(store):
    make_nodes(store, "t", 2)
    store.lock_many(2, "t", "alice", "d")
    drop_after(store, UNLOCK_MARK)
    try:
        got = store.unlock_many(["t2", "t1"], "alice")
    except StoreError as exc:
        pytest.fail(f"unlock_many answered {exc.status} {exc.message} for an unlock that happened")
    assert [n.name for n in got] == ["t2", "t1"] and held_by(store, "alice") == []


def test_store_lock_many_is_not_retried_when_only_its_hosts_query_times_out(store, conninfo):
    """lock_timeout (55P03) is retried by run_with_retry; after the lock committed it must not be."""
    make_nodes(store, "host", 1)
    make_nodes(store, "vm", 4, is_vm=True, vm_host="host1")
    blocker = psycopg.connect(conninfo)
    state = {"locked": False}

    @event.listens_for(store.engines.write, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if LOCK_MARK in statement and not state["locked"]:
            state["locked"] = True  # the lock committed; now nobody may read nodes for a while
            blocker.execute("LOCK TABLE nodes IN ACCESS EXCLUSIVE MODE")

    @event.listens_for(store.engines.write, "handle_error")
    def _error(ctx) -> None:  # noqa: ANN001
        blocker.rollback()  # the hosts query timed out: free the table, so a retry could lock again

    try:
        got = store.lock_many(2, "vm", "alice", "d")
    finally:
        blocker.rollback()
        blocker.close()
    assert state["locked"]
    assert [n.name for n in got] == held_by(store, "alice") == ["vm1", "vm2"]
    assert all(n.vm_host is not None and n.vm_host.name == "host1" for n in got)
