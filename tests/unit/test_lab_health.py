"""A provider's health and the warm pool's refill backoff (lab/health.py), and how the metrics show them."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from lablease.lab.health import Health, ProviderHealth, RefillBackoff, health_of
from lablease.lab.metrics import LabMetrics
from lablease.provision.errorkinds import ErrorKind
from lablease.store.nodes import NodeStore


def test_each_wait_lies_between_half_and_all_of_its_step_which_doubles_up_to_the_cap():
    backoff = RefillBackoff(base=2, cap=20)
    assert [backoff.step(n) for n in range(0, 6)] == [0, 2, 4, 8, 16, 20]
    for failures in range(1, 8):
        waits = [backoff.wait(failures) for _ in range(200)]
        step = backoff.step(failures)
        assert all(step / 2 <= w <= step for w in waits), (failures, min(waits), max(waits))
        assert max(waits) - min(waits) > step / 10  # jittered, not one fixed value


def test_a_provider_names_its_health_by_the_kind_of_its_last_failures():
    assert [health_of(k) for k in (ErrorKind.QUOTA, ErrorKind.AUTH, ErrorKind.TRANSIENT, ErrorKind.TIMEOUT,
                                   ErrorKind.CONFIG, None)] == [Health.QUOTA, Health.AUTH, Health.OUTAGE,
                                                                Health.OUTAGE, Health.OTHER, Health.OTHER]


def test_failures_push_the_next_refill_back_and_a_success_resets_health_and_backoff():
    seen = []
    health = ProviderHealth("dev", RefillBackoff(base=30, cap=300), on_change=seen.append)
    assert health.may_refill() and seen[-1].state is Health.OK and seen[-1].next_refill is None
    wait = health.failed(ErrorKind.QUOTA, "quota exceeded: 403", round_of=0)
    assert 15 <= wait <= 30 and not health.may_refill()
    snap = health.snapshot()
    assert (snap.state, snap.failures, snap.message) == (Health.QUOTA, 1, "quota exceeded: 403")
    assert snap.next_refill is not None and seen[-1] == snap
    since = snap.since
    time.sleep(0.01)
    health.failed(ErrorKind.QUOTA, "quota exceeded again", round_of=1)
    assert health.snapshot().since == since and health.failures == 2  # still quota, since the first failure
    health.succeeded()
    snap = health.snapshot()
    assert (snap.state, snap.failures, snap.message, snap.next_refill) == (Health.OK, 0, None, None)
    assert health.may_refill() and seen[-1] == snap


def test_refills_started_together_count_as_one_step_of_the_backoff():
    health = ProviderHealth("dev", RefillBackoff(base=2, cap=300))
    for _ in range(3):  # one top-up of three nodes, all refused
        health.failed(ErrorKind.AUTH, "refused", round_of=0)
    assert health.failures == 1 and health.snapshot().state is Health.AUTH


def test_the_metrics_show_one_health_state_per_provider_at_one(tmp_path):
    store = NodeStore.open(f"sqlite:///{tmp_path / 's.db'}")
    try:
        registry = CollectorRegistry()
        metrics = LabMetrics(registry, store)
        health = ProviderHealth("dev", RefillBackoff(), on_change=metrics.on_health)
        health.failed(ErrorKind.TRANSIENT, "connection refused", round_of=0)
        value = registry.get_sample_value
        assert value("lablease_provider_health", {"machine_type": "dev", "state": "outage"}) == 1
        assert value("lablease_provider_health", {"machine_type": "dev", "state": "ok"}) == 0
        assert value("lablease_warm_pool_refill_failures", {"machine_type": "dev"}) == 1
        health.succeeded()
        assert value("lablease_provider_health", {"machine_type": "dev", "state": "ok"}) == 1
        assert value("lablease_provider_health", {"machine_type": "dev", "state": "outage"}) == 0
    finally:
        store.close()
