"""Faults injected by devcloud: every create ends in success by retry or in a clean failure named by its stage,
and afterwards devcloud and BIND hold nothing of the failed attempts.
"""

from __future__ import annotations

import threading
import time

import pytest

from lablease.dns.client import DNSClient
from lablease.provision.devlab import devcloud_lab_config, generate_lab_key
from lablease.provision.engine import Provisioner
from lablease.provision.context import ProvisionerOptions
from lablease.provision.errors import ProvisionError
from lablease.provision.models import CreateRequest

pytestmark = pytest.mark.integration

CLOUD = {"boot_delay": 0.3, "volume_delay": 0.1, "ssh": {"enabled": True, "delay": 0.2, "runcmd_delay": 0.1}}


@pytest.fixture
def make_lab(devcloud_factory, dns_service, tmp_path):
    """Start devcloud with ``cloud`` overrides and an engine with ``provider`` overrides."""
    clients = []

    def make(cloud=None, **provider):
        handle = devcloud_factory({**CLOUD, **(cloud or {})})
        key = generate_lab_key(tmp_path / "lab_key")
        settings = {"launch_retries": 3, "api_retry_time": 20, **provider}
        config = devcloud_lab_config(handle, key, nsupdate_url=dns_service.update_url, **settings)
        dns = DNSClient(dns_service.update_url)
        clients.append(dns)
        prov = Provisioner(config, "dev", dns, ProvisionerOptions(token_cache_dir=tmp_path / f"tokens-{len(clients)}", poll_cap=0.5))
        return prov, handle

    yield make, dns_service
    for client in clients:
        client.close()


def _nothing_left(cloud, bind, names, keep=()):
    res = cloud.resources()
    assert [s["name"] for s in res["servers"] if s["name"] not in keep] == []
    assert [v["name"] for v in res["volumes"] if v["name"].split("_")[0] not in keep] == []
    for name in names:
        if name not in keep:
            assert bind.addresses(name) == set(), name


def _requests(n, volumes=0):
    return [CreateRequest(f"node{i}", "ubuntu", "22.04", {"volumes": {"count": volumes, "size": 1}}) for i in range(n)]


def test_rate_limits_are_waited_out_by_retry_after_and_the_nodes_come_up(make_lab):
    make, dns = make_lab
    prov, cloud = make({"faults": {"rate_limits": [
        {"match": "POST /compute/v2.1/servers", "requests": 1, "per_seconds": 1, "status": 413, "retry_after": 1},
        {"match": "GET /compute/v2.1/servers/*", "requests": 5, "per_seconds": 1, "status": 429, "retry_after": 1},
    ]}})
    start = time.monotonic()
    outcomes = prov.create_many(_requests(3))
    assert [o.error for o in outcomes] == [None, None, None]
    assert time.monotonic() - start >= 2.0  # three creates at one per second, each waiting as told
    counts = cloud.request_counts()
    assert counts["POST /compute/v2.1/servers"] > 3  # some were refused and repeated...
    assert len(cloud.resources()["servers"]) == 3    # ...without creating anything twice
    assert all(o.ok for o in prov.destroy_many([o.name for o in outcomes]))
    _nothing_left(cloud, dns.bind, ["node0", "node1", "node2"])


def test_server_errors_500_are_retried_and_nothing_of_the_failed_calls_remains(make_lab):
    make, dns = make_lab
    prov, cloud = make({"faults": {"seed": 11, "errors": [
        {"match": "GET *", "probability": 0.2}, {"match": "POST *", "probability": 0.1},
        {"match": "DELETE *", "probability": 0.2}]}}, launch_retries=6)
    outcomes = prov.create_many(_requests(4, volumes=1))
    assert [o.error for o in outcomes] == [None] * 4
    res = cloud.resources()
    assert sorted(s["name"] for s in res["servers"]) == ["node0", "node1", "node2", "node3"]
    assert sorted(v["name"] for v in res["volumes"]) == ["node0_0", "node1_0", "node2_0", "node3_0"]
    assert all(o.ok for o in prov.destroy_many([o.name for o in outcomes]))
    _nothing_left(cloud, dns.bind, ["node0", "node1", "node2", "node3"])


