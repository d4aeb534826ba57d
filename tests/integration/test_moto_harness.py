"""The moto EC2 harness answers stock libcloud as EC2 does: listings, lifecycle, real SSH, volumes, faults.

Every client here is libcloud's own EC2NodeDriver (SigV4) over HTTP to a real moto server process;
every address it is given or connects to must be in 127.0.0.0/8.
"""

from __future__ import annotations

import getpass
import ipaddress
import re
import socket
import xml.etree.ElementTree as ET

import httpx
import libcloud
import paramiko
import pytest
import requests
from libcloud.common.types import InvalidCredsError
from libcloud.compute.drivers.ec2 import EC2NetworkSubnet, EC2NodeDriver

from lablease.testing.moto_ec2 import READY_COMMAND
from lablease.testing.moto_settings import OWNER_CANONICAL, NotLoopback, require_loopback
from lablease.testing.waiting import wait_until

pytestmark = pytest.mark.integration

AUTH = ("AWS4-HMAC-SHA256 Credential=AKIAMOTOHARNESS00001/20260101/us-east-1/ec2/aws4_request, "
        "SignedHeaders=host, Signature=0")  # moto checks no signature; the scope says EC2 in us-east-1
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


def test_account_limits_answer_only_the_attributes_asked_for(moto_ec2):
    limits = moto_ec2.driver().ex_get_limits()["resource"]
    assert set(limits) == {"max-instances", "max-elastic-ips", "vpc-max-elastic-ips"}


def test_key_pairs_subnets_and_security_groups_are_listed_as_on_ec2(moto_ec2):
    driver = moto_ec2.driver()
    key = paramiko.RSAKey.generate(2048)
    pair = driver.import_key_pair_from_string("lab", f"ssh-rsa {key.get_base64()} lab")
    assert [k.name for k in driver.list_key_pairs()] == ["lab"] and pair.fingerprint
    assert [s.id for s in driver.ex_list_subnets()] == [moto_ec2.network["subnet_id"]]
    assert [n.id for n in driver.ex_list_networks()] == [moto_ec2.network["vpc_id"]]
    assert [g.name for g in driver.ex_get_security_groups()] == ["default"]


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
    moto_ec2.admin.set_delays(pending=600)  # pending until the test ends it
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

    moto_ec2.admin.finish_waits()
    wait_until(lambda: driver.list_nodes()[0].state == "running", what="the instance to run", timeout=20)
    info = wait_until(lambda: next((i for i in moto_ec2.instances() if i["id"] == node.id and i["ssh_up"]), None),
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


def test_parallel_launches_get_distinct_loopback_addresses_and_each_its_own_sshd(moto_ec2):
    from concurrent.futures import ThreadPoolExecutor

    moto_ec2.reset(pending_seconds=0.2)
    image, size = pick(moto_ec2.driver())

    def launch(i: int):
        return moto_ec2.driver().create_node(name=f"p{i}", size=size, image=image, ex_metadata={"lab": "par"})

    with ThreadPoolExecutor(8) as pool:
        nodes = list(pool.map(launch, range(8)))
    addresses = [n.private_ips[0] for n in nodes]
    assert len(set(addresses)) == 8
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network(moto_ec2.network["cidr"]) for a in addresses)
    up = wait_until(lambda: [i for i in moto_ec2.instances() if i["ssh_up"]] if all(
        i["ssh_up"] for i in moto_ec2.instances()) else None, what="8 sshds", timeout=30)
    assert len({i["host_key"] for i in up}) == 8
    assert not any(refused(a, moto_ec2.ssh_port) for a in addresses)


def test_the_imported_key_pair_logs_in_too(moto_ec2):
    moto_ec2.reset(pending_seconds=0)
    driver = moto_ec2.driver()
    key = paramiko.RSAKey.generate(2048)
    driver.import_key_pair_from_string("lab", f"ssh-rsa {key.get_base64()} lab")
    image, size = pick(driver)
    node = driver.create_node(name="kp", size=size, image=image, ex_keyname="lab")
    wait_until(lambda: next((i for i in moto_ec2.instances() if i["ssh_up"]), None), what="the sshd", timeout=20)
    client, _ = login(node.private_ips[0], moto_ec2.ssh_port, key)
    client.close()


