"""The node row as a state machine: compare-and-set moves, lock eligibility, begin_destroy, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from lablease.store import Forbidden, InvalidRequest, NodeStore, Unavailable
from lablease.store.states import Conflict


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path / 's.db'}"
    s = NodeStore.open(url)
    for i in range(1, 4):
        s.create(f"c{i}", {"machine_type": "cloud", "up": True, "is_vm": True})
    yield s
    s.close()


def test_lock_many_to_provision_moves_nodes_to_provisioning_with_the_os_asked_for(store):
    got = store.lock_many(2, "cloud", "alice", "job", os_type="ubuntu", os_version="22.04", provision=True,
                          lease_owner="proc-1", lease_seconds=60)
    assert [n.name for n in got] == ["c1", "c2"]
    for n in got:
        assert (n.state, n.locked, n.locked_by, n.os_type, n.os_version) == ("provisioning", True, "alice", "ubuntu",
                                                                             "22.04")
        assert n.lease_owner == "proc-1"
    *_, last = store.events("c1")  # one row for the lock and its move: both are one write
    assert (last.action, last.old["state"], last.old["locked"]) == ("state", "idle", False)
    assert {k: last.new[k] for k in ("state", "locked", "locked_by", "description")} == {
        "state": "provisioning", "locked": True, "locked_by": "alice", "description": "job"}


def test_os_fields_of_a_cloud_lock_do_not_filter_the_records(store):
    store.update("c1", os_type="centos")
    got = store.lock_many(1, "cloud", "alice", None, os_type="ubuntu", provision=True)
    assert got[0].name == "c1" and got[0].os_type == "ubuntu"


@pytest.mark.parametrize("state", ["provisioning", "ready", "destroying", "destroy-failed"])
def test_a_node_not_idle_is_never_handed_out_even_if_unlocked(store, state):
    # Forced through the engine: whatever left such a row unlocked, lock_many must skip it.
    from sqlalchemy import update
    from lablease.store.models import nodes
    with store.engines.write.begin() as conn:
        conn.execute(update(nodes).where(nodes.c.name != "c3").values(state=state))
    assert [n.name for n in store.lock_many(1, "cloud", "bob", None)] == ["c3"]
    with pytest.raises(Unavailable, match="only 0 nodes available"):
        store.lock_many(1, "cloud", "bob", None, provision=True)


def test_transition_is_compare_and_set_and_only_allows_listed_moves(store):
    store.lock_many(1, "cloud", "alice", None, provision=True)
    node = store.transition("c1", "provisioning", "ready", who="lab", ssh_pub_key="ssh-ed25519 AAA",
                            addresses=["127.0.0.5"])
    assert (node.state, node.ssh_pub_key, store.get("c1").addresses) == ("ready", "ssh-ed25519 AAA", ["127.0.0.5"])
    with pytest.raises(Conflict, match="c1 is ready, not provisioning"):
        store.transition("c1", "provisioning", "ready")
    with pytest.raises(InvalidRequest, match="cannot go from ready to idle"):
        store.transition("c1", "ready", "idle")
    event = store.events("c1")[-1]
    assert event.action == "state" and event.who == "lab"
    assert event.old["state"] == "provisioning" and event.new["state"] == "ready" and "seconds" in event.new


def test_plain_unlock_of_a_cloud_node_in_use_is_refused(store):
    store.lock_many(1, "cloud", "alice", None, provision=True)
    store.transition("c1", "provisioning", "ready")
    with pytest.raises(Forbidden, match="c1"):
        store.lock("c1", {"locked": False, "locked_by": "alice"})
    with pytest.raises(Forbidden, match="c1"):
        store.unlock_many(["c1"], "alice")
    assert store.get("c1").locked


def test_begin_destroy_checks_every_owner_first_then_moves_all_to_destroying(store):
    store.lock_many(2, "cloud", "alice", None, provision=True)
    store.transition("c1", "provisioning", "ready")
    with pytest.raises(Forbidden, match="still being provisioned"):
        store.begin_destroy(["c1", "c2"], "alice")
    assert store.get("c1").state == "ready"  # nothing moved: all or none
    store.transition("c2", "provisioning", "ready")
    with pytest.raises(Forbidden, match="locked_by values must match"):
        store.begin_destroy(["c1", "c2"], "mallory")
    destroy, unlocked = store.begin_destroy(["c1", "c2"], "alice")
    assert [n.state for n in destroy] == ["destroying", "destroying"] and unlocked == []
    assert store.get("c1").locked  # still locked until everything is gone
    freed = store.free("c1", who="lab")
    assert (freed.state, freed.locked, freed.locked_by, freed.ssh_pub_key) == ("idle", False, None, None)


def test_a_failed_destroy_keeps_the_node_locked_and_the_owner_may_retry(store):
    store.lock_many(1, "cloud", "alice", None, provision=True)
    store.transition("c1", "provisioning", "ready")
    store.begin_destroy(["c1"], "alice")
    node = store.transition("c1", "destroying", "destroy-failed", last_error="server stuck")
    assert (node.locked, node.last_error) == (True, "server stuck")
    assert [n.name for n in store.lock_many(2, "cloud", "bob", None, provision=True)] == ["c2", "c3"]
    destroy, _ = store.begin_destroy(["c1"], "alice")
    assert destroy[0].state == "destroying"


def test_note_attempt_persists_what_the_attempt_made(store):
    store.lock_many(1, "cloud", "alice", None, provision=True)
    store.note_attempt("c1", attempt_id="1-abc", cloud_server_id="srv-1")
    store.note_attempt("c1", volume_ids=["v1"], dns_written=True)
    node = store.get("c1")
    assert (node.attempt_id, node.cloud_server_id, node.volume_ids, node.dns_written) == ("1-abc", "srv-1", ["v1"], True)
    with pytest.raises(InvalidRequest, match="unknown node field"):
        store.note_attempt("c1", flavour="x")


def test_node_names_are_case_insensitive_in_every_store_call(store):
    store.create("Node7.LAB.Example", {"machine_type": "cloud", "up": True})
    assert store.get("node7.lab.example").name == "node7.lab.example"
    assert store.get("NODE7.lab.example").name == "node7.lab.example"
    with pytest.raises(InvalidRequest, match="already exists"):
        store.create("node7.lab.example")
    store.lock("NODE7.lab.example", {"locked": True, "locked_by": "alice", "description": "d"})
    assert [n.name for n in store.unlock_many(["Node7.Lab.Example"], "alice")] == ["node7.lab.example"]
    assert store.events("NODE7.LAB.EXAMPLE")[0].action == "create"


def test_the_migration_lowers_stored_names_but_never_merges_two_records(tmp_path):
    from sqlalchemy import insert
    from lablease.store.migrate import migrate
    from lablease.store.models import nodes
    from lablease.store.records import utcnow
    url = f"sqlite:///{tmp_path / 'old.db'}"
    s = NodeStore.open(url)
    now = utcnow()
    with s.engines.write.begin() as conn:  # rows as an older lablease stored them
        for name in ("Old1.Lab.Example", "Twin.X", "twin.x"):
            conn.execute(insert(nodes).values(name=name, is_vm=False, locked=False, state="idle", created_at=now,
                                              updated_at=now))
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0003'")
    migrate(s.engines)
    assert sorted(n.name for n in s.list()) == ["Twin.X", "old1.lab.example", "twin.x"]
    s.close()


def test_taking_a_warm_node_to_destroy_it_loses_to_a_lock_that_claimed_it_first(store):
    from lablease.store.pool import POOL_OWNER

    for name in ("c1", "c2"):
        store.lock_many(1, "cloud", POOL_OWNER, "warm pool", os_type="ubuntu", os_version="22.04", provision=True)
        store.transition(name, "provisioning", "ready", ssh_pub_key="ssh-ed25519 AAA", addresses=["127.0.0.5"])
        store.to_pool(name)
    [claimed] = store.claim_warm(1, "cloud", "ubuntu", "22.04", "alice", "job")
    with pytest.raises(Conflict, match="no longer warm"):
        store.take_warm(claimed.name, "surplus")
    taken = store.take_warm("c2", "surplus", lease_owner="proc-1", lease_seconds=60)
    assert (taken.state, taken.locked, taken.locked_by, taken.last_error) == ("destroying", True, POOL_OWNER, "surplus")
    assert taken.lease_owner == "proc-1" and store.get(claimed.name).locked_by == "alice"
    store.free("c2")
    assert (store.get("c2").state, store.get("c2").locked) == ("idle", False)


def test_a_warm_claim_the_warm_and_idle_records_cannot_fill_is_refused_before_it_claims_anything(store):
    from lablease.store import Shortage
    from lablease.store.pool import POOL_OWNER

    for name in ("c1", "c2"):  # c1, c2 warm; c3 idle
        store.lock_many(1, "cloud", POOL_OWNER, "warm pool", os_type="ubuntu", os_version="22.04", provision=True)
        store.transition(name, "provisioning", "ready", ssh_pub_key="ssh-ed25519 AAA", addresses=["127.0.0.5"])
        store.to_pool(name)
    before = {n: (store.get(n), store.events(n)) for n in ("c1", "c2", "c3")}
    with pytest.raises(Shortage) as refused:
        store.claim_warm(4, "cloud", "ubuntu", "22.04", "alice", "job")
    assert (refused.value.wanted, refused.value.available, refused.value.message) == (4, 3, "only 3 nodes available")
    assert {n: (store.get(n), store.events(n)) for n in ("c1", "c2", "c3")} == before
    assert [n.name for n in store.claim_warm(3, "cloud", "ubuntu", "22.04", "alice", "job")] == ["c1", "c2"]
