"""Injected faults answer as a real cloud answers them, and the request counters count them."""

from __future__ import annotations

import time

import httpx
import pytest
from libcloud.common.exceptions import BaseHTTPError, RateLimitReachedError
from libcloud.compute.types import NodeState, StorageVolumeState

from lablease.testing.waiting import wait_until

pytestmark = pytest.mark.integration

SERVERS = "POST /compute/v2.1/servers"
FLAVORS = "GET /compute/v2.1/flavors/detail"


def token(cloud) -> str:
    resp = httpx.post(f"{cloud.url}/v2.0/tokens", json={"auth": {"passwordCredentials": {
        "username": "demo", "password": "demo-password"}, "tenantName": "demo"}})
    return resp.json()["access"]["token"]["id"]


def boot(driver, name="n"):
    node = driver.create_node(name=name, size=driver.list_sizes()[0], image=driver.list_images()[0])
    return node


def poll(fn, want, timeout=10.0):
    return wait_until(lambda: (value := fn()) == want and value, what=f"{want!r}", timeout=timeout)


def test_rate_limit_from_config_answers_413_overlimit_with_retry_after(devcloud_factory):
    cloud = devcloud_factory({"faults": {"rate_limits": [
        {"match": FLAVORS, "requests": 2, "per_seconds": 60, "status": 413, "retry_after": 7}]}})
    headers = {"X-Auth-Token": token(cloud)}
    url = f"{cloud.url}/compute/v2.1/flavors/detail"
    assert [httpx.get(url, headers=headers).status_code for _ in range(2)] == [200, 200]
    limited = httpx.get(url, headers=headers)
    assert limited.status_code == 413
    assert limited.headers["Retry-After"] == "7"
    assert limited.json()["overLimit"]["code"] == 413 and limited.json()["overLimit"]["retryAfter"] == "7"
    with pytest.raises(BaseHTTPError) as err:
        cloud.driver().list_sizes()
    assert err.value.code == 413
    assert cloud.request_counts()[FLAVORS] == 4


def test_rate_limit_set_at_run_time_answers_429_which_libcloud_sees_as_rate_limit(devcloud):
    driver = devcloud.driver()
    driver.list_sizes()
    devcloud.reset_counts()
    devcloud.set_faults({"rate_limits": [{"match": FLAVORS, "requests": 0, "status": 429, "retry_after": 3}]})
    with pytest.raises(RateLimitReachedError) as err:
        driver.list_sizes()
    assert err.value.retry_after == 3
    assert devcloud.request_counts() == {FLAVORS: 1}
    devcloud.clear_faults()
    assert len(driver.list_sizes()) >= 4


def test_error_probability_gives_nova_500s_and_is_deterministic_for_a_seed(devcloud):
    headers = {"X-Auth-Token": token(devcloud)}
    url = f"{devcloud.url}/compute/v2.1/flavors/detail"

    def statuses():
        devcloud.set_faults({"seed": 7, "errors": [{"match": "GET /compute/*", "probability": 0.5}]})
        return [httpx.get(url, headers=headers).status_code for _ in range(20)]

    devcloud.reset_counts()
    first = statuses()
    assert set(first) == {200, 500}
    assert statuses() == first
    devcloud.set_faults({"errors": [{"match": FLAVORS, "probability": 1.0}]})
    resp = httpx.get(url, headers=headers)
    assert resp.status_code == 500 and resp.json()["computeFault"]["code"] == 500
    assert devcloud.request_counts()[FLAVORS] == 41


def test_injected_server_error_ends_the_server_in_error_with_a_fault_message(devcloud):
    devcloud.set_faults({"server_error": {"probability": 1.0, "match_name": "bad-*"}})
    driver = devcloud.driver()
    good, bad = boot(driver, "good-1"), boot(driver, "bad-1")
    [(good, _)] = driver.wait_until_running([good], wait_period=0.1, timeout=15)
    poll(lambda: driver.ex_get_node_details(bad.id).state, NodeState.ERROR)
    bad = driver.ex_get_node_details(bad.id)
    assert "No valid host was found" in bad.extra["fault"]["message"]
    assert devcloud.request_counts()[SERVERS] == 2


def test_injected_volume_create_failure_ends_the_volume_in_error(devcloud):
    devcloud.set_faults({"volume_error": {"probability": 1.0}})
    driver = devcloud.driver(api_version="2.0")
    volume = driver.create_volume(1, "v")
    poll(lambda: driver.ex_get_volume(volume.id).state, StorageVolumeState.ERROR)
    assert driver.destroy_volume(volume)  # a volume in error can be deleted
    assert devcloud.request_counts()["POST /volume/v3/{project_id}/volumes"] == 1


def test_injected_attach_failure_leaves_the_volume_available_and_unattached(devcloud_factory):
    devcloud = devcloud_factory({"volume_delay": 1.0})  # long enough to see 'attaching' first
    driver = devcloud.driver()
    node = boot(driver)
    [(node, _)] = driver.wait_until_running([node], wait_period=0.1, timeout=15)
    volume = driver.create_volume(1, "n_0")
    poll(lambda: driver.ex_get_volume(volume.id).state, StorageVolumeState.AVAILABLE)
    devcloud.set_faults({"attach_error": {"probability": 1.0}})
    assert driver.attach_volume(node, volume)  # Nova accepts it; the attach fails afterwards
    assert driver.ex_get_volume(volume.id).state == StorageVolumeState.ATTACHING
    poll(lambda: driver.ex_get_volume(volume.id).state, StorageVolumeState.AVAILABLE)
    assert driver.ex_get_volume(volume.id).extra["attachments"] == []
    assert devcloud.request_counts()["POST /compute/v2.1/servers/{server_id}/os-volume_attachments"] == 1


def test_added_latency_delays_matching_requests(devcloud):
    driver = devcloud.driver()
    driver.list_images()
    devcloud.set_faults({"latency": [{"match": "GET /compute/v2.1/images/detail", "seconds": 0.5}]})
    started = time.monotonic()
    driver.list_images()
    assert time.monotonic() - started >= 0.5
    assert devcloud.request_counts()["GET /compute/v2.1/images/detail"] == 2


def test_failing_deletes_leave_the_server_in_error_and_the_volume_in_error_deleting(devcloud):
    driver = devcloud.driver()
    node = boot(driver)
    [(node, _)] = driver.wait_until_running([node], wait_period=0.1, timeout=15)
    volume = driver.create_volume(1, "n_0")
    poll(lambda: driver.ex_get_volume(volume.id).state, StorageVolumeState.AVAILABLE)
    devcloud.set_faults({"delete_error": {"probability": 1.0}})
    assert driver.destroy_node(node)  # accepted, as Nova accepts it
    assert driver.destroy_volume(volume)
    [server] = devcloud.resources()["servers"]
    assert server["status"] == "ERROR"
    assert driver.ex_get_volume(volume.id).extra["state"] == "error_deleting"
    devcloud.clear_faults()
    assert driver.destroy_node(node) and driver.destroy_volume(volume)
    assert devcloud.resources()["servers"] == [] and devcloud.resources()["volumes"] == []
    assert devcloud.request_counts()["DELETE /compute/v2.1/servers/{server_id}"] == 2


def test_bad_fault_spec_is_refused_naming_the_key(devcloud):
    resp = httpx.put(f"{devcloud.url}/devcloud/admin/faults", json={"errors": [{"probability": 2}]})
    assert resp.status_code == 400
    assert "faults.errors.0.probability" in resp.json()["error"]["message"]
