"""The engine on EC2, end to end and under faults: libcloud's stock EC2 driver over HTTP to a real moto server
(the moto harness: a real sshd per running instance, on 127.x), the DNS service in front of a real BIND, readiness
over real SSH. Each fault leaves no leak, no wrong report and never a second instance for one node.

The test worker's shared harness (the ``moto_ec2`` fixture: reset before and after each test) and one BIND and
DNS service for the module; each test checks that it leaves nothing behind.
"""

from __future__ import annotations

import pytest

from lablease.config.lab import LabConfig
from lablease.dns.client import DNSClient
from lablease.provision.context import ProvisionerOptions
from lablease.provision.devlab import ec2_lab_data, generate_lab_key
from lablease.provision.engine import Provisioner
from lablease.provision.errorkinds import ErrorKind
from lablease.provision.errors import ProvisionError
from lablease.provision.models import TAG_ATTEMPT, TAG_LAB, CreateRequest
from lablease.testing.moto_ec2 import READY_COMMAND, MotoEc2Handle

pytestmark = pytest.mark.integration

DOMAIN = "lab.example"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from lablease.testing.bind import start_bind
    from lablease.testing.dns import start_dns_service

    work = tmp_path_factory.mktemp("ec2-stack")
    bind = start_bind(work / "bind", DOMAIN, f"*.{DOMAIN}.")
    dns = start_dns_service(work / "dns", bind, allow_pattern=r"node[0-9]+")
    yield bind, dns
    dns.stop()
    bind.stop()


@pytest.fixture
def lab(stack, moto_ec2, tmp_path):
    """``make(**provider)``: a Provisioner of machine type ``aws`` on the worker's harness, with DNS."""
    bind, dns = stack
    ec2 = moto_ec2
    key = generate_lab_key(tmp_path / "lab_key")
    client = DNSClient(dns.update_url)
    made: list[Provisioner] = []

    def make(**provider) -> Provisioner:  # noqa: ANN003
        settings = {"ready_command": READY_COMMAND, "boot_timeout": 30, "ready_timeout": 30, "volume_timeout": 20,
                    "delete_timeout": 20, "api_timeout": 2, "api_retry_time": 20, **provider}
        config = LabConfig.model_validate(ec2_lab_data(ec2, key, nsupdate_url=dns.update_url, lab_domain=DOMAIN,
                                                       **settings))
        prov = Provisioner(config, "aws", client, ProvisionerOptions(token_cache_dir=None, poll_cap=0.5))
        made.append(prov)
        return prov

    yield make, ec2, bind
    for prov in made:
        prov.close()
    client.close()
    ec2.admin.clear_faults()
    assert_nothing_left(ec2)


def live(ec2: MotoEc2Handle) -> list[dict]:
    return [i for i in ec2.instances() if i["state"] != "terminated"]


def tagged_volumes(ec2: MotoEc2Handle) -> list[dict]:
    """The volumes lablease made (moto also lists each instance's untagged root volume)."""
    return [v for v in ec2.volumes() if TAG_LAB in v["tags"]]


def assert_nothing_left(ec2: MotoEc2Handle, bind=None, names: tuple[str, ...] = ()) -> None:  # noqa: ANN001
    assert live(ec2) == [] and ec2.volumes() == [], (live(ec2), ec2.volumes())
    if bind is not None:
        assert {n: bind.addresses(n) for n in names} == {n: set() for n in names}


def test_two_nodes_with_a_volume_each_are_ssh_ready_named_in_bind_and_destroy_leaves_nothing(lab):
    make, ec2, bind = lab
    prov = make()
    outcomes = prov.create_many([CreateRequest(n, "ubuntu", "22.04", {"volumes": {"count": 1, "size": 1}})
                                 for n in ("node1", "node2")], all_or_nothing=True)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    instances = {i["id"]: i for i in live(ec2)}
    assert len(instances) == 2 and ec2.admin.request_counts()["RunInstances"] == 2
    for node in (o.node for o in outcomes):
        assert node is not None and node.address.startswith("127.")
        assert bind.addresses(node.name) == {node.address}
        assert node.host_key == instances[node.server_id]["host_key"]  # the key the instance's sshd presents
        assert instances[node.server_id]["tags"][TAG_LAB] == DOMAIN
        assert node.image == "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240601"  # the newest jammy
    volumes = {v["tags"]["Name"]: v for v in tagged_volumes(ec2)}
    assert sorted(volumes) == ["node1_0", "node2_0"]
    for node in (o.node for o in outcomes):
        vol = volumes[f"{node.name}_0"]
        assert (vol["attached_to"], vol["device"]) == (node.server_id, "/dev/sdf")
        assert vol["tags"][TAG_ATTEMPT] == instances[node.server_id]["tags"][TAG_ATTEMPT]
    assert all(o.ok for o in prov.destroy_many(["node1", "node2"]))
    assert_nothing_left(ec2, bind, ("node1", "node2"))


def test_throttled_requests_are_repeated_by_lablease_and_make_exactly_one_instance(lab):
    make, ec2, bind = lab
    prov = make()
    for action, count in (("RunInstances", 2), ("CreateVolume", 1), ("DescribeInstances", 2), ("AttachVolume", 1)):
        ec2.admin.add_fault(action, "throttle", count=count)
    node = prov.create("node1", "ubuntu", "22.04", {"volumes": {"count": 1, "size": 1}})
    assert node.attempts == 1 and [i["id"] for i in live(ec2)] == [node.server_id]
    assert ec2.admin.request_counts()["RunInstances"] == 3  # two throttled, one made the instance
    assert len(tagged_volumes(ec2)) == 1
    prov.destroy("node1")
    assert_nothing_left(ec2, bind, ("node1",))


