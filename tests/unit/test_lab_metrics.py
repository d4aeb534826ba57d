"""The lab's Prometheus metrics: nodes from a real store, outcomes from bus events, cloud calls from CloudCaller."""

from __future__ import annotations

import pytest
from libcloud.common.exceptions import BaseHTTPError, RateLimitReachedError
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from lablease.lab.bus import LabEvent, ProgressBus
from lablease.lab.metrics import LabMetrics, call_name
from lablease.provision.adapters.openstack import classify_error
from lablease.provision.calls import CloudCaller
from lablease.provision.errors import ProvisionError, Stage
from lablease.provision.ratelimit import RateLimiter
from lablease.store.nodes import NodeStore


def _raise(exc: BaseException):
    """A callable that raises ``exc``: a store or cloud that fails."""
    def fail(*args, **kwargs):
        raise exc
    return fail


@pytest.fixture
def store(tmp_path):
    store = NodeStore.open(f"sqlite:///{tmp_path / 's.db'}")
    yield store
    store.close()


@pytest.fixture
def registry():
    return CollectorRegistry()


@pytest.fixture
def metrics(registry, store):
    return LabMetrics(registry, store)


def _event(stage: str, status: str, node: str = "c1", **kw) -> LabEvent:
    return LabEvent(node=node, machine_type=kw.pop("machine_type", "cloud"), stage=stage, status=status, **kw)


def test_nodes_are_counted_by_machine_type_state_and_lock_on_each_scrape(store, registry, metrics):
    for name in ("c1", "c2", "c3"):
        store.create(name, {"machine_type": "cloud", "up": True})
    store.create("s1", {"machine_type": "smithi", "up": False})
    value = registry.get_sample_value
    assert value("lablease_nodes", {"machine_type": "cloud", "state": "idle", "locked": "false"}) == 3

    store.lock_many(2, "cloud", "alice", "job", provision=True)
    store.transition("c1", "provisioning", "ready")
    assert value("lablease_nodes", {"machine_type": "cloud", "state": "idle", "locked": "false"}) == 1
    assert value("lablease_nodes", {"machine_type": "cloud", "state": "provisioning", "locked": "true"}) == 1
    assert value("lablease_nodes", {"machine_type": "cloud", "state": "ready", "locked": "true"}) == 1
    assert value("lablease_nodes", {"machine_type": "cloud", "state": "destroy-failed", "locked": "true"}) == 0
    assert value("lablease_nodes", {"machine_type": "smithi", "state": "idle", "locked": "false"}) == 1


def test_teuthology_nodes_keeps_teuthology_exporters_labels_and_values(store, registry, metrics):
    store.create("c1", {"machine_type": "cloud", "up": True})
    store.create("c2", {"machine_type": "cloud", "up": True})
    store.create("c3", {"machine_type": "cloud", "up": False})
    store.lock_many(1, "cloud", "alice", "job")
    value = registry.get_sample_value
    assert value("teuthology_nodes", {"machine_type": "cloud", "locked": "True", "up": "True"}) == 1
    assert value("teuthology_nodes", {"machine_type": "cloud", "locked": "False", "up": "True"}) == 1
    assert value("teuthology_nodes", {"machine_type": "cloud", "locked": "False", "up": "False"}) == 1
    assert value("teuthology_nodes", {"machine_type": "cloud", "locked": "True", "up": "False"}) == 0


def test_an_unreadable_store_leaves_the_node_gauges_out_but_the_rest_is_still_served(store, registry, metrics):
    metrics.on_event(_event("ready", "done", elapsed=30.0))
    store.list = _raise(RuntimeError("database is gone"))
    body, _ = metrics.render()
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert "lablease_launches" in names and "lablease_nodes" not in names


def test_ready_and_final_failures_count_as_launches_and_ready_ones_are_timed(registry, metrics):
    metrics.on_event(_event("create", "start", "c1"))
    metrics.on_event(_event("ready", "done", "c1", elapsed=27.4))
    metrics.on_event(_event("ssh", "failed", "c2", elapsed=600.0))
    value = registry.get_sample_value
    assert value("lablease_launches_total", {"machine_type": "cloud", "result": "ready"}) == 1
    assert value("lablease_launches_total", {"machine_type": "cloud", "result": "failed"}) == 1
    assert value("lablease_launch_duration_seconds_count", {"machine_type": "cloud"}) == 1
    assert value("lablease_launch_duration_seconds_sum", {"machine_type": "cloud"}) == 27.4


