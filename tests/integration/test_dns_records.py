"""`GET /records` and `DNSClient.names()`: the lab's names in the zone, read by a signed zone transfer from a real BIND."""

from __future__ import annotations

import hashlib
import os
import signal

import httpx
import pytest

from lablease.dns.client import DNSClient, DNSClientError

pytestmark = pytest.mark.integration


def _update(service, name: str, *ips: str) -> str:
    return httpx.get(service.update_url, params={"name": name, "ip": list(ips)}).text


def test_records_lists_exactly_the_names_the_allow_pattern_admits(dns_service_factory, bind_server):
    service = dns_service_factory()
    assert _update(service, "node2", "fd00::2", "10.0.0.2") == "success"
    assert _update(service, "node1", "10.0.0.1") == "success"
    # A record the key may write but the allow pattern does not admit: written by another service.
    other = dns_service_factory(allow_pattern=r"infra[0-9]+")
    assert _update(other, "infra1", "10.0.9.1") == "success"
    expected = {"zone": "lab.example", "names": {"node1": ["10.0.0.1"], "node2": ["10.0.0.2", "fd00::2"]}}
    for path in ("/records", "/records/"):
        answer = httpx.get(f"{service.url}{path}")
        assert (answer.status_code, answer.json()) == (200, expected), path
        assert list(answer.json()["names"]) == ["node1", "node2"]
    with DNSClient(service.update_url) as client:
        assert client.names() == ["node1", "node2"]
    assert httpx.get(f"{other.url}/records").json()["names"] == {"infra1": ["10.0.9.1"]}


def test_records_follows_base_path_and_tokens(dns_service_factory):
    service = dns_service_factory(base_path="/nsupdate", tokens=[{"id": "lab", "sha256": hashlib.sha256(b"tok-1").hexdigest()}])
    auth = {"Authorization": "Bearer tok-1"}
    assert httpx.get(service.update_url, params={"name": "node3", "ip": "10.0.0.3"}, headers=auth).text == "success"
    assert httpx.get(f"{service.url}/records").status_code == 401
    assert httpx.get(f"{service.url}/records", headers=auth).json()["names"] == {"node3": ["10.0.0.3"]}
    assert DNSClient(service.update_url, token="tok-1").names() == ["node3"]
    with pytest.raises(DNSClientError) as info:
        DNSClient(service.update_url).names()
    assert info.value.status == 401


def test_a_bind_refusing_the_transfer_is_a_502_that_says_how_to_allow_it(dns_service_factory, bind_factory):
    closed = bind_factory(allow_transfer=False)
    service = dns_service_factory(bind=closed)
    answer = httpx.get(f"{service.url}/records")
    assert answer.status_code == 502
    assert "REFUSED" in answer.text and "BIND" in answer.text
    assert f"allow-transfer {{ key {closed.key_name}; }};" in answer.text
    assert "\n" not in answer.text.strip() and "secret" not in answer.text
    with pytest.raises(DNSClientError, match="allow-transfer") as info:
        DNSClient(service.update_url, retries=1).names()
    assert info.value.status == 502


def test_bind_stopped_during_a_listing_is_a_502_not_a_500(dns_service):
    dns_service.bind.process.stop()
    answer = httpx.get(f"{dns_service.url}/records")
    assert answer.status_code in (502, 504) and "unreachable" in answer.text


def test_bind_not_answering_the_transfer_in_time_is_a_504(dns_service_factory, bind_server):
    service = dns_service_factory(timeout=0.5)
    os.killpg(bind_server.process.proc.pid, signal.SIGSTOP)  # the port stays open, nothing answers
    try:
        answer = httpx.get(f"{service.url}/records", timeout=10)
    finally:
        os.killpg(bind_server.process.proc.pid, signal.SIGCONT)
    assert answer.status_code == 504 and "did not answer within 0.5s" in answer.text


def test_an_ipv4_mapped_ipv6_address_repeated_is_no_change(dns_service):
    assert _update(dns_service, "node14", "::ffff:10.0.0.20") == "success"
    assert _update(dns_service, "node14", "::ffff:10.0.0.20") == "no-change"
    assert _update(dns_service, "node14", "::ffff:a00:14") == "no-change"  # the same address, spelt as Python does
    assert dns_service.bind.addresses("node14") == {"::ffff:10.0.0.20"}
