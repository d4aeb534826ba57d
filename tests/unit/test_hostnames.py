"""Canonical and short node names, as teuthology forms them; their case and their form."""

from __future__ import annotations

import re

import pytest

from lablease.hostnames import (
    HostNameError,
    canonicalize_hostname,
    check_host_name,
    check_lab_domain,
    check_short_name,
    decanonicalize_hostname,
    inventory_name,
    node_short_name,
    numbered_names,
)

DOMAIN = "front.example.com"


@pytest.mark.parametrize("given,expected", [
    ("node1", "node1.front.example.com"),
    ("node1.front.example.com", "node1.front.example.com"),
    ("node1.front.example.com.", "node1.front.example.com"),
    ("ubuntu@node1", "ubuntu@node1.front.example.com"),
    ("ubuntu@node1.front.example.com", "ubuntu@node1.front.example.com"),
])
def test_canonical_name_is_short_name_in_the_lab_domain(given, expected):
    assert canonicalize_hostname(given, DOMAIN) == expected


def test_a_user_can_be_added_and_one_in_the_name_wins():
    assert canonicalize_hostname("node1", DOMAIN, user="ubuntu") == "ubuntu@node1.front.example.com"
    assert canonicalize_hostname("root@node1", DOMAIN, user="ubuntu") == "root@node1.front.example.com"


def test_an_ip_address_never_gets_the_lab_domain():
    assert canonicalize_hostname("10.0.0.5", DOMAIN, user="ubuntu") == "ubuntu@10.0.0.5"
    assert canonicalize_hostname("10.0.0.5", DOMAIN) == "10.0.0.5"
    assert decanonicalize_hostname("ubuntu@10.0.0.5", DOMAIN) == "10.0.0.5"


def test_without_a_lab_domain_the_name_is_kept():
    assert canonicalize_hostname("node1", None) == "node1"
    assert decanonicalize_hostname("node1.other.org", None) == "node1.other.org"


@pytest.mark.parametrize("given", ["node1", "node1.front.example.com", "ubuntu@node1.front.example.com"])
def test_short_name_strips_user_and_lab_domain(given):
    assert decanonicalize_hostname(given, DOMAIN) == "node1"


def test_a_name_in_another_domain_keeps_that_domain():
    assert decanonicalize_hostname("node1.other.org", DOMAIN) == "node1.other.org"


def test_empty_names_are_refused():
    with pytest.raises(ValueError):
        canonicalize_hostname("  ", DOMAIN)


@pytest.mark.parametrize("given", ["ubuntu@", "ubuntu@.", "."])
def test_a_name_without_a_host_part_is_refused_not_turned_into_the_bare_domain(given):
    with pytest.raises(ValueError, match="no host name"):
        canonicalize_hostname(given, DOMAIN)


def test_numbered_names_are_zero_padded_and_widen_past_999():
    assert numbered_names("ovh", 3) == ["ovh001", "ovh002", "ovh003"]
    assert numbered_names("ovh", 2, start=999) == ["ovh0999", "ovh1000"]
    with pytest.raises(ValueError):
        numbered_names("ovh", 0)


# -- case: host names are DNS names, equal in any case (RFC 4343) ---------------------------------


@pytest.mark.parametrize("given,domain", [
    ("Node1", DOMAIN), ("NODE1.FRONT.EXAMPLE.COM", DOMAIN), ("node1.front.example.com", "Front.Example.com"),
    ("Node1.Front.Example.COM.", "front.example.com."),
])
def test_canonical_names_are_lower_case_and_keep_one_lab_domain(given, domain):
    assert canonicalize_hostname(given, domain) == "node1.front.example.com"


def test_the_user_keeps_its_case_as_unix_user_names_are_case_sensitive():
    assert canonicalize_hostname("Ubuntu@NODE1", DOMAIN) == "Ubuntu@node1.front.example.com"


@pytest.mark.parametrize("given", ["NODE1", "Node1.Front.Example.Com", "ubuntu@node1.FRONT.example.com."])
def test_short_names_are_lower_case_and_lose_the_lab_domain_in_any_case(given):
    assert decanonicalize_hostname(given, "Front.Example.com") == "node1"


def test_a_name_in_another_domain_is_only_lowered():
    assert decanonicalize_hostname("Node1.Other.ORG", DOMAIN) == "node1.other.org"


# -- form -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given,expected", [("Node-1", "node-1"), ("node1.Lab.Example.", "node1.lab.example"),
                                            ("10.0.0.5", "10.0.0.5")])
def test_a_host_name_of_the_right_form_comes_back_lowered_without_the_final_dot(given, expected):
    assert check_host_name(given) == expected


@pytest.mark.parametrize("given,says", [
    ("", "must not be empty"), ("node_1", "letters, digits"), ("*.lab", "wildcard"), ("node1..lab", "empty label"),
    (".node1", "empty label"), ("-node1", "starts or ends with '-'"), ("node1-", "starts or ends with '-'"),
    ("n" * 64, "at most 63"), (".".join(["a" * 63] * 4) + ".com", "at most 253"),
])
def test_malformed_names_are_refused_with_what_is_wrong(given, says):
    with pytest.raises(HostNameError, match=re.escape(says)):
        check_host_name(given)


@pytest.mark.parametrize("hostile", ["node1\nupdate add evil 1 A 1.2.3.4", "node1; rm -rf /", "nöde1"])
def test_a_hostile_name_is_never_quoted_back(hostile):
    with pytest.raises(HostNameError) as info:
        check_host_name(hostile)
    assert hostile not in str(info.value) and "\n" not in str(info.value)


def test_host_name_errors_are_plain_value_errors_without_http_statuses():
    with pytest.raises(ValueError) as info:
        check_host_name("node_1")
    assert not hasattr(info.value, "status")


def test_a_short_name_has_no_dots_and_the_error_says_what_to_give():
    assert check_short_name("NODE1") == "node1"
    with pytest.raises(HostNameError, match="outside the lab domain lab.example: give a short name such as node1"):
        check_short_name("node1.other.org", "lab.example")


@pytest.mark.parametrize("given", ["Node1", "node1.LAB.EXAMPLE", "ubuntu@Node1.lab.example."])
def test_node_short_name_is_the_lowered_checked_short_name(given):
    assert node_short_name(given, "Lab.Example") == "node1"


@pytest.mark.parametrize("given", ["", ".lab.example", "lab.example", "node1.other.example", "10.0.0.5", "node_1"])
def test_node_short_name_refuses_what_is_not_one_label_in_the_lab_domain(given):
    with pytest.raises(HostNameError):
        node_short_name(given, "lab.example")


def test_an_inventory_name_is_canonical_lowered_and_has_no_user():
    assert inventory_name("Node1", "Front.Example.com") == "node1.front.example.com"
    assert inventory_name("NODE1.other.org", None) == "node1.other.org"
    with pytest.raises(HostNameError, match="node names carry no user: give node1, not ubuntu@node1"):
        inventory_name("ubuntu@node1", DOMAIN)
    with pytest.raises(HostNameError, match="letters, digits"):
        inventory_name("node 1", DOMAIN)


def test_the_lab_domain_is_lowered_and_must_be_a_domain():
    assert check_lab_domain(" Front.Example.COM. ") == "front.example.com"
    with pytest.raises(HostNameError, match="must be a DNS domain such as front.example.com"):
        check_lab_domain("front_example.com")
