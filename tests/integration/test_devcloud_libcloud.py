"""libcloud's real OpenStack driver over HTTP against devcloud: whole node lifecycles, both API versions."""

from __future__ import annotations

import time

import pytest
from libcloud.common.exceptions import BaseHTTPError
from libcloud.common.types import InvalidCredsError
from libcloud.compute.types import NodeState, StorageVolumeState

from lablease.testing.waiting import wait_until

pytestmark = pytest.mark.integration

COMBOS = [("2.0_password", None), ("3.x_password", None), ("2.0_password", "2.0"), ("3.x_password", "2.0")]


def wait_volume(driver, volume_id: str, state, timeout: float = 10.0):
    return wait_until(lambda: (vol := driver.ex_get_volume(volume_id)).state == state and vol,
                      what=f"volume {volume_id} to be {state}", timeout=timeout)


@pytest.mark.parametrize("auth_version,api_version", COMBOS)
def test_libcloud_runs_a_whole_node_lifecycle_with_a_volume(devcloud, auth_version, api_version):
    driver = devcloud.driver(auth_version, api_version)
    images = {i.name: i for i in driver.list_images()}
    sizes = {s.name: s for s in driver.list_sizes()}
    networks = driver.ex_list_networks()
    groups = driver.ex_list_security_groups()
    assert {"Ubuntu 22.04", "ubuntu-20.04-server", "CentOS-9-Stream"} <= set(images)
    assert len(sizes) >= 4 and any(n.startswith("win-") for n in sizes)
    assert len({(s.ram, s.disk, s.vcpus) for s in sizes.values()}) >= 4
    assert [n.name for n in networks] == ["public"]
    assert [g.name for g in groups] == ["default"]

    node = driver.create_node(name="node1", size=sizes["m1.small"], image=images["Ubuntu 22.04"],
                              ex_userdata="#cloud-config\nruncmd:\n - touch /.teuth_provisioned\n",
                              ex_metadata={"owner": "tester"}, networks=networks, ex_security_groups=groups)
    assert node.state in (NodeState.PENDING, NodeState.RUNNING)  # BUILD unless the machine is slow
    [(node, ips)] = driver.wait_until_running([node], wait_period=0.1, timeout=15)
    assert node.state == NodeState.RUNNING
    assert ips == node.public_ips and ips[0].startswith("127.")
    assert node.extra["metadata"] == {"owner": "tester"}
    assert node.extra["flavorId"] == sizes["m1.small"].id

    volume = driver.create_volume(2, "node1_0")
    wait_volume(driver, volume.id, StorageVolumeState.AVAILABLE)
    assert driver.attach_volume(node, volume)
    volume = wait_volume(driver, volume.id, StorageVolumeState.INUSE)
    [attachment] = volume.extra["attachments"]
    assert node.id in (attachment.get("serverId"), attachment.get("server_id"))
    assert driver.detach_volume(volume)
    wait_volume(driver, volume.id, StorageVolumeState.AVAILABLE)
    assert driver.destroy_volume(volume)
    assert driver.destroy_node(node)
    assert driver.list_nodes() == []
    assert driver.list_volumes() == []
    assert devcloud.resources()["servers"] == [] and devcloud.resources()["volumes"] == []


@pytest.mark.parametrize("auth_version", ["2.0_password", "3.x_password"])
def test_wrong_password_is_refused_with_401(devcloud, auth_version):
    args = devcloud.driver_args(auth_version)
    from libcloud.compute.providers import get_driver
    from libcloud.compute.types import Provider

    args.pop("password")
    driver = get_driver(Provider.OPENSTACK)(args.pop("username"), "wrong", **args)
    with pytest.raises(InvalidCredsError):
        driver.list_sizes()


def test_expired_token_gets_401_and_libcloud_reauthenticates(devcloud_factory):
    cloud = devcloud_factory({"token_lifetime": 3})
    import httpx

    resp = httpx.post(f"{cloud.url}/v2.0/tokens", json={"auth": {"passwordCredentials": {
        "username": "demo", "password": "demo-password"}, "tenantName": "demo"}})
    token = resp.json()["access"]["token"]["id"]
    assert httpx.get(f"{cloud.url}/compute/v2.1/flavors", headers={"X-Auth-Token": token}).status_code == 200
    time.sleep(3.2)  # the scenario, not a wait for something: the 3 s token lifetime passes
    expired = httpx.get(f"{cloud.url}/compute/v2.1/flavors", headers={"X-Auth-Token": token})
    assert expired.status_code == 401 and expired.json()["error"]["code"] == 401
    assert httpx.get(f"{cloud.url}/compute/v2.1/flavors", headers={"X-Auth-Token": "bogus"}).status_code == 401
    assert len(cloud.driver().list_sizes()) >= 4


