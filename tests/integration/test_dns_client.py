"""lablease.dns.client.DNSClient against the real service and BIND: what the provisioning engine relies on."""

from __future__ import annotations

import hashlib
import time

import pytest

from lablease.dns.client import DNSClient, DNSClientError

pytestmark = pytest.mark.integration


def test_client_updates_looks_up_and_deletes_a_name(dns_service):
    with DNSClient(dns_service.update_url) as client:
        assert client.update("node1", ["10.0.0.1", "fd00::1"]) == "success"
        assert client.update("node1", ["fd00::1", "10.0.0.1"]) == "no-change"
        assert client.lookup("node1") == ["10.0.0.1", "fd00::1"]
        assert dns_service.bind.addresses("node1") == {"10.0.0.1", "fd00::1"}
        client.delete("node1")
        client.delete("node1")  # absent: still fine
        assert client.lookup("node1") == []
        assert dns_service.bind.addresses("node1") == set()


def test_client_raises_at_once_on_4xx_naming_the_name_and_the_answer(dns_service):
    client = DNSClient(dns_service.update_url, retries=3)
    start = time.monotonic()
    with pytest.raises(DNSClientError) as info:
        client.update("evil1", ["10.0.0.1"])
    assert time.monotonic() - start < 1.0  # no retry on a refusal
    assert info.value.status == 403
    assert "evil1" in str(info.value) and "allow pattern" in str(info.value)


def test_client_retries_5xx_a_bounded_number_of_times_then_raises(dns_service):
    dns_service.bind.process.stop()
    client = DNSClient(dns_service.update_url, retries=2)
    with pytest.raises(DNSClientError) as info:
        client.update("node1", ["10.0.0.1"])
    assert info.value.status == 502 and "node1" in str(info.value) and "unreachable" in str(info.value)
    metrics = client._http.get(f"{client.base_url}/metrics").text
    assert 'lablease_dns_errors_total{rcode="unreachable"} 2.0' in metrics


def test_client_reports_an_unreachable_service_without_the_token(bind_server):
    client = DNSClient("http://127.0.0.1:9/prefix/update", token="very-secret-token", timeout=0.5, retries=2)
    assert client.base_url == "http://127.0.0.1:9/prefix"
    with pytest.raises(DNSClientError) as info:
        client.lookup("node1")
    assert "unreachable" in str(info.value) and "very-secret-token" not in str(info.value)
    assert "very-secret-token" not in repr(client)


def test_client_sends_its_token_and_works_behind_a_prefix(dns_service_factory):
    service = dns_service_factory(base_path="/dns", tokens=[{"id": "lab", "sha256": hashlib.sha256(b"tok-123").hexdigest()}])
    assert DNSClient(service.update_url, token="tok-123").update("node2", ["10.0.0.2"]) == "success"
    with pytest.raises(DNSClientError) as info:
        DNSClient(service.update_url, token="wrong").update("node2", ["10.0.0.3"])
    assert info.value.status == 401 and "wrong" not in str(info.value).replace("wrong token", "")
    assert service.bind.addresses("node2") == {"10.0.0.2"}
