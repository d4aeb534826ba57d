"""The EC2 adapter over libcloud's stock driver, against a fake of the EC2 Query API on loopback that answers
with libcloud's recorded fixtures: what it sends, what it makes of the answers."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from lablease.config.lab import parse_lab_config
from lablease.provision.adapters import adapter_for
from lablease.provision.adapters.base import ErrorKind, ServerSpec
from lablease.provision.adapters.ec2 import ROOT_DISK_MAX, EC2Adapter, device_for, wildcard
from lablease.provision.hints import Resources
from lablease.provision.models import TAG_ATTEMPT, TAG_LAB, TAG_NODE
from lablease.provision.selection import select_image, select_security_groups, select_size
from tests.unit.ec2_http import FakeEC2

TAGS = {TAG_LAB: "lab.example", TAG_NODE: "smithi001", TAG_ATTEMPT: "1-abc"}


@pytest.fixture
def fake() -> Iterator[FakeEC2]:
    server = FakeEC2().start()
    yield server
    server.stop()


def adapter(fake: FakeEC2, **provider: Any) -> EC2Adapter:
    entry = {"driver": "ec2", "driver_args": fake.driver_args(), **provider}
    config = parse_lab_config({"lab_domain": "lab.example", "libcloud": {"providers": {"aws": entry}}})
    made = adapter_for(config.provider("aws"))
    assert isinstance(made, EC2Adapter)
    return made


def spec(a: EC2Adapter, networks: list | None = None, groups: list | None = None, disk: int = 20) -> ServerSpec:
    image = next(i for i in a.list_images())
    size = next(s for s in a.list_sizes() if s.name == "t3.micro")
    return ServerSpec(name="smithi001", image=image, size=size, networks=networks or [], security_groups=groups or [],
                      userdata="#cloud-config\n", metadata=dict(TAGS), root_disk=disk)


def test_requests_are_signed_with_signature_version_4_even_in_us_east_1(fake):
    adapter(fake).authenticate()
    assert fake.requests[0].headers["authorization"].startswith("AWS4-HMAC-SHA256 ")


def test_authenticate_asks_the_cloud_once_per_adapter(fake):
    a = adapter(fake)
    a.authenticate()
    a.authenticate()
    assert fake.actions() == ["DescribeAvailabilityZones"]


def test_images_are_chosen_per_os_by_owner_and_name_pattern_newest_first(fake):
    a = adapter(fake, ec2={"ami_owners": ["123456788908", "self"], "ami_name_patterns": {"test-1": "Test Image*"}})
    images = a.list_images()
    calls = fake.of("DescribeImages")
    assert [c.params["Owner.1"] for c in calls] == ["123456788908", "self"]
    assert calls[0].params["Filter.1.Name"] == "name" and calls[0].params["Filter.1.Value.1"] == "Test Image*"
    assert {i.os for i in images} == {"test-1"}
    assert images[0].id == "ami-57ba933a"  # the only one with a CreationDate, 2021: newest first
    assert select_image(images, "test", "1", []).id == "ami-57ba933a"


def test_an_os_with_no_pattern_is_a_config_error_that_names_the_missing_key(fake):
    a = adapter(fake, ec2={"ami_owners": ["self"], "ami_name_patterns": {"test-1": "Test Image*"}})
    with pytest.raises(Exception) as err:
        select_image(a.list_images(), "ubuntu", "22.04", [])
    assert err.value.kind is ErrorKind.CONFIG
    assert "ec2.ami_name_patterns" in err.value.message and "'ubuntu-22.04'" in err.value.message


def test_ec2_wildcards_star_and_question_mark_and_nothing_else():
    assert wildcard("ubuntu/images/*/ubuntu-jammy-22.04-amd64-server-*").match(
        "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240207.1")
    assert wildcard("a?c[1]").match("abc[1]") and not wildcard("a?c[1]").match("abc1")


def test_instance_type_is_the_smallest_x86_type_that_fits_the_hints_and_sends_no_request(fake):
    a = adapter(fake)
    sizes = a.list_sizes()
    assert fake.requests == []
    assert all(s.disk == ROOT_DISK_MAX for s in sizes)
    provider = a.provider
    chosen = select_size(sizes, Resources(disk=20, ram=8000, cpus=1, volume_count=0, volume_size=0),
                         provider.allow_sizes, provider.exclude_sizes)
    allowed = [s for s in sizes if s.ram >= 8000 and s.name.split(".")[0] in ("t3", "t3a", "m5", "m6i", "c5",
                                                                                "c6i", "r5", "r6i")]
    assert chosen.ram == min(s.ram for s in allowed) and chosen.vcpus >= 1
    assert not chosen.name.startswith(("a1.", "t4g.", "m6g."))  # never an ARM type for x86_64 AMIs


def test_run_instances_carries_tags_client_token_user_data_and_a_root_disk_of_the_hinted_size(fake):
    a = adapter(fake, ec2={"ami_owners": ["self"], "ami_name_patterns": {"test-1": "Test Image*"}})
    server = a.create_server(spec(a, disk=50))
    run = fake.of("RunInstances")[0].params
    tags = {run[k]: run[k.replace(".Key", ".Value")] for k in run if k.startswith("TagSpecification.1.Tag.")
            and k.endswith(".Key")}
    assert tags == {"Name": "smithi001", **TAGS} and run["TagSpecification.1.ResourceType"] == "instance"
    assert run["ClientToken"].startswith("lablease-") and len(run["ClientToken"]) <= 64
    assert run["UserData"] and run["InstanceType"] == "t3.micro"
    assert run["BlockDeviceMapping.1.DeviceName"] == "/dev/sda1" and run["BlockDeviceMapping.1.Ebs.VolumeSize"] == "50"
    assert "CreateTags" not in fake.actions()
    assert (server.id, server.state, server.metadata[TAG_ATTEMPT]) == ("i-2ba64342", "pending", "1-abc")


def test_the_same_attempt_sends_the_same_client_token_so_ec2_makes_no_second_instance(fake):
    a = adapter(fake, ec2={"ami_owners": ["self"], "ami_name_patterns": {"test-1": "Test Image*"}})
    a.create_server(spec(a))
    a.create_server(spec(a))
    first, second = (r.params["ClientToken"] for r in fake.of("RunInstances"))
    assert first == second


def test_a_subnet_named_by_its_name_tag_puts_security_groups_by_id_into_run_instances(fake):
    a = adapter(fake, ssh_interface="private_ips",
                ec2={"ami_owners": ["self"], "ami_name_patterns": {"test-1": "Test Image*"}, "subnet": "Test Subnet 1"})
    fake.bodies["DescribeSubnets"] = _subnets(("subnet-ce0e7ce5", "Test Subnet 1"))
    networks = a.list_networks()
    assert fake.of("DescribeSubnets")[0].params["Filter.1.Name"] == "tag:Name"
    groups = select_security_groups(a.list_security_groups(), ["sg-443d0a12"])  # by id
    a.create_server(spec(a, networks=networks, groups=groups))
    run = fake.of("RunInstances")[0].params
    assert run["SubnetId"] == "subnet-ce0e7ce5" and run["SecurityGroupId.1"] == "sg-443d0a12"
    assert "NetworkInterface.1.AssociatePublicIpAddress" not in run  # private_ips: no public address asked for


def test_a_subnet_that_does_not_exist_is_a_config_error_naming_the_key(fake):
    a = adapter(fake, ec2={"subnet": "subnet-missing"})  # also: two subnets of one Name tag are refused
    fake.bodies["DescribeSubnets"] = _subnets()
    with pytest.raises(Exception) as err:
        a.list_networks()
    info = a.classify(err.value)
    assert info.kind is ErrorKind.CONFIG and "ec2.subnet 'subnet-missing' does not exist" in info.message


def test_volumes_are_made_tagged_in_one_request_in_the_instance_zone_and_attached_as_sdf_sdg(fake):
    a = adapter(fake, ec2={"ami_owners": ["self"], "ami_name_patterns": {"test-1": "Test Image*"}})
    server = a.create_server(spec(a))
    vol0 = a.create_volume("smithi001_0", 10, dict(TAGS))
    create = fake.of("CreateVolume")[0].params
    assert create["AvailabilityZone"] == "us-east-1b"  # where run_instances put the instance
    assert create["TagSpecification.1.ResourceType"] == "volume" and create["VolumeType"] == "gp3"
    assert "CreateTags" not in fake.actions()
    assert vol0.name == "smithi001_0" and vol0.metadata[TAG_ATTEMPT] == "1-abc"
    a.attach_volume(server.id, vol0.id)
    vol1 = a.create_volume("smithi001_1", 10, dict(TAGS))
    a.attach_volume(server.id, vol1.id)
    assert [r.params["Device"] for r in fake.of("AttachVolume")] == ["/dev/sdf", "/dev/sdg"]
    assert [device_for(i) for i in (0, 1, 20, 21, 25)] == ["/dev/sdf", "/dev/sdg", "/dev/sdz", "/dev/sdb",
                                                             "/dev/xvdba"]


def test_listings_ask_only_for_lablease_resources_and_no_addresses(fake):
    a = adapter(fake)
    servers = a.list_servers()
    listing = fake.of("DescribeInstances")[0].params
    assert listing["Filter.1.Name"] == "tag-key" and listing["Filter.1.Value.1"] == TAG_LAB
    assert "DescribeAddresses" not in fake.actions()
    assert {s.state for s in servers} <= {"pending", "running", "error", "other"}  # never a terminated one
    volumes = a.list_volumes()
    assert fake.of("DescribeVolumes")[0].params["Filter.1.Value.1"] == TAG_LAB
    attached = next(v for v in volumes if v.id == "vol-b6c851ec")
    assert attached.attached_to == ["i-d334b4b3"]


def test_deleting_what_is_already_gone_succeeds(fake):
    a = adapter(fake)
    fake.fail("TerminateInstances", 400, "InvalidInstanceID.NotFound", "The instance ID 'i-1' does not exist")
    fake.fail("DeleteVolume", 400, "InvalidVolume.NotFound", "The volume 'vol-1' does not exist.")
    fake.fail("DetachVolume", 400, "IncorrectState", "vol-1 is in the 'available' state.")
    a.delete_server("i-1")
    a.delete_volume("vol-1")
    a.detach_volume(a.list_volumes()[0])


def test_an_unknown_instance_is_none(fake):
    fake.fail("DescribeInstances", 400, "InvalidInstanceID.NotFound", "The instance ID 'i-1' does not exist")
    assert adapter(fake).get_server("i-1") is None


def test_the_secret_key_is_never_in_reprs_or_errors(fake):
    a = adapter(fake)
    fake.fail("DescribeAvailabilityZones", 401, "AuthFailure", "AWS was not able to validate the credentials.")
    with pytest.raises(Exception) as err:
        a.authenticate()
    shown = " ".join([repr(a), a.account(), repr(a.provider), a.classify(err.value).message])
    assert "fake-secret-do-not-show" not in shown
    assert a.classify(err.value).kind is ErrorKind.AUTH


def _subnets(*subnets: tuple[str, str]) -> str:
    """A DescribeSubnets answer holding these (id, Name tag) subnets, all in vpc-532135d1, us-east-1a."""
    items = "".join(
        f"<item><subnetId>{sid}</subnetId><state>available</state><vpcId>vpc-532135d1</vpcId>"
        f"<cidrBlock>127.0.0.0/24</cidrBlock><availableIpAddressCount>250</availableIpAddressCount>"
        f"<availabilityZone>us-east-1a</availabilityZone><tagSet><item><key>Name</key><value>{name}</value></item>"
        f"</tagSet></item>" for sid, name in subnets)
    return (f'<DescribeSubnetsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId>'
            f"<subnetSet>{items}</subnetSet></DescribeSubnetsResponse>")


def test_two_subnets_of_one_name_are_ambiguous_not_a_silent_pick(fake):
    a = adapter(fake, ec2={"subnet": "lab"})
    fake.bodies["DescribeSubnets"] = _subnets(("subnet-1", "lab"), ("subnet-2", "lab"))
    with pytest.raises(Exception) as err:
        a.list_networks()
    assert "is ambiguous (2 subnets" in a.classify(err.value).message


def test_the_check_that_ec2_answers_again_after_an_outage_is_a_request_not_libclouds_tables(fake):
    adapter(fake).ping()
    assert fake.actions() == ["DescribeAvailabilityZones"]


def test_an_instance_and_a_volume_a_listing_misses_right_after_their_create_are_still_reported_until_deleted(fake):
    # EC2 is eventually consistent: the fixtures' DescribeInstances and DescribeVolumes never show what
    # RunInstances (i-2ba64342) and CreateVolume (vol-4d826724) made, as EC2 may not for a few seconds.
    a = adapter(fake, ec2={"ami_owners": ["self"], "ami_name_patterns": {"test-1": "Test Image*"}})
    server = a.create_server(spec(a))
    volume = a.create_volume("smithi001_0", 10, dict(TAGS))
    assert [s.state for s in a.list_servers() if s.id == server.id] == ["pending"]
    assert [v.state for v in a.list_volumes() if v.id == volume.id] == ["creating"]
    fake.fail("DescribeInstances", 400, "InvalidInstanceID.NotFound", "The instance ID does not exist")
    assert a.get_server(server.id).state == "pending"
    a.delete_volume(volume.id)
    a.delete_server(server.id)
    assert server.id not in {s.id for s in a.list_servers()} and volume.id not in {v.id for v in a.list_volumes()}


def test_what_was_made_is_forgotten_once_a_listing_shows_it_or_the_grace_is_over():
    from types import SimpleNamespace

    from lablease.provision.adapters.ec2_recent import RecentlyMade

    made = RecentlyMade(grace=3600)
    made.add(SimpleNamespace(id="i-1"))
    listed = [SimpleNamespace(id="i-1")]
    assert made.complete(listed) == listed and made.complete([]) == []  # shown once: no longer remembered
    expired = RecentlyMade(grace=-1)
    expired.add(SimpleNamespace(id="i-2"))
    assert expired.complete([]) == [] and expired.get("i-2") is None
