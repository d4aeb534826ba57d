"""The moto EC2 harness answers stock libcloud as EC2 does: listings, lifecycle, real SSH, volumes, faults.

Every client here is libcloud's own EC2NodeDriver (SigV4) over HTTP to a real moto server process;
every address it is given or connects to must be in 127.0.0.0/8.
"""

from __future__ import annotations

import getpass
import ipaddress
import socket

import libcloud
import paramiko
import pytest

from lablease.testing.moto_ec2 import READY_COMMAND
from lablease.testing.moto_settings import OWNER_CANONICAL, NotLoopback, require_loopback
from lablease.testing.waiting import wait_until

pytestmark = pytest.mark.integration

JAMMY = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"


def user_data(public_key: str) -> str:
    return ("#cloud-config\nuser: ubuntu\nssh_authorized_keys:\n  - " + public_key + "\n"
            "runcmd:\n  - [passwd, -d, ubuntu]\n  - touch /.teuth_provisioned\n")


def pick(driver, size_id: str = "t3.micro"):
    image = driver.list_images(ex_owner=OWNER_CANONICAL, ex_filters={"name": JAMMY})[0]
    size = next(s for s in driver.list_sizes() if s.id == size_id)
    return image, size


def login(address: str, port: int, key: paramiko.PKey) -> tuple[paramiko.SSHClient, str]:
    """An SSH session to a harness instance, and the host key it presented ("ssh-ed25519 AAAA...")."""
    require_loopback(address, "instance address")
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(address, port=port, username=getpass.getuser(), pkey=key, look_for_keys=False,
                   allow_agent=False, timeout=5, banner_timeout=5, auth_timeout=5)
    host_key = client.get_transport().get_remote_server_key()
    return client, f"{host_key.get_name()} {host_key.get_base64()}"


def run(client: paramiko.SSHClient, command: str) -> int:
    _, stdout, _ = client.exec_command(command, timeout=5)
    return stdout.channel.recv_exit_status()


def refused(address: str, port: int) -> bool:
    require_loopback(address, "instance address")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((address, port)) != 0


def test_canary_stock_libcloud_lists_images_sizes_nodes_and_volumes_through_the_harness(moto_ec2):
    import moto

    versions = f"moto {moto.__version__}, apache-libcloud {libcloud.__version__}"
    driver = moto_ec2.driver()
    images = driver.list_images(ex_owner=OWNER_CANONICAL)
    sizes = driver.list_sizes()
    assert images, (f"CANARY: stock libcloud's EC2NodeDriver lists no images through the moto harness ({versions}): "
                    "moto or libcloud changed how EC2 answers are read; see lablease.testing.moto_fixes")
    assert {i.name for i in images} >= {a["name"] for a in moto_ec2.images if a["owner_id"] == OWNER_CANONICAL}
    assert any(s.id == "t3.micro" for s in sizes), f"CANARY: no t3.micro among {len(sizes)} sizes ({versions})"
    image, size = pick(driver)
    node = driver.create_node(name="canary", size=size, image=image, ex_metadata={"lab": "canary"})
    volume = driver.create_volume(1, "canary_0")
    nodes, volumes = driver.list_nodes(), driver.list_volumes()
    assert [n.id for n in nodes] == [node.id], f"CANARY: list_nodes found {nodes} ({versions})"
    assert volume.id in {v.id for v in volumes}, f"CANARY: list_volumes found {volumes} ({versions})"
    assert nodes[0].extra["tags"] == {"Name": "canary", "lab": "canary"}, f"CANARY: tags lost ({versions})"


def test_images_are_selectable_by_owner_and_name_pattern_newest_last_build_wins(moto_ec2):
    driver = moto_ec2.driver()
    jammy = driver.list_images(ex_owner=OWNER_CANONICAL, ex_filters={"name": JAMMY})
    newest = max(jammy, key=lambda i: i.extra["creation_date"])
    assert len(jammy) == 2 and newest.name.endswith("-20240601")
    centos = driver.list_images(ex_filters={"name": "CentOS Stream 9 *"})
    rhel = driver.list_images(ex_filters={"name": "RHEL-9*"})
    assert len(centos) == 1 and len(rhel) == 1


