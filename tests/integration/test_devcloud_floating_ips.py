"""devcloud's private-network shape through stock libcloud: a server's own address never answers SSH; a floating IP
from the external network does while it is associated, through Neutron (driver 2.0) and Nova's proxy (driver 1.1)."""

from __future__ import annotations

import socket

import httpx
import paramiko
import pytest
from libcloud.common.exceptions import BaseHTTPError

from lablease.testing.devcloud import PRIVATE_NETWORK
from lablease.testing.waiting import wait_until
from tests.integration.test_devcloud_ssh import login, run

pytestmark = pytest.mark.integration

# No cidr: the harness gives each network its own random 127.x.y.0/24 (parallel workers never collide).
PRIVATE = {**PRIVATE_NETWORK, "quotas": {"floating_ips": 2}, "boot_delay": 0.2,
           "ssh": {"enabled": True, "delay": 0.1, "runcmd_delay": 0.1}}


def answers(address: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((address, port)) == 0


def cloud_config(key: paramiko.PKey) -> str:
    return f"#cloud-config\nssh_authorized_keys:\n  - {key.get_name()} {key.get_base64()} t@d\n"


@pytest.fixture(scope="module")
def private_cloud(tmp_path_factory):
    from lablease.testing.devcloud import start_devcloud

    cloud = start_devcloud(tmp_path_factory.mktemp("private"), PRIVATE)
    yield cloud
    cloud.stop()


def test_ssh_answers_only_on_the_floating_ip_while_it_is_associated(private_cloud):
    cloud, key = private_cloud, paramiko.RSAKey.generate(2048)
    driver = cloud.driver(api_version="2.0")
    [pool] = driver.ex_list_floating_ip_pools()
    assert pool.name == "ext-net"
    node = driver.create_node(name="fip1", size=driver.list_sizes()[0], image=driver.list_images()[0],
                              ex_userdata=cloud_config(key))
    [(node, _)] = driver.wait_until_running([node], wait_period=0.1, timeout=15)
    [fixed] = [a["addr"] for a in node.extra["addresses"]["private"]]
    assert node.extra["addresses"]["private"][0]["OS-EXT-IPS:type"] == "fixed"
    wait_until(lambda: cloud.server_internals(node.id)["ssh_due"], what="the sshd start to pass", timeout=10)
    assert not answers(fixed, cloud.ssh_port)  # a private address: no sshd there

    fip = driver.ex_create_floating_ip("ext-net")
    assert fip.ip_address != fixed and fip.ip_address.startswith("127.")
    assert not answers(fip.ip_address, cloud.ssh_port)  # allocated, not associated
    assert driver.ex_attach_floating_ip_to_node(node, fip)
    wait_until(lambda: answers(fip.ip_address, cloud.ssh_port), what="sshd on the floating IP", timeout=15)
    client = login(fip.ip_address, cloud.ssh_port, key)
    try:
        assert run(client, "true") == 0
    finally:
        client.close()
    addresses = driver.ex_get_node_details(node.id).extra["addresses"]["private"]
    assert [(a["addr"], a["OS-EXT-IPS:type"]) for a in addresses] == [(fixed, "fixed"), (fip.ip_address, "floating")]
    [listed] = driver.ex_list_floating_ips()
    assert listed.get_node_id() == node.id and listed.extra["port_id"]
    assert not answers(fixed, cloud.ssh_port)

    assert driver.ex_detach_floating_ip_from_node(node, fip)
    wait_until(lambda: not answers(fip.ip_address, cloud.ssh_port), what="sshd to leave the floating IP", timeout=15)
    assert driver.ex_attach_floating_ip_to_node(node, fip)
    wait_until(lambda: answers(fip.ip_address, cloud.ssh_port), what="sshd back on the floating IP", timeout=15)
    assert driver.ex_delete_floating_ip(fip)  # released while associated: the address stops answering
    wait_until(lambda: not answers(fip.ip_address, cloud.ssh_port), what="sshd to leave the released IP", timeout=15)
    assert driver.ex_list_floating_ips() == []
    driver.destroy_node(node)
    assert cloud.resources()["servers"] == [] and cloud.resources()["floating_ips"] == []


def test_floating_ips_carry_description_and_tags_and_stay_allocated_when_their_server_goes(private_cloud):
    cloud = private_cloud
    token = httpx.post(f"{cloud.url}/v2.0/tokens", json={"auth": {"passwordCredentials": {
        "username": "demo", "password": "demo-password"}, "tenantName": "demo"}}).json()["access"]["token"]["id"]
    driver = cloud.driver(api_version="2.0")
    node = driver.create_node(name="fip2", size=driver.list_sizes()[0], image=driver.list_images()[0])
    driver.wait_until_running([node], wait_period=0.1, timeout=15)
    [port] = driver.ex_get_node_ports(node)
    with httpx.Client(base_url=f"{cloud.url}/network/v2.0", headers={"X-Auth-Token": token}) as neutron:
        net = neutron.get("/networks", params={"name": "ext-net"}).json()["networks"][0]["id"]
        made = neutron.post("/floatingips", json={"floatingip": {
            "floating_network_id": net, "description": "lablease:lab1", "tags": ["lablease"], "port_id": port.id}})
        assert made.status_code == 201 and made.json()["floatingip"]["status"] == "ACTIVE"
        fip = made.json()["floatingip"]
        assert neutron.put(f"/floatingips/{fip['id']}/tags/node-fip2").status_code == 201
        found = neutron.get("/floatingips", params={"tags": "lablease,node-fip2"}).json()["floatingips"]
        assert [(f["id"], f["description"], f["port_id"]) for f in found] == [(fip["id"], "lablease:lab1", port.id)]
        assert neutron.get("/floatingips", params={"description": "other"}).json()["floatingips"] == []

        second = neutron.post("/floatingips", json={"floatingip": {"floating_network_id": net}})
        third = neutron.post("/floatingips", json={"floatingip": {"floating_network_id": net}})
        assert second.status_code == 201
        assert third.status_code == 409 and third.json()["NeutronError"]["type"] == "OverQuota"
        on_private = neutron.post("/floatingips", json={"floatingip": {
            "floating_network_id": driver.ex_list_networks()[0].id}})
        assert on_private.status_code == 400  # not an external network

        driver.destroy_node(node)
        left = neutron.get(f"/floatingips/{fip['id']}").json()["floatingip"]
        assert (left["port_id"], left["fixed_ip_address"], left["status"]) == (None, None, "DOWN")
        for f in (fip, second.json()["floatingip"]):
            assert neutron.delete(f"/floatingips/{f['id']}").status_code == 204
    assert cloud.resources()["floating_ips"] == []


def test_nova_floating_ip_proxy_serves_libcloud_1_1_driver(private_cloud):
    cloud, key = private_cloud, paramiko.RSAKey.generate(2048)
    driver = cloud.driver()
    assert [p.name for p in driver.ex_list_floating_ip_pools()] == ["ext-net"]
    node = driver.create_node(name="fip3", size=driver.list_sizes()[0], image=driver.list_images()[0],
                              ex_userdata=cloud_config(key))
    driver.wait_until_running([node], wait_period=0.1, timeout=15)
    fip = driver.ex_create_floating_ip("ext-net")
    assert driver.ex_attach_floating_ip_to_node(node, fip)
    [listed] = driver.ex_list_floating_ips()
    assert (listed.ip_address, listed.node_id) == (fip.ip_address, node.id)
    wait_until(lambda: answers(fip.ip_address, cloud.ssh_port), what="sshd on the floating IP", timeout=15)
    assert driver.ex_detach_floating_ip_from_node(node, fip)
    with pytest.raises(BaseHTTPError) as refused:
        driver.ex_detach_floating_ip_from_node(node, fip)
    assert refused.value.code == 409
    assert driver.ex_delete_floating_ip(fip)
    driver.destroy_node(node)


def test_allocate_and_associate_faults(private_cloud):
    cloud = private_cloud
    cloud.set_faults({"floating_ip_error": {"probability": 1.0, "match_name": "doomed*"},
                      "associate_error": {"probability": 1.0, "match_name": "unlucky*"}})
    try:
        token = httpx.post(f"{cloud.url}/v2.0/tokens", json={"auth": {"passwordCredentials": {
            "username": "demo", "password": "demo-password"}, "tenantName": "demo"}}).json()["access"]["token"]["id"]
        driver = cloud.driver(api_version="2.0")
        node = driver.create_node(name="unlucky1", size=driver.list_sizes()[0], image=driver.list_images()[0])
        driver.wait_until_running([node], wait_period=0.1, timeout=15)
        with httpx.Client(base_url=f"{cloud.url}/network/v2.0", headers={"X-Auth-Token": token}) as neutron:
            net = neutron.get("/networks", params={"name": "ext-net"}).json()["networks"][0]["id"]
            doomed = neutron.post("/floatingips", json={"floatingip": {"floating_network_id": net,
                                                                        "description": "doomed"}})
            assert doomed.status_code == 409
            assert doomed.json()["NeutronError"]["type"] == "IpAddressGenerationFailure"
            fip = driver.ex_create_floating_ip("ext-net")
            assert driver.ex_attach_floating_ip_to_node(node, fip)  # accepted...
            shown = neutron.get(f"/floatingips/{fip.id}").json()["floatingip"]
            assert shown["port_id"] and shown["status"] == "DOWN"  # ...but never reachable
            assert cloud.server_internals(node.id)["ssh_addresses"] == []
            driver.ex_delete_floating_ip(fip)
        driver.destroy_node(node)
    finally:
        cloud.clear_faults()