def test_volume_is_created_tagged_attached_detached_without_instance_id_and_deleted(moto_ec2):
    driver = moto_ec2.driver()
    image, size = pick(driver)
    node = driver.create_node(name="v1", size=size, image=image)
    moto_ec2.admin.set_delays(volume_creating=600)  # creating until the test ends it
    volume = driver.create_volume(2, "v1_0")
    assert volume.extra["state"] == "creating"
    assert driver.ex_create_tags(volume, {"lab": "t", "attempt": "a1"})  # libcloud's 0-based Tag.0 numbering
    assert {v.id: v.extra["state"] for v in driver.list_volumes()}[volume.id] == "creating"
    with pytest.raises(Exception, match="IncorrectState"):
        driver.attach_volume(node, volume, "/dev/sdf")
    moto_ec2.admin.finish_waits()
    assert {v.id: v.extra["state"] for v in driver.list_volumes()}[volume.id] == "available"
    assert driver.attach_volume(node, volume, "/dev/sdf")
    seen = next(v for v in moto_ec2.volumes() if v["id"] == volume.id)
    assert seen["attached_to"] == node.id and seen["tags"] == {"Name": "v1_0", "lab": "t", "attempt": "a1"}
    with pytest.raises(Exception, match="VolumeInUse"):
        driver.destroy_volume(volume)  # attached: EC2 refuses
    assert driver.detach_volume(volume)  # no InstanceId: EC2 finds the attachment
    assert next(v for v in moto_ec2.volumes() if v["id"] == volume.id)["attached_to"] is None
    with pytest.raises(Exception, match="IncorrectState"):
        driver.detach_volume(volume)  # attached nowhere now
    assert driver.destroy_volume(volume)  # <return>true</return>
    assert volume.id not in {v["id"] for v in moto_ec2.volumes()}


def test_every_address_in_describe_instances_is_loopback_and_a_public_one_reaches_the_same_sshd(moto_ec2):
    ec2 = moto_ec2
    ec2.reset(public_ips="loopback")
    driver = ec2.driver()
    image, size = pick(driver)
    key = paramiko.RSAKey.generate(2048)
    driver.create_node(name="a1", size=size, image=image)
    node = driver.create_node(name="a2", size=size, image=image, ex_assign_public_ip=True,
                              ex_userdata=user_data(f"{key.get_name()} {key.get_base64()} test@moto"))
    nodes = driver.list_nodes()
    addresses = [a for n in nodes for a in n.private_ips + n.public_ips]
    assert len(addresses) == 3
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network("127.0.0.0/8") for a in addresses), addresses
    raw = httpx.get(ec2.endpoint, params={"Action": "DescribeInstances", "Version": "2016-11-15"},
                    headers={"Authorization": AUTH}).text
    quads = re.findall(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])", raw)
    assert len(quads) >= 3 and all(ipaddress.ip_address(q) in ipaddress.ip_network("127.0.0.0/8") for q in quads)
    public = next(n for n in nodes if n.id == node.id).public_ips[0]
    assert ipaddress.ip_address(public) in ipaddress.ip_network(ec2.network["public_cidr"])
    info = wait_until(lambda: next((i for i in ec2.instances() if i["id"] == node.id and i["ssh_up"]), None),
                      what="the instance's sshd", timeout=20)
    client, host_key = login(public, ec2.ssh_port, key)
    client.close()
    assert host_key == info["host_key"]


def test_with_public_ips_none_an_instance_asking_for_one_gets_only_its_private_address(moto_ec2):
    driver = moto_ec2.driver()
    image, size = pick(driver)
    node = driver.create_node(name="p", size=size, image=image, ex_assign_public_ip=True)
    assert node.public_ips == [] and driver.list_nodes()[0].public_ips == []


def test_an_instance_cannot_be_launched_outside_the_harness_subnet(moto_ec2):
    driver = moto_ec2.driver()
    image, size = pick(driver)
    elsewhere = EC2NetworkSubnet("subnet-0123456789abcdef0", "elsewhere", "available")
    with pytest.raises(Exception, match="InvalidSubnetID.NotFound"):
        driver.create_node(name="x", size=size, image=image, ex_subnet=elsewhere)
    assert moto_ec2.instances() == []


def test_an_unknown_image_is_invalid_ami_id_not_found_as_on_ec2(moto_ec2):
    driver = moto_ec2.driver()
    image, size = pick(driver)
    image.id = "ami-00000000000000000"
    with pytest.raises(Exception, match="InvalidAMIID.NotFound"):
        driver.create_node(name="x", size=size, image=image)
    assert moto_ec2.instances() == []


def test_a_request_signed_for_another_region_is_refused(moto_ec2):
    args = {**moto_ec2.driver_args(), "region": "us-west-2"}
    driver = EC2NodeDriver(args.pop("key"), args.pop("secret"), **args)
    with pytest.raises(InvalidCredsError, match="AuthFailure"):
        driver.list_nodes()


FAULTS = [
    ("throttle", "RunInstances", "RequestLimitExceeded", 503),
    ("capacity", "RunInstances", "InsufficientInstanceCapacity", 500),
    ("instance_limit", "RunInstances", "InstanceLimitExceeded", 400),
    ("bad_ami", "RunInstances", "InvalidAMIID.NotFound", 400),
    ("internal", "RunInstances", "InternalError", 500),
    ("volume_limit", "CreateVolume", "VolumeLimitExceeded", 400),
    ("throttle", "DescribeInstances", "RequestLimitExceeded", 503),
]


