"""Events retention: old node_events go, recent ones stay, node records are never touched; the setting
is checked like every key of the lablease: section. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from lablease.config import ConfigError
from lablease.lockapi.settings import LockSettings
from lablease.server.retention import EventPruner
from lablease.store import NodeStore
from lablease.store.models import node_events
from lablease.store.records import utcnow


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else \
        f"sqlite:///{tmp_path / 'store.db'}"
    s = NodeStore.open(url)
    yield s
    s.close()


def _age(store: NodeStore, name: str, days: float) -> None:
    """Make every event of ``name`` look ``days`` old."""
    with store.engines.write.begin() as conn:
        conn.execute(update(node_events).where(node_events.c.node == name)
                     .values(at=utcnow() - timedelta(days=days)))


def test_pruning_deletes_events_older_than_the_retention_in_batches_and_keeps_recent_ones_and_the_nodes(store):
    for i in range(3):
        store.create(f"old{i}", {"machine_type": "t", "up": True})
        store.update(f"old{i}", description="x")
        _age(store, f"old{i}", 100)
    store.create("new", {"machine_type": "t", "up": True})
    store.lock("old0", {"locked": True, "locked_by": "alice"})  # old0's lock event is recent
    nodes_before = store.list()
    gone = store.prune_events(utcnow() - timedelta(days=90), batch=2)  # 9 old rows: 5 batches
    assert gone == 9
    assert [e.action for e in store.events("old0")] == ["lock"]
    assert store.events("old1") == [] and store.events("old2") == []
    assert [e.action for e in store.events("new")] == ["create", "update"]
    assert store.list() == nodes_before


def test_the_pruner_keeps_everything_when_the_retention_is_zero(store):
    store.create("n1")
    _age(store, "n1", 10_000)
    assert EventPruner(store, 0).run_once() == 0
    assert [e.action for e in store.events("n1")] == ["create"]
    assert EventPruner(store, 90).run_once() == 1
    assert store.events("n1") == []


def test_events_retention_days_defaults_to_90_and_a_bad_value_is_an_error_naming_the_key():
    assert LockSettings.from_mapping({}).events_retention_days == 90
    assert LockSettings.from_mapping({"lablease": {"events_retention_days": 0}}).events_retention_days == 0
    with pytest.raises(ConfigError, match="lablease.events_retention_days"):
        LockSettings.from_mapping({"lablease": {"events_retention_days": -1}}, file="t.yaml")


def test_a_pass_asked_to_stop_ends_after_the_batch_it_is_in(store):
    store.create("n1", {"machine_type": "t"})
    store.update("n1", description="x")
    _age(store, "n1", 100)  # 3 rows
    assert store.prune_events(utcnow(), batch=1, stopping=lambda: True) == 1
    assert len(store.events("n1")) == 2