def test_a_machine_types_results_start_at_zero_once_any_event_of_it_is_seen(registry, metrics):
    metrics.on_event(_event("create", "start", machine_type="ovh"))
    value = registry.get_sample_value
    assert value("lablease_launches_total", {"machine_type": "ovh", "result": "failed"}) == 0
    assert value("lablease_destroys_total", {"machine_type": "ovh", "result": "failed"}) == 0


def test_retries_are_counted_by_stage_and_are_not_failed_launches(registry, metrics):
    metrics.on_event(_event("boot", "retry", attempt=1))
    metrics.on_event(_event("boot", "retry", attempt=2))
    metrics.on_event(_event("volume", "retry", attempt=3))
    value = registry.get_sample_value
    assert value("lablease_launch_retries_total", {"machine_type": "cloud", "stage": "boot"}) == 2
    assert value("lablease_launch_retries_total", {"machine_type": "cloud", "stage": "volume"}) == 1
    assert value("lablease_launches_total", {"machine_type": "cloud", "result": "failed"}) == 0


def test_destroys_are_counted_by_result_and_timed_by_elapsed_or_else_since_their_start(registry, metrics):
    metrics.on_event(_event("destroy", "start", "c1", at=100.0))
    metrics.on_event(_event("destroy", "done", "c1", at=104.0))
    metrics.on_event(_event("destroy", "start", "c2", at=100.0))
    metrics.on_event(_event("destroy", "failed", "c2", at=200.0, elapsed=90.0))
    value = registry.get_sample_value
    assert value("lablease_destroys_total", {"machine_type": "cloud", "result": "done"}) == 1
    assert value("lablease_destroys_total", {"machine_type": "cloud", "result": "failed"}) == 1
    assert value("lablease_destroy_duration_seconds_sum", {"machine_type": "cloud"}) == 94.0
    assert value("lablease_launches_total", {"machine_type": "cloud", "result": "failed"}) == 0


def test_on_event_works_as_a_bus_subscriber(registry, metrics):
    bus = ProgressBus()
    bus.subscribe(metrics.on_event)
    bus.publish(_event("ready", "done", elapsed=5.0))
    assert registry.get_sample_value("lablease_launches_total", {"machine_type": "cloud", "result": "ready"}) == 1


@pytest.mark.parametrize("what, name", [
    ("create volume c1-vol-1", "create volume"),
    ("delete server 6f1c-22 again", "delete server"),
    ("list images", "list images"),
    ("authenticate", "authenticate"),
    ("", "unknown"),
])
def test_call_labels_drop_the_ids_a_what_carries(what, name):
    assert call_name(what) == name


def test_cloud_caller_reports_each_request_and_its_error_kind_through_the_hook_it_was_built_with(registry, metrics):
    caller = CloudCaller(classify_error, RateLimiter(0), sleep=lambda s: None,
                         on_call=metrics.cloud_call_observer("cloud"))
    answers = iter([RateLimitReachedError(headers={"retry-after": "0"}), BaseHTTPError(500, "500 oops"), "ok"])

    def fn():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert caller.call(Stage.CREATE, "c1", fn, what="create volume c1-vol-1") == "ok"
    with pytest.raises(ProvisionError):
        caller.call(Stage.CREATE, "c1", _raise(BaseHTTPError(403, "403 Quota exceeded")), what="create server")
    value = registry.get_sample_value
    assert value("lablease_cloud_api_calls_total", {"machine_type": "cloud", "call": "create volume"}) == 3
    assert value("lablease_cloud_api_calls_total", {"machine_type": "cloud", "call": "create server"}) == 1
    assert value("lablease_cloud_api_errors_total", {"machine_type": "cloud", "kind": "rate_limit"}) == 1
    assert value("lablease_cloud_api_errors_total", {"machine_type": "cloud", "kind": "transient"}) == 1
    assert value("lablease_cloud_api_errors_total", {"machine_type": "cloud", "kind": "quota"}) == 1
    timed = {"machine_type": "cloud", "call": "create volume"}
    assert value("lablease_cloud_api_call_duration_seconds_count", timed) == 3