@pytest.mark.parametrize("action, fault, volumes", [("RunInstances", "capacity", 0),
                                                    ("RunInstances", "instance_limit", 0),
                                                    ("CreateVolume", "volume_limit", 1)])
def test_no_capacity_or_quota_fails_the_node_at_once_as_quota_and_rolls_back_everything(lab, action, fault, volumes):
    make, ec2, bind = lab
    prov = make()
    ec2.admin.add_fault(action, fault)
    with pytest.raises(ProvisionError) as err:
        prov.create("node1", "ubuntu", "22.04", {"volumes": {"count": volumes, "size": 1}})
    assert err.value.kind is ErrorKind.QUOTA, err.value
    assert ec2.admin.request_counts()[action] == 1  # not repeated, no fresh attempt
    assert_nothing_left(ec2, bind, ("node1",))


def test_a_bad_ami_is_a_config_error_that_is_not_retried(lab):
    make, ec2, bind = lab
    prov = make()
    ec2.admin.add_fault("RunInstances", "bad_ami")
    with pytest.raises(ProvisionError) as err:
        prov.create("node1", "ubuntu", "22.04", {})
    assert err.value.kind is ErrorKind.CONFIG and "InvalidAMIID.NotFound" in err.value.message
    assert ec2.admin.request_counts()["RunInstances"] == 1
    assert_nothing_left(ec2, bind, ("node1",))


def test_internal_errors_end_an_attempt_and_a_fresh_attempt_makes_the_only_instance(lab):
    make, ec2, bind = lab
    prov = make()
    ec2.admin.add_fault("RunInstances", "internal", count=1)   # EC2 did nothing: no instance to adopt
    ec2.admin.add_fault("DescribeVolumes", "unavailable", count=2)
    node = prov.create("node1", "ubuntu", "22.04", {"volumes": {"count": 1, "size": 1}})
    assert node.attempts == 2 and [i["id"] for i in live(ec2)] == [node.server_id]
    prov.destroy("node1")
    assert_nothing_left(ec2, bind, ("node1",))


@pytest.mark.parametrize("action, mode", [("RunInstances", "reset"), ("RunInstances", "error"),
                                          ("CreateVolume", "reset")])
def test_a_create_whose_answer_was_lost_is_found_by_its_tags_and_adopted_never_made_twice(lab, action, mode):
    make, ec2, bind = lab
    prov = make()
    ec2.admin.add_fault(action, "lost", count=1, mode=mode)
    node = prov.create("node1", "ubuntu", "22.04", {"volumes": {"count": 2, "size": 1}})
    assert node.attempts == 1
    assert ec2.admin.request_counts()[action] == (1 if action == "RunInstances" else 2)
    assert [i["id"] for i in live(ec2)] == [node.server_id]
    assert sorted(v["tags"]["Name"] for v in tagged_volumes(ec2)) == ["node1_0", "node1_1"]
    assert sorted(node.volume_ids) == sorted(v["id"] for v in tagged_volumes(ec2))
    prov.destroy("node1")
    assert_nothing_left(ec2, bind, ("node1",))


def test_a_boot_slower_than_boot_timeout_fails_as_a_timeout_and_leaves_nothing(lab):
    make, ec2, bind = lab
    prov = make(boot_timeout=1.5, launch_retries=1)
    ec2.admin.set_delays(pending=30)
    with pytest.raises(ProvisionError) as err:
        prov.create("node1", "ubuntu", "22.04", {"volumes": {"count": 1, "size": 1}})
    assert err.value.kind is ErrorKind.TIMEOUT and "not running" in err.value.message
    assert ec2.admin.request_counts()["RunInstances"] == 1
    assert_nothing_left(ec2, bind, ("node1",))


def test_a_node_whose_ssh_is_never_ready_fails_after_ready_timeout_and_leaves_nothing(lab):
    make, ec2, bind = lab
    prov = make(ready_command="false", ready_timeout=2, launch_retries=1)
    with pytest.raises(ProvisionError) as err:
        prov.create("node1", "ubuntu", "22.04", {})
    assert err.value.stage.value == "ssh" and err.value.kind is ErrorKind.TIMEOUT, err.value
    assert ec2.admin.request_counts()["RunInstances"] == 1
    assert_nothing_left(ec2, bind, ("node1",))


def test_config_check_connect_signs_in_to_ec2_and_names_the_ami_and_instance_type_it_would_use(moto_ec2, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from lablease.cli import app

    ec2 = moto_ec2
    data = ec2_lab_data(ec2, generate_lab_key(tmp_path / "lab_key"), lab_domain=DOMAIN)
    path = tmp_path / "teuthology.yaml"
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["config", "check", "--connect", "--config", str(path)])
    lines = [line for line in result.output.splitlines() if line.startswith(("ok", "FAIL", "warn"))]
    assert result.exit_code == 0, result.output
    assert any(line.startswith("ok    aws: auth: authenticated: access key id ending") for line in lines), lines
    assert any("aws: image: 'ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240601'" in line
               for line in lines), lines
    assert any(line.startswith("ok    aws: size: 'm5.large'") for line in lines), lines
    assert ec2.driver_args()["secret"] not in result.output


def test_the_ec2_adapter_reads_an_instances_console_output_with_get_console_output(lab):
    make, ec2, bind = lab
    prov = make()
    node = prov.create("node1", "ubuntu", "22.04", {})
    text = prov.adapter.console_output(node.server_id)
    assert text is not None and "Linux version" in text  # moto's sample console, base64-decoded
    assert ec2.admin.request_counts()["GetConsoleOutput"] == 1
    prov.destroy("node1")
    assert_nothing_left(ec2, bind, ("node1",))
