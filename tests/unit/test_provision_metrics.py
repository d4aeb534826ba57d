"""Progress events become Prometheus counters and per-stage durations."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from lablease.provision.metrics import ProvisionMetrics
from lablease.provision.models import ProgressEvent


def test_stage_events_are_counted_and_each_stage_is_timed_until_the_next_event():
    registry = CollectorRegistry()
    now = [0.0]
    metrics = ProvisionMetrics(registry, "ovh", clock=lambda: now[0])
    for t, stage, status in [(0, "create", "start"), (1, "boot", "start"), (31, "ssh", "start"), (36, "ready", "done")]:
        now[0] = t
        metrics(ProgressEvent("node1", stage, status))
    value = registry.get_sample_value
    assert value("lablease_provision_events_total", {"provider": "ovh", "stage": "boot", "status": "start"}) == 1
    assert value("lablease_provision_stage_seconds_sum", {"provider": "ovh", "stage": "boot"}) == 30
    assert value("lablease_provision_stage_seconds_sum", {"provider": "ovh", "stage": "ssh"}) == 5
    assert value("lablease_provision_stage_seconds_count", {"provider": "ovh", "stage": "ready"}) is None