@pytest.mark.parametrize("kind, action, code, status", FAULTS, ids=[f"{f[1]}-{f[0]}" for f in FAULTS])
def test_each_fault_kind_answers_as_ec2_does_once_and_creates_nothing(moto_ec2, kind, action, code, status):
    driver = moto_ec2.driver()
    image, size = pick(driver)
    calls = {"RunInstances": lambda: driver.create_node(name="f", size=size, image=image),
             "CreateVolume": lambda: driver.create_volume(1, "f_0"),
             "DescribeInstances": driver.list_nodes}
    moto_ec2.admin.add_fault(action, kind, count=1)
    with pytest.raises(Exception) as failure:
        calls[action]()
    assert code in str(failure.value) and getattr(failure.value, "code", status) == status
    assert moto_ec2.instances() == [] and [v for v in moto_ec2.volumes() if v["tags"]] == []
    calls[action]()  # count=1: the next one goes through
    assert moto_ec2.admin.faults()["rules"][0]["fired"] == 1


def test_an_instance_limit_refuses_launches_beyond_it_as_ec2_does_until_an_instance_is_terminated(moto_ec2):
    moto_ec2.reset(max_instances=2, pending_seconds=0)
    driver = moto_ec2.driver()
    image, size = pick(driver)
    first, _ = (driver.create_node(name=f"l{i}", size=size, image=image) for i in range(2))
    with pytest.raises(Exception) as failure:
        driver.create_node(name="l2", size=size, image=image)
    assert "InstanceLimitExceeded" in str(failure.value)
    assert len(moto_ec2.instances()) == 2
    driver.destroy_node(first)  # terminated instances do not count
    driver.create_node(name="l3", size=size, image=image)
    assert sorted(i["state"] for i in moto_ec2.instances()) == ["running", "running", "terminated"]


def test_a_fault_answer_is_ec2s_error_document(moto_ec2):
    moto_ec2.admin.add_fault("Describe*", "throttle")
    resp = httpx.get(moto_ec2.endpoint, params={"Action": "DescribeVolumes", "Version": "2016-11-15"},
                     headers={"Authorization": AUTH})
    root = ET.fromstring(resp.content)
    assert resp.status_code == 503 and root.tag == "Response"  # no namespace, as EC2's
    assert root.findtext("Errors/Error/Code") == "RequestLimitExceeded"
    assert root.findtext("Errors/Error/Message") and root.findtext("RequestID")


def test_moto_errors_keep_their_code_for_libcloud(moto_ec2):
    driver = moto_ec2.driver()
    with pytest.raises(Exception, match="InvalidVolume.NotFound"):
        driver.destroy_volume(type("V", (), {"id": "vol-0123456789abcdef0"})())


def test_run_instances_with_a_client_token_is_idempotent_as_on_ec2(moto_ec2):
    driver = moto_ec2.driver()
    image, size = pick(driver)
    moto_ec2.admin.add_fault("RunInstances", "lost", mode="reset", count=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        driver.create_node(name="t", size=size, image=image, ex_clienttoken="attempt-1")
    node = driver.create_node(name="t", size=size, image=image, ex_clienttoken="attempt-1")  # the retry
    assert [i["id"] for i in moto_ec2.instances()] == [node.id]
    with pytest.raises(Exception, match="IdempotentParameterMismatch"):
        driver.create_node(name="other", size=size, image=image, ex_clienttoken="attempt-1")


@pytest.mark.parametrize("mode", ["reset", "error"])
def test_a_lost_create_answer_leaves_the_instance_in_moto_while_the_client_saw_a_failure(moto_ec2, mode):
    driver = moto_ec2.driver()
    image, size = pick(driver)
    moto_ec2.admin.add_fault("RunInstances", "lost", mode=mode, count=1)
    expected = requests.exceptions.ConnectionError if mode == "reset" else Exception
    with pytest.raises(expected) as failure:
        driver.create_node(name="lost", size=size, image=image, ex_metadata={"attempt": "a-lost"})
    if mode == "error":
        assert "InternalError" in str(failure.value)
    [made] = moto_ec2.instances()
    assert made["tags"]["attempt"] == "a-lost"
    found = driver.list_nodes(ex_filters={"tag:attempt": "a-lost"})  # as an adapter finds it again
    assert [n.id for n in found] == [made["id"]]


def test_admin_refuses_an_unknown_fault_kind(moto_ec2):
    with pytest.raises(RuntimeError, match="400"):
        moto_ec2.admin.add_fault("RunInstances", "meteor")
    assert moto_ec2.admin.faults()["rules"] == []


def test_stopping_the_harness_stops_every_sshd(moto_ec2_factory):
    ec2 = moto_ec2_factory({"pending_seconds": 0})
    driver = ec2.driver()
    image, size = pick(driver)
    node = driver.create_node(name="s", size=size, image=image)
    wait_until(lambda: next((i for i in ec2.instances() if i["ssh_up"]), None), what="the sshd", timeout=20)
    address = node.private_ips[0]
    assert not refused(address, ec2.ssh_port)
    ec2.stop()
    assert refused(address, ec2.ssh_port)


def test_the_loopback_rule_refuses_any_other_address():
    assert require_loopback("127.3.4.5") == "127.3.4.5"
    for bad in ("10.0.0.4", "54.12.1.1", "::1", "localhost", ""):
        with pytest.raises(NotLoopback):
            require_loopback(bad)