def test_a_failing_call_hook_never_fails_the_call():
    caller = CloudCaller(classify_error, RateLimiter(0), on_call=_raise(RuntimeError("broken metrics")))
    assert caller.call(Stage.IMAGE, None, lambda: "ok", what="list images") == "ok"


def test_render_serves_the_text_format(metrics):
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain") and b"lablease_launches_total" in body


def test_the_warm_pool_target_and_ready_nodes_the_oldest_provisioning_node_and_expired_leases_are_gauges(
        store, registry):
    import time

    LabMetrics(registry, store, {"cloud": {"ubuntu-22.04": 2}})
    for name in ("c1", "c2", "c3", "c4"):
        store.create(name, {"machine_type": "cloud", "up": True})
    value = registry.get_sample_value
    assert value("lablease_warm_target", {"machine_type": "cloud", "os": "ubuntu-22.04"}) == 2
    assert value("lablease_warm_ready", {"machine_type": "cloud", "os": "ubuntu-22.04"}) == 0
    assert value("lablease_oldest_provisioning_seconds", {"machine_type": "cloud"}) == 0
    assert value("lablease_expired_leases", {"machine_type": "cloud"}) == 0
    store.lock_many(3, "cloud", "alice", "job", "ubuntu", "22.04", provision=True, lease_owner="host:1",
                    lease_seconds=0.05)
    store.transition("c1", "provisioning", "ready", lease_owner=None, lease_expires=None)
    store.to_pool("c1")
    time.sleep(0.1)
    assert value("lablease_warm_ready", {"machine_type": "cloud", "os": "ubuntu-22.04"}) == 1
    assert 0.1 <= value("lablease_oldest_provisioning_seconds", {"machine_type": "cloud"}) < 30
    assert value("lablease_expired_leases", {"machine_type": "cloud"}) == 2


def test_the_census_takes_the_oldest_provisioning_node_of_each_type():
    from datetime import datetime, timedelta

    from lablease.lab.census import census
    from lablease.store.records import NodeRecord

    now = datetime(2026, 12, 1, 12, 0, 0)
    def rec(name, machine_type, minutes, state="provisioning"):
        return NodeRecord(id=0, name=name, machine_type=machine_type, state=state, locked=True, up=True,
                          state_since=now - timedelta(minutes=minutes))
    figures = census([rec("a", "ovh", 3), rec("b", "ovh", 12), rec("c", "ovh", 60, "ready"), rec("d", "dev", 1)],
                     {"ovh": {}}, now)
    assert figures["ovh"].oldest_provisioning_seconds == 720 and figures["dev"].oldest_provisioning_seconds == 60


def test_lab_status_shows_each_providers_warm_target_and_ready_nodes_oldest_provisioning_and_expired_leases(
        store):
    from types import SimpleNamespace

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from lablease.lab.http import router

    class Lab:  # the lab service's own part of the answer (LabService.status)
        def status(self):
            return {"owner": "h:1", "draining": False, "in_flight": 0, "reconciler": {},
                    "providers": {"cloud": {"max_parallel": 2, "min_ready": {"ubuntu-22.04": 2}, "health": {}}}}

    for name in ("c1", "c2"):
        store.create(name, {"machine_type": "cloud", "up": True})
    store.lock_many(1, "cloud", "alice", "job", "ubuntu", "22.04", provision=True, lease_owner="h:1",
                    lease_seconds=3600)
    app = FastAPI()
    app.include_router(router)
    app.state.lab, app.state.store = Lab(), store
    with TestClient(app) as client:
        cloud = client.get("/lab/status/").json()["providers"]["cloud"]
    assert cloud["warm"] == {"ubuntu-22.04": {"target": 2, "ready": 0}}
    assert 0 <= cloud["oldest_provisioning_seconds"] < 30 and cloud["expired_leases"] == 0
