"""Canonical and short node names, as teuthology forms them."""

from __future__ import annotations

import pytest

from lablease.hostnames import canonicalize_hostname, decanonicalize_hostname, numbered_names

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