def test_node_is_pending_then_running_with_an_sshd_that_takes_the_user_data_key_and_goes_at_terminate(moto_ec2):
    driver = moto_ec2.driver()
    moto_ec2.admin.set_delays(pending=1.0)
    key = paramiko.RSAKey.generate(2048)
    other = paramiko.RSAKey.generate(2048)
    image, size = pick(driver)
    node = driver.create_node(name="n1", size=size, image=image, ex_metadata={"lab": "t", "attempt": "a1"},
                              ex_userdata=user_data(f"{key.get_name()} {key.get_base64()} test@moto"))
    assert node.state == "pending"
    assert node.extra["tags"] == {"Name": "n1", "lab": "t", "attempt": "a1"}
    address = node.private_ips[0]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(moto_ec2.network["cidr"])
    assert node.public_ips == []  # public_ips "none" (the default)
    assert driver.list_nodes()[0].state == "pending"
    assert refused(address, moto_ec2.ssh_port)

    wait_until(lambda: driver.list_nodes()[0].state == "running", what="the instance to run", timeout=20)
    info = wait_until(lambda: next(i for i in moto_ec2.instances() if i["id"] == node.id and i["ssh_up"]),
                      what="the instance's sshd", timeout=20)
    with pytest.raises(paramiko.AuthenticationException):
        login(address, moto_ec2.ssh_port, other)
    client, host_key = login(address, moto_ec2.ssh_port, key)
    try:
        assert host_key == info["host_key"]
        assert run(client, READY_COMMAND) == 0  # cloud-init's `touch /.teuth_provisioned`, in the root
    finally:
        client.close()

    assert driver.destroy_node(node)
    wait_until(lambda: refused(address, moto_ec2.ssh_port), what="the sshd to go", timeout=20)
    assert [i["state"] for i in moto_ec2.instances()] == ["terminated"]


def test_volume_is_created_tagged_attached_detached_without_instance_id_and_deleted(moto_ec2):
    driver = moto_ec2.driver()
    moto_ec2.admin.set_delays(volume_creating=1.0)
    image, size = pick(driver)
    node = driver.create_node(name="v1", size=size, image=image)
    volume = driver.create_volume(2, "v1_0")
    assert volume.state == "creating" or volume.extra["state"] == "creating"
    assert driver.ex_create_tags(volume, {"lab": "t", "attempt": "a1"})  # libcloud's 0-based Tag.0 numbering
    with pytest.raises(Exception, match="IncorrectState"):
        driver.attach_volume(node, volume, "/dev/sdf")
    wait_until(lambda: next(v for v in moto_ec2.volumes() if v["id"] == volume.id)["status"] == "available",
               what="the volume to be available", timeout=20)
    assert driver.attach_volume(node, volume, "/dev/sdf")
    seen = next(v for v in moto_ec2.volumes() if v["id"] == volume.id)
    assert seen["attached_to"] == node.id and seen["tags"] == {"Name": "v1_0", "lab": "t", "attempt": "a1"}
    assert driver.detach_volume(volume)  # no InstanceId: EC2 finds the attachment
    assert next(v for v in moto_ec2.volumes() if v["id"] == volume.id)["attached_to"] is None
    assert driver.destroy_volume(volume)  # <return>true</return>
    assert volume.id not in {v["id"] for v in moto_ec2.volumes()}


def test_every_address_in_describe_instances_is_loopback(moto_ec2_factory):
    ec2 = moto_ec2_factory({"public_ips": "loopback"})
    driver = ec2.driver()
    image, size = pick(driver)
    driver.create_node(name="a1", size=size, image=image)
    driver.create_node(name="a2", size=size, image=image, ex_assign_public_ip=True)
    nodes = driver.list_nodes()
    addresses = [a for n in nodes for a in n.private_ips + n.public_ips]
    assert len(addresses) >= 3
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network("127.0.0.0/8") for a in addresses), addresses


def test_the_loopback_rule_refuses_any_other_address():
    assert require_loopback("127.3.4.5") == "127.3.4.5"
    for bad in ("10.0.0.4", "54.12.1.1", "::1", "localhost", ""):
        with pytest.raises(NotLoopback):
            require_loopback(bad)
