"""Name and address checks of the DNS service: what passes, what is refused, and with which status."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lablease.dns.validation import Rejection, check_addresses, check_name

ZONE = "lab.example"
ALLOW = re.compile(r"node[0-9]+")


def reject(raw, status: int, reason: str) -> Rejection:
    with pytest.raises(Rejection) as info:
        check_name(raw, ZONE, ALLOW)
    assert (info.value.status, info.value.reason) == (status, reason)
    assert "\n" not in info.value.message
    return info.value


@pytest.mark.parametrize("raw", ["node1", "NODE1", "node1.lab.example", "node1.lab.example.", "Node42.LAB.example"])
def test_short_and_in_zone_names_become_the_same_absolute_name(raw):
    host = check_name(raw, ZONE, ALLOW)
    assert host.fqdn == f"{host.relative}.lab.example."
    assert host.relative.startswith("node")


@pytest.mark.parametrize("raw", ["node1\n", "node1\nupdate add evil.lab.example 1 A 1.2.3.4", "node1 ", "node1;",
                                 "node1'", 'node1"', "*.lab.example", "*", "node1\r", "nöde1", "node_1"])
def test_names_with_characters_outside_ldh_are_refused_without_echo(raw):
    error = reject(raw, 400, "bad_name")
    assert len(raw) < 2 or raw.strip() not in error.message


def test_a_wildcard_is_named_as_such():
    assert "wildcard" in reject("*.lab.example", 400, "bad_name").message


@pytest.mark.parametrize("raw,reason", [
    ("node1.evil", "outside_zone"), ("node1.other.org", "outside_zone"), ("node1.lab.example.org", "outside_zone"),
    ("lab.example", "apex"), ("lab.example.", "apex"),
    ("node1x", "not_allowed"), ("xnode1", "not_allowed"), ("node", "not_allowed"), ("node1.sub.lab.example", "not_allowed"),
])
def test_names_outside_the_pattern_or_zone_are_forbidden(raw, reason):
    reject(raw, 403, reason)


def test_labels_over_63_and_names_over_253_characters_are_refused():
    assert "63" in reject("node" + "1" * 60, 400, "bad_name").message
    long_name = ".".join(["a" * 63] * 4) + ".lab.example"
    assert "253" in reject(long_name, 400, "bad_name").message


@pytest.mark.parametrize("raw", ["node1..lab.example", ".node1", "-node1", "node1-", "node1.-x.lab.example"])
def test_empty_labels_and_edge_hyphens_are_refused(raw):
    reject(raw, 400, "bad_name")


@pytest.mark.parametrize("raw", [None, ""])
def test_a_missing_name_is_a_bad_request(raw):
    reject(raw, 400, "missing_name")


@given(st.text(max_size=30))
def test_any_accepted_name_fully_matches_the_pattern_and_is_plain_ldh(raw):
    try:
        host = check_name(raw, ZONE, ALLOW)
    except Rejection:
        return
    assert ALLOW.fullmatch(host.relative)
    assert re.fullmatch(r"[a-z0-9.-]+", host.fqdn)


def test_addresses_are_canonical_deduplicated_and_sorted():
    assert check_addresses(["fd00::1", "10.0.0.2", "10.0.0.1", "FD00:0::1"], 32) == ["10.0.0.1", "10.0.0.2", "fd00::1"]


@pytest.mark.parametrize("raw", [["fe80::1%eth0"], ["fe80::1%eth0\nupdate add x"], ["10.0.0.1:80"], ["[fd00::1]"],
                                 ["example.com"], ["10.0.0.256"], [" 10.0.0.1"], ["10.0.0.1\n"], [""], ["1"]])
def test_non_addresses_ports_and_zones_are_refused(raw):
    with pytest.raises(Rejection) as info:
        check_addresses(raw, 32)
    assert (info.value.status, info.value.reason) == (400, "bad_address")
    assert len(raw[0].strip()) < 2 or raw[0].strip() not in info.value.message


def test_too_many_or_no_addresses_are_refused():
    with pytest.raises(Rejection) as info:
        check_addresses([f"10.0.0.{i}" for i in range(33)], 32)
    assert info.value.reason == "too_many_addresses"
    with pytest.raises(Rejection) as info:
        check_addresses([], 32)
    assert info.value.reason == "missing_address"