def test_a_server_ending_in_error_is_replaced_by_a_new_attempt(make_lab):
    make, dns = make_lab
    # With this seed the first draws fail some servers, whichever thread gets them; 12 attempts
    # make running out of attempts (0.5 ** 12) practically impossible.
    prov, cloud = make({"faults": {"seed": 3, "server_error": {"probability": 0.5}}}, launch_retries=12)
    outcomes = prov.create_many(_requests(3))
    assert [o.error for o in outcomes] == [None] * 3
    assert cloud.request_counts()["POST /compute/v2.1/servers"] > 3
    assert len(cloud.resources()["servers"]) == 3  # the ERROR servers were removed
    prov.destroy_many([o.name for o in outcomes])
    _nothing_left(cloud, dns.bind, ["node0", "node1", "node2"])


def test_servers_that_always_end_in_error_fail_cleanly_after_the_retries(make_lab):
    make, dns = make_lab
    prov, cloud = make({"faults": {"server_error": {"probability": 1.0, "message": "No valid host was found."}}},
                       launch_retries=2)
    with pytest.raises(ProvisionError) as err:
        prov.create("node1", "ubuntu", "22.04", {"volumes": {"count": 1, "size": 1}})
    assert err.value.stage.value == "boot" and "ERROR" in str(err.value) and "No valid host" in str(err.value)
    assert "after 2 attempts" in str(err.value)
    assert cloud.request_counts()["POST /compute/v2.1/servers"] == 2
    _nothing_left(cloud, dns.bind, ["node1"])


@pytest.mark.parametrize("fault", ["volume_error", "attach_error"])
def test_volume_create_and_attach_failures_fail_cleanly_naming_the_volume_stage(make_lab, fault):
    make, dns = make_lab
    prov, cloud = make({"faults": {fault: {"probability": 1.0}}}, launch_retries=2)
    with pytest.raises(ProvisionError) as err:
        prov.create("node1", "ubuntu", "22.04", {"volumes": {"count": 2, "size": 1}})
    assert err.value.stage.value == "volume" and "volume node1_0 failed to" in str(err.value)
    assert cloud.request_counts()["POST /compute/v2.1/servers"] == 2
    _nothing_left(cloud, dns.bind, ["node1"])


def test_flaky_attaches_end_in_success_by_retry(make_lab):
    make, dns = make_lab
    prov, cloud = make({"faults": {"seed": 5, "attach_error": {"probability": 0.4}}}, launch_retries=8)
    node = prov.create("node1", "ubuntu", "22.04", {"volumes": {"count": 1, "size": 1}})
    res = cloud.resources()
    assert [s["id"] for s in res["servers"]] == [node.server_id]
    assert [v["id"] for v in res["volumes"]] == node.volume_ids
    assert dns.bind.addresses("node1") == {node.address}
    prov.destroy("node1")
    _nothing_left(cloud, dns.bind, ["node1"])


def test_the_dns_service_down_fails_at_the_dns_stage_and_removes_server_and_volumes(make_lab):
    make, dns = make_lab
    prov, cloud = make()
    dns.stop()
    with pytest.raises(ProvisionError) as err:
        prov.create("node1", "ubuntu", "22.04", {"volumes": {"count": 1, "size": 1}})
    assert err.value.stage.value == "dns" and "unreachable" in str(err.value)
    res = cloud.resources()
    assert res["servers"] == [] and res["volumes"] == []
    # The rollback could not delete a record through a dead service; there was none to delete.
    assert dns.bind.addresses("node1") == set()


