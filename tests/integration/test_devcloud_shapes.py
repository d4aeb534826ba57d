"""Cloud shapes other than OVH's through stock libcloud: boot from volume and zero-disk flavors, availability zones,
several networks, key pairs, config drive, listings in pages, Keystone v3 domains."""

from __future__ import annotations

import pytest
from libcloud.common.exceptions import BaseHTTPError
from libcloud.common.types import InvalidCredsError
from libcloud.compute.types import StorageVolumeState

from lablease.testing.waiting import wait_until

pytestmark = pytest.mark.integration

IMAGE = "2f1a1a38-0c7e-4a4c-9c9f-2204a0e22040"
SHAPES = {
    "flavors": [{"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1},
                {"id": "10", "name": "v1.bfv", "vcpus": 1, "ram": 512, "disk": 0}],
    "availability_zones": ["az-1", "az-2"],
    "networks": [{"name": "net-a"}, {"name": "net-b", "public": False}],
    "quotas": {"instances": 30, "cores": 60, "ram": 512 * 30, "volumes": 20},
    "page_size": 10, "boot_delay": 0.1, "volume_delay": 0.05,
    "domains": [{"id": "default", "name": "Default"}, {"id": "d2a7e1", "name": "lab-domain"}],
    "projects": ["demo", {"name": "lab", "domain": "lab-domain"}],
    "users": [{"name": "demo", "password": "demo-password", "projects": ["demo"]},
              {"name": "labuser", "password": "lab-password", "projects": ["lab"], "domain": "lab-domain"}],
}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    from lablease.testing.devcloud import start_devcloud

    handle = start_devcloud(tmp_path_factory.mktemp("shapes"), SHAPES)
    yield handle
    handle.stop()


def sizes(driver) -> dict:
    """(listed once a test: libcloud looks up a price for each size it lists, about 0.3 s a listing or more)"""
    return {s.name: s for s in driver.list_sizes()}


def bdm(size: int = 3, delete: bool = True) -> list[dict]:
    return [{"boot_index": 0, "uuid": IMAGE, "source_type": "image", "destination_type": "volume",
             "volume_size": size, "delete_on_termination": delete}]


def test_a_zero_disk_flavor_boots_only_from_a_volume_which_goes_with_the_server(cloud):
    driver = cloud.driver(api_version="2.0")
    net, size = driver.ex_list_networks()[0], sizes(driver)
    with pytest.raises(BaseHTTPError) as refused:
        driver.create_node(name="bfv0", size=size["v1.bfv"], image=driver.get_image(IMAGE), networks=[net])
    assert refused.value.code == 403 and "zero disk" in str(refused.value)

    node = driver.create_node(name="bfv1", size=size["v1.bfv"], networks=[net],
                              ex_blockdevicemappings=bdm(3), ex_availability_zone="az-2")
    [(node, _)] = driver.wait_until_running([node], wait_period=0.1, timeout=15)
    assert node.extra["imageId"] is None and node.extra["availability_zone"] == "az-2"
    [attached] = node.extra["volumes_attached"]
    volume = wait_until(lambda: (v := driver.ex_get_volume(attached["id"])).state == StorageVolumeState.INUSE and v,
                        what="the boot volume in use", timeout=10)
    assert volume.size == 3 and volume.extra["location"] == "az-2"
    assert volume.extra["attachments"][0]["device"] == "/dev/vda"
    with pytest.raises(BaseHTTPError):
        driver.destroy_volume(volume)  # in use by its server
    driver.destroy_node(node)
    assert cloud.resources()["volumes"] == []  # delete_on_termination

    kept = driver.create_node(name="bfv2", size=size["m1.tiny"], networks=[net],
                              ex_blockdevicemappings=bdm(2, delete=False))
    [(kept, _)] = driver.wait_until_running([kept], wait_period=0.1, timeout=15)
    driver.destroy_node(kept)
    [left] = driver.list_volumes()
    assert left.state == StorageVolumeState.AVAILABLE and left.size == 2
    driver.destroy_volume(left)


def test_zones_networks_key_pairs_and_config_drive_are_taken_and_shown(cloud):
    driver = cloud.driver()
    zones = driver.connection.request("/os-availability-zone").object["availabilityZoneInfo"]
    assert [(z["zoneName"], z["zoneState"]["available"]) for z in zones] == [("az-1", True), ("az-2", True)]
    nets, tiny, image = {n.name: n for n in driver.ex_list_networks()}, sizes(driver)["m1.tiny"], driver.get_image(IMAGE)
    with pytest.raises(BaseHTTPError) as ambiguous:  # two networks and none named: Nova cannot choose
        driver.create_node(name="n0", size=tiny, image=image)
    assert ambiguous.value.code == 409
    with pytest.raises(BaseHTTPError) as unknown_zone:
        driver.create_node(name="n0", size=tiny, image=image, networks=[nets["net-a"]], ex_availability_zone="nova")
    assert unknown_zone.value.code == 400 and "availability zone" in str(unknown_zone.value)

    pair = driver.create_key_pair("lab-key")
    assert pair.private_key and [k.name for k in driver.list_key_pairs()] == ["lab-key"]
    node = driver.create_node(name="n1", size=tiny, image=image, networks=[nets["net-b"]], ex_keyname="lab-key",
                              ex_config_drive=True)
    node = driver.ex_get_node_details(node.id)
    assert list(node.extra["addresses"]) == ["net-b"] and node.extra["key_name"] == "lab-key"
    assert node.extra["config_drive"] == "True" and node.extra["availability_zone"] == "az-1"
    driver.destroy_node(node)
    assert driver.delete_key_pair(pair) and driver.list_key_pairs() == []


def test_listings_come_in_pages_and_libcloud_2_0_reads_them_all(cloud):
    driver = cloud.driver(api_version="2.0")
    net, size, image = driver.ex_list_networks()[0], sizes(driver)["m1.tiny"], driver.get_image(IMAGE)
    made = {driver.create_node(name=f"p{i}", size=size, image=image, networks=[net]).id for i in range(25)}
    volumes = {driver.create_volume(1, f"v{i}").id for i in range(12)}
    cloud.reset_counts()
    assert {n.id for n in driver.list_nodes()} == made
    assert {v.id for v in driver.list_volumes()} == volumes
    counts = cloud.request_counts()
    assert counts["GET /compute/v2.1/servers/detail"] == 3  # 10 + 10 + 5
    assert counts["GET /volume/v3/{project_id}/volumes/detail"] == 2  # 10 + 2
    one = cloud.driver()  # the 1.1 driver reads one page only, as on a real cloud with 1000+ servers
    assert len(one.list_nodes()) == 10
    for node_id in made:
        driver.connection.request(f"/servers/{node_id}", method="DELETE")
    for volume_id in volumes:
        wait_until(lambda: driver.ex_get_volume(volume_id).state == StorageVolumeState.AVAILABLE,
                   what="volume available", timeout=10)
        driver.destroy_volume(driver.ex_get_volume(volume_id))


def test_keystone_v3_takes_user_and_project_domains_and_refuses_a_wrong_one(cloud):
    auth_version = "3.x_password"
    lab = dict(username="labuser", password="lab-password", ex_tenant_name="lab", ex_domain_name="lab-domain",
               ex_tenant_domain_id="d2a7e1")
    driver = cloud.driver(auth_version, **lab)
    assert {s.name for s in driver.list_sizes()} == {"m1.tiny", "v1.bfv"}
    for wrong in ({"ex_domain_name": "Default"}, {"ex_tenant_domain_id": "default"}):
        with pytest.raises(InvalidCredsError):
            cloud.driver(auth_version, **{**lab, **wrong}).list_sizes()
    with pytest.raises(InvalidCredsError):  # Keystone v2.0 sees the Default domain only
        cloud.driver("2.0_password", **{k: lab[k] for k in ("username", "password", "ex_tenant_name")}).list_sizes()
    assert cloud.driver("2.0_password").list_sizes()  # the seed's 2.0_password keeps working
