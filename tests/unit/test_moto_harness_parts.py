"""The moto EC2 harness's request corrections, fault rules and settings, without a server."""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET

import pytest

from lablease.testing.moto_faults import ERRORS, FaultBook, FaultRule, error_answer, rule_answer
from lablease.testing.moto_request import (
    detach_names_instance, launch_into_subnet, no_public_address, renumber_lists,
)
from lablease.testing.moto_settings import LOOPBACK, MotoSettings, NotLoopback, random_cidr


def test_zero_based_lists_are_numbered_from_one_in_their_order():
    params = {"Action": "CreateTags", "ResourceId.0": "i-1", "Tag.0.Key": "a", "Tag.0.Value": "1",
              "Tag.1.Key": "b", "Tag.1.Value": "2"}
    out, changed = renumber_lists(params)
    assert changed
    assert out == {"Action": "CreateTags", "ResourceId.1": "i-1", "Tag.1.Key": "a", "Tag.1.Value": "1",
                   "Tag.2.Key": "b", "Tag.2.Value": "2"}


def test_nested_lists_are_numbered_within_their_own_parent():
    params = {"Filter.0.Name": "tag:a", "Filter.0.Value.0": "x", "Filter.0.Value.1": "y",
              "Filter.1.Name": "tag:b", "Filter.1.Value.5": "z"}
    out, _ = renumber_lists(params)
    assert out == {"Filter.1.Name": "tag:a", "Filter.1.Value.1": "x", "Filter.1.Value.2": "y",
                   "Filter.2.Name": "tag:b", "Filter.2.Value.1": "z"}


def test_one_based_lists_and_values_are_left_alone():
    params = {"TagSpecification.1.Tag.1.Key": "Name", "TagSpecification.1.Tag.1.Value": "0", "Version": "2016-11-15"}
    assert renumber_lists(params) == (params, False)


def test_run_instances_without_a_subnet_goes_to_the_harness_subnet():
    out, changed = launch_into_subnet({"Action": "RunInstances", "ImageId": "ami-1"}, "subnet-h")
    assert changed and out["SubnetId"] == "subnet-h"
    named = {"Action": "RunInstances", "SubnetId": "subnet-x"}
    assert launch_into_subnet(named, "subnet-h") == (named, False)


def test_a_primary_interface_without_a_subnet_gets_the_harness_subnet():
    params = {"Action": "RunInstances", "NetworkInterface.1.DeviceIndex": "0",
              "NetworkInterface.1.AssociatePublicIpAddress": "true"}
    out, changed = launch_into_subnet(params, "subnet-h")
    assert changed and out["NetworkInterface.1.SubnetId"] == "subnet-h" and "SubnetId" not in out


def test_detach_without_instance_id_names_the_instance_it_is_attached_to():
    out, changed = detach_names_instance({"Action": "DetachVolume", "VolumeId": "vol-1"}, {"vol-1": "i-9"}.get)
    assert changed and out["InstanceId"] == "i-9"
    loose = {"Action": "DetachVolume", "VolumeId": "vol-2"}
    assert detach_names_instance(loose, {}.get) == (loose, False)  # moto answers IncorrectState itself


def test_no_public_address_turns_a_request_for_one_off():
    params = {"Action": "RunInstances", "NetworkInterface.1.AssociatePublicIpAddress": "true"}
    out, changed = no_public_address(params)
    assert changed and out["NetworkInterface.1.AssociatePublicIpAddress"] == "false"


@pytest.mark.parametrize("kind", sorted(ERRORS))
def test_each_error_kind_is_ec2s_error_document_with_its_status(kind):
    status, body = rule_answer(FaultRule("RunInstances", kind))
    code, expected_status, _ = ERRORS[kind]
    root = ET.fromstring(body)
    assert status == expected_status and root.tag == "Response"
    assert root.findtext("Errors/Error/Code") == code and root.findtext("RequestID")


def test_server_errors_are_500s_and_throttling_is_503():
    assert ERRORS["throttle"][:2] == ("RequestLimitExceeded", 503)
    assert ERRORS["capacity"][1] == ERRORS["internal"][1] == 500
    assert {ERRORS[k][1] for k in ("instance_limit", "volume_limit", "bad_ami")} == {400}


def test_a_rule_fires_count_times_then_lets_requests_through():
    book = FaultBook([{"action": "Run*", "kind": "throttle", "count": 2}])
    assert [book.pick("RunInstances", lost=False) is not None for _ in range(3)] == [True, True, False]
    assert book.pick("DescribeInstances", lost=False) is None
    assert book.snapshot()["rules"][0]["fired"] == 2


def test_lost_answer_rules_are_picked_after_the_action_only():
    book = FaultBook([{"action": "RunInstances", "kind": "lost", "mode": "error"}])
    assert book.pick("RunInstances", lost=False) is None
    assert book.pick("RunInstances", lost=True).mode == "error"
    assert rule_answer(book.rules[0])[0] == 500


def test_probability_follows_the_seed():
    rules = [{"action": "*", "kind": "internal", "probability": 0.5}]
    book_a, book_b = FaultBook(rules, seed=7), FaultBook(rules, seed=7)
    seq_a = [book_a.pick("X", lost=False) is not None for _ in range(40)]
    seq_b = [book_b.pick("X", lost=False) is not None for _ in range(40)]
    assert seq_a == seq_b and 0 < sum(seq_a) < 40


@pytest.mark.parametrize("bad", [{"kind": "meteor"}, {"kind": "lost", "mode": "never"}, {"kind": "internal",
                                                                                           "probability": 2}])
def test_a_bad_rule_is_refused(bad):
    with pytest.raises(ValueError):
        FaultBook([{"action": "X", **bad}])


def test_error_message_is_escaped():
    assert b"&lt;x&gt;" in error_answer("InternalError", "<x>")


def test_harness_subnets_are_random_loopback_24s_apart_from_devclouds():
    for _ in range(50):
        net = ipaddress.ip_network(random_cidr())
        assert net.prefixlen == 24 and net.subnet_of(LOOPBACK) and 2 <= net.network_address.packed[1] <= 100


def test_settings_refuse_a_subnet_outside_loopback():
    with pytest.raises(NotLoopback):
        MotoSettings(cidr="10.0.0.0/24")
    with pytest.raises(ValueError):
        MotoSettings(public_ips="elastic")


def test_the_public_block_is_the_next_one_and_stays_in_loopback():
    assert MotoSettings(cidr="127.5.6.0/24").public_cidr == "127.5.7.0/24"
    assert MotoSettings(cidr="127.255.255.0/24").public_cidr == "127.255.254.0/24"
    assert MotoSettings(cidr="127.5.6.0/24").vpc_cidr == "127.5.0.0/16"


def test_a_missing_sshd_fails_the_harness_start_naming_the_package(tmp_path):
    from lablease.testing.components import MissingComponent
    from lablease.testing.moto_ec2 import start_moto_ec2

    with pytest.raises(MissingComponent, match="openssh-server"):
        start_moto_ec2(tmp_path, MotoSettings(sshd_path=str(tmp_path / "no-sshd")))
