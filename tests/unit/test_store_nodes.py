"""NodeStore inventory, update rules, events and provisioning fields, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from lablease.store import Forbidden, InvalidRequest, NodeFilter, NodeStore, NotFound


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request, tmp_path):
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'store.db'}"
    s = NodeStore.open(url)
    yield s
    s.close()


def test_migrations_run_twice_without_harm(store):
    from lablease.store.migrate import migrate
    migrate(store.engines)
    assert store.list() == []


def test_created_nodes_start_unlocked_with_up_unknown_and_state_idle(store):
    node = store.create("n1", {"machine_type": "t"}, who="admin")
    assert (node.locked, node.up, node.is_vm, node.state, node.addresses) == (False, None, False, "idle", [])
    assert node.created_at and node.updated_at
    assert [e.action for e in store.events("n1")] == ["create", "update"]


def test_duplicate_names_are_refused_and_nothing_changes(store):
    store.create("n1", {"description": "first"})
    with pytest.raises(InvalidRequest, match="Node with name n1 already exists"):
        store.create("n1", {"description": "second"})
    assert store.get("n1").description == "first"


def test_a_create_whose_update_is_refused_leaves_no_node(store):
    with pytest.raises(InvalidRequest, match="locked_by"):
        store.create("n1", {"locked": True})
    with pytest.raises(NotFound):
        store.get("n1")
    with pytest.raises(NotFound):  # its create event was rolled back with it
        store.events("n1")


def test_a_name_with_a_slash_is_refused_because_the_api_could_never_address_it(store):
    with pytest.raises(InvalidRequest, match="must not contain '/'"):
        store.create("rack1/node1")
    assert store.list() == []


def test_python_update_refuses_unknown_fields(store):
    store.create("n1")
    with pytest.raises(InvalidRequest, match="colour"):
        store.update("n1", colour="red")


def test_update_sets_vm_host_by_name_and_refuses_unknown_hosts(store):
    store.create("host")
    store.create("guest")
    guest = store.update("guest", vm_host="host", is_vm=True)
    assert guest.vm_host is not None and guest.vm_host.name == "host"
    with pytest.raises(InvalidRequest, match="vm_host"):
        store.update("guest", vm_host="nope")
    store.delete("host")
    assert store.get("guest").vm_host is None


def test_the_holder_cannot_change_without_a_lock_change(store):
    store.create("n1")
    store.lock("n1", {"locked": True, "locked_by": "alice", "description": "d"})
    with pytest.raises(Forbidden):
        store.update("n1", locked_by="bob")
    assert store.get("n1").locked_by == "alice"


def test_unlock_clears_locked_by_and_locked_since(store):
    store.create("n1")
    locked = store.lock("n1", {"locked": True, "locked_by": "alice", "description": "d"})
    assert locked.locked_since is not None
    node = store.lock("n1", {"locked": False, "locked_by": "alice"})
    assert (node.locked, node.locked_by, node.locked_since) == (False, None, None)


def test_list_filters_and_orders_by_name(store):
    for name, mt in (("b2", "b"), ("a1", "a"), ("b1", "b")):
        store.create(name, {"machine_type": mt, "up": True})
    assert [n.name for n in store.list()] == ["a1", "b1", "b2"]
    assert [n.name for n in store.list(NodeFilter(machine_type="a|b", count=2))] == ["a1", "b1"]
    assert [n.name for n in store.list(NodeFilter(machine_type="b", locked=False))] == ["b1", "b2"]
    assert store.machine_types() == ["a", "b"]


def test_events_outlive_a_deleted_node(store):
    store.create("n1")
    store.delete("n1", who="admin")
    events = store.events("n1")
    assert events[-1].action == "delete" and events[-1].who == "admin" and events[-1].new is None
    with pytest.raises(NotFound):
        store.events("never-existed")


def test_a_failed_migration_leaves_no_database_connection_open(tmp_path):
    import os
    import sqlite3

    db = tmp_path / "clash.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE nodes (x INTEGER)")  # not ours: the first migration cannot create it
    conn.commit()
    conn.close()
    with pytest.raises(Exception, match="nodes"):
        NodeStore.open(f"sqlite:///{db}")
    open_files = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            open_files.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    assert str(db) not in open_files