def test_ssh_never_ready_fails_at_the_ssh_stage_and_leaves_nothing(make_lab):
    make, dns = make_lab
    prov, cloud = make(ready_command="test -e /never-there-marker", ready_timeout=1.5, launch_retries=2)
    with pytest.raises(ProvisionError) as err:
        prov.create("node1", "ubuntu", "22.04")
    assert err.value.stage.value == "ssh" and "did not succeed within" in str(err.value)
    _nothing_left(cloud, dns.bind, ["node1"])


def test_quota_exceeded_fails_at_once_without_retrying(make_lab):
    make, dns = make_lab
    prov, cloud = make({"quotas": {"instances": 1}})
    outcomes = prov.create_many(_requests(2))
    ok = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    assert len(ok) == 1 and len(failed) == 1
    assert failed[0].error.stage.value == "create" and "quota exceeded" in str(failed[0].error).lower()
    assert cloud.request_counts()["POST /compute/v2.1/servers"] == 2  # no retry of the refused one
    _nothing_left(cloud, dns.bind, [o.name for o in outcomes], keep=[ok[0].name])
    prov.destroy(ok[0].name)
    _nothing_left(cloud, dns.bind, [o.name for o in outcomes])


def test_bad_credentials_fail_at_the_auth_stage_without_showing_the_password(make_lab, devcloud_factory, tmp_path):
    make, dns = make_lab
    prov, cloud = make()
    args = dict(prov.provider.driver_args, password="wrong-pass-1234")
    config = devcloud_lab_config(cloud, tmp_path / "lab_key", nsupdate_url=dns.update_url, driver_args=args)
    bad = Provisioner(config, "dev", None, ProvisionerOptions(token_cache_dir=tmp_path / "tokens-bad"))
    outcome = bad.create_many(_requests(1))[0]
    assert not outcome.ok and outcome.error.stage.value == "auth"
    assert "wrong-pass-1234" not in str(outcome.error) and "credentials" in str(outcome.error)
    assert cloud.request_counts()["POST /v2.0/tokens"] == 1


def test_deletes_the_cloud_accepts_and_then_fails_are_asked_for_again(make_lab):
    make, dns = make_lab
    prov, cloud = make()
    outcomes = prov.create_many(_requests(3, volumes=1))
    assert all(o.ok for o in outcomes)
    cloud.set_faults({"delete_error": {"probability": 1.0}})  # every first delete fails in the cloud...
    threading.Timer(0.5, cloud.clear_faults).start()           # ...until the cloud recovers
    assert all(o.ok for o in prov.destroy_many([o.name for o in outcomes]))
    _nothing_left(cloud, dns.bind, ["node0", "node1", "node2"])


def test_a_server_that_cannot_be_deleted_is_named_in_the_destroy_failure(make_lab):
    make, dns = make_lab
    prov, cloud = make(delete_timeout=3)
    node = prov.create("node1", "ubuntu", "22.04")
    cloud.set_faults({"delete_error": {"probability": 1.0, "message": "hypervisor gone"}})
    with pytest.raises(ProvisionError) as err:
        prov.destroy("node1")
    assert err.value.stage.value == "destroy" and f"server {node.server_id} still exists" in str(err.value)
    assert "hypervisor gone" in str(err.value)
    cloud.clear_faults()
    prov.destroy("node1")  # a later destroy (the reconciler's) finishes the job
    _nothing_left(cloud, dns.bind, ["node1"])


def test_a_volume_quota_hit_while_the_first_volume_is_still_creating_is_rolled_back_completely(make_lab):
    # Cinder refuses to delete a volume in 'creating'; the rollback must wait it out, not give up.
    make, dns = make_lab
    prov, cloud = make({"quotas": {"volumes": 1}, "volume_delay": 1.5}, launch_retries=1)
    with pytest.raises(ProvisionError) as err:
        prov.create("node1", "ubuntu", "22.04", {"volumes": {"count": 2, "size": 1}})
    assert err.value.stage.value == "volume" and "quota exceeded" in str(err.value).lower()
    assert "rollback incomplete" not in str(err.value)
    _nothing_left(cloud, dns.bind, ["node1"])