def test_server_names_need_not_be_unique_and_addresses_are(devcloud):
    driver = devcloud.driver()
    size, image = driver.list_sizes()[0], driver.list_images()[0]
    nodes = [driver.create_node(name="twin", size=size, image=image) for _ in range(3)]
    running = driver.wait_until_running(nodes, wait_period=0.1, timeout=15)
    addresses = [ips[0] for _, ips in running]
    assert [n.name for n, _ in running] == ["twin"] * 3
    assert len(set(addresses)) == 3
    assert all(not a.endswith((".0", ".1")) for a in addresses)


def test_deleting_a_server_detaches_its_volumes(devcloud):
    driver = devcloud.driver()
    node = driver.create_node(name="n", size=driver.list_sizes()[0], image=driver.list_images()[0])
    [(node, _)] = driver.wait_until_running([node], wait_period=0.1, timeout=15)
    volume = driver.create_volume(1, "n_0")
    wait_volume(driver, volume.id, StorageVolumeState.AVAILABLE)
    driver.attach_volume(node, volume)
    wait_volume(driver, volume.id, StorageVolumeState.INUSE)
    driver.destroy_node(node)
    volume = driver.ex_get_volume(volume.id)
    assert volume.state == StorageVolumeState.AVAILABLE and volume.extra["attachments"] == []
    assert driver.destroy_volume(volume)


@pytest.mark.parametrize("api_version", [None, "2.0"])
def test_deleting_an_in_use_volume_is_refused_as_cinder_refuses_it(devcloud, api_version):
    driver = devcloud.driver(api_version=api_version)
    node = driver.create_node(name="n", size=driver.list_sizes()[0], image=driver.list_images()[0])
    [(node, _)] = driver.wait_until_running([node], wait_period=0.1, timeout=15)
    volume = driver.create_volume(1, "n_0")
    wait_volume(driver, volume.id, StorageVolumeState.AVAILABLE)
    driver.attach_volume(node, volume)
    wait_volume(driver, volume.id, StorageVolumeState.INUSE)
    with pytest.raises(BaseHTTPError) as err:
        driver.destroy_volume(volume)
    assert err.value.code == 400 and "Volume status must be available" in str(err.value)
    assert [v["status"] for v in devcloud.resources()["volumes"]] == ["in-use"]


def test_keypairs_can_be_imported_generated_listed_and_deleted(devcloud):
    driver = devcloud.driver()
    generated = driver.create_key_pair("gen")
    assert generated.private_key.startswith("-----BEGIN RSA PRIVATE KEY-----")
    imported = driver.import_key_pair_from_string("imp", generated.public_key)
    assert imported.fingerprint == generated.fingerprint
    assert sorted(k.name for k in driver.list_key_pairs()) == ["gen", "imp"]
    assert driver.delete_key_pair(imported)
    assert [k.name for k in driver.list_key_pairs()] == ["gen"]


@pytest.mark.parametrize("auth_version,suffix", [("2.0_password", "/v2.0/tokens"), ("3.x_password", "/v3/auth/tokens")])
def test_seed_style_auth_urls_ending_in_the_token_path_work_too(devcloud, auth_version, suffix):
    from libcloud.compute.providers import get_driver
    from libcloud.compute.types import Provider

    args = devcloud.driver_args(auth_version)
    args["ex_force_auth_url"] = devcloud.url + suffix
    driver = get_driver(Provider.OPENSTACK)(args.pop("username"), args.pop("password"), **args)
    assert len(driver.list_sizes()) >= 4


def test_the_2_0_driver_sees_subnets_and_the_ports_of_a_server(devcloud):
    driver = devcloud.driver("3.x_password", "2.0")
    [subnet] = driver.ex_list_subnets()
    node = driver.create_node(name="p", size=driver.list_sizes()[0], image=driver.list_images()[0])
    [(node, ips)] = driver.wait_until_running([node], wait_period=0.1, timeout=15)
    [port] = driver.ex_get_node_ports(node)
    assert port.extra["fixed_ips"] == [{"subnet_id": subnet.id, "ip_address": ips[0]}]
    assert port.id in {p.id for p in driver.ex_list_ports()}


def test_regions_come_from_config_and_an_unknown_region_has_no_endpoint(devcloud_factory):
    from libcloud.common.types import LibcloudError

    cloud = devcloud_factory({"regions": ["RegionOne", "RegionTwo"]})
    cloud.region = "RegionTwo"
    assert len(cloud.driver("3.x_password", "2.0").list_images()) == 3
    cloud.region = "Nowhere"
    with pytest.raises(LibcloudError, match="Could not find specified endpoint"):
        cloud.driver().list_sizes()
