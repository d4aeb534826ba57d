"""The DNS service against a real BIND 9: every operation is checked by asking BIND directly."""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

import httpx
import pytest
import requests  # what teuthology uses; installed with the test extras

pytestmark = pytest.mark.integration


def test_teuthology_call_shape_sets_the_address_of_a_short_name(dns_service):
    # teuthology's provisioner (_update_dns), line for line: GET {nsupdate_url}?name=<shortname>&ip=<ip>
    nsupdate_url = dns_service.update_url
    query = urlencode(dict(name="node1", ip="10.0.0.1"))
    resp = requests.get("%s?%s" % (nsupdate_url, query))
    resp.raise_for_status()
    assert resp.text == "success"
    assert dns_service.bind.addresses("node1") == {"10.0.0.1"}


def test_update_replaces_a_and_aaaa_with_exactly_the_given_addresses(dns_service):
    get = lambda **p: httpx.get(dns_service.update_url, params=p)  # noqa: E731
    assert get(name="node2", ip=["10.0.0.1", "fd00::1"]).text == "success"
    assert dns_service.bind.addresses("node2") == {"10.0.0.1", "fd00::1"}
    assert get(name="node2.lab.example", ip=["10.0.0.2"]).text == "success"
    assert dns_service.bind.addresses("node2") == {"10.0.0.2"}
    assert get(name="node2", ip=["fd00::2", "fd00::3"]).text == "success"
    assert dns_service.bind.addresses("node2") == {"fd00::2", "fd00::3"}


def test_same_addresses_answer_no_change_even_after_someone_else_changed_the_zone(dns_service):
    get = lambda **p: httpx.get(dns_service.update_url, params=p)  # noqa: E731
    assert get(name="node3", ip=["10.0.0.3"]).text == "success"
    assert get(name="node3", ip=["10.0.0.3"]).text == "no-change"
    # Someone else changes the record behind the service's back: it must ask BIND, not remember.
    assert httpx.get(f"{dns_service.url}/delete", params={"name": "node3"}).text == "success"
    assert get(name="node3", ip=["10.0.0.3"]).text == "success"
    assert dns_service.bind.addresses("node3") == {"10.0.0.3"}


def test_delete_by_get_and_by_http_delete_removes_records_and_absent_names_succeed(dns_service):
    httpx.get(dns_service.update_url, params={"name": "node4", "ip": ["10.0.0.4", "fd00::4"]})
    assert httpx.get(f"{dns_service.url}/delete", params={"name": "node4"}).status_code == 200
    assert dns_service.bind.addresses("node4") == set()
    httpx.get(dns_service.update_url, params={"name": "node5", "ip": "10.0.0.5"})
    assert httpx.delete(f"{dns_service.url}/records/node5").status_code == 200
    assert dns_service.bind.addresses("node5") == set()
    absent = httpx.delete(f"{dns_service.url}/records/node6")
    assert (absent.status_code, absent.text) == (200, "no-change")


def test_records_lists_the_addresses_bind_holds(dns_service):
    httpx.get(dns_service.update_url, params={"name": "node7", "ip": ["fd00::7", "10.0.0.7"]})
    answer = httpx.get(f"{dns_service.url}/records/node7")
    assert answer.json() == {"name": "node7.lab.example", "addresses": ["10.0.0.7", "fd00::7"]}
    assert httpx.get(f"{dns_service.url}/records/node8").json()["addresses"] == []


def test_healthz_and_metrics_report_the_service_state(dns_service):
    assert httpx.get(f"{dns_service.url}/healthz").json()["status"] == "ok"
    httpx.get(dns_service.update_url, params={"name": "node1", "ip": "10.0.0.1"})
    httpx.get(dns_service.update_url, params={"name": "node1", "ip": "10.0.0.1"})
    httpx.get(dns_service.update_url, params={"name": "evil1", "ip": "10.0.0.1"})
    httpx.delete(f"{dns_service.url}/records/node1")
    text = httpx.get(f"{dns_service.url}/metrics").text
    assert 'lablease_dns_updates_total{result="success"} 1.0' in text
    assert 'lablease_dns_updates_total{result="no-change"} 1.0' in text
    assert 'lablease_dns_rejections_total{reason="not_allowed"} 1.0' in text
    assert 'lablease_dns_deletes_total{result="deleted"} 1.0' in text
    assert 'lablease_dns_request_seconds_count{operation="update"} 3.0' in text


def test_audit_log_names_who_the_name_and_old_and_new_addresses(dns_service):
    httpx.get(dns_service.update_url, params={"name": "node1", "ip": "10.0.0.1"})
    httpx.get(dns_service.update_url, params={"name": "node1", "ip": "10.0.0.2"})
    httpx.delete(f"{dns_service.url}/records/node1")
    log = dns_service.log_text()
    assert "op=update client=127.0.0.1 name=node1.lab.example. old=- new=10.0.0.1" in log
    assert "op=update client=127.0.0.1 name=node1.lab.example. old=10.0.0.1 new=10.0.0.2" in log
    assert "op=delete client=127.0.0.1 name=node1.lab.example. old=10.0.0.2 new=-" in log


def test_base_path_puts_every_route_behind_a_prefix(dns_service_factory):
    service = dns_service_factory(base_path="/nsupdate")
    assert service.update_url.endswith("/nsupdate/update")
    assert httpx.get(service.update_url, params={"name": "node1", "ip": "10.0.0.1"}).text == "success"
    assert httpx.get(f"{service.url}/records/node1").json()["addresses"] == ["10.0.0.1"]
    assert httpx.get(service.url.replace("/nsupdate", "") + "/update", params={"name": "node1", "ip": "1.2.3.4"}).status_code == 404


def test_tokens_gate_updates_with_their_own_pattern_and_audit_id(dns_service_factory, tmp_path):
    (tmp_path / "ops.token").write_text("ops-secret-token\n")
    service = dns_service_factory(tokens=[
        {"id": "ci", "sha256": hashlib.sha256(b"ci-secret-token").hexdigest()},
        {"id": "ops", "token_file": str(tmp_path / "ops.token"), "allow_pattern": "infra[0-9]+"},
    ])
    params = {"name": "node1", "ip": "10.0.0.1"}
    assert httpx.get(service.update_url, params=params).status_code == 401
    wrong = httpx.get(service.update_url, params=params, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "nope" not in wrong.text
    ok = httpx.get(service.update_url, params=params, headers={"Authorization": "Bearer ci-secret-token"})
    assert ok.text == "success"
    ops = {"Authorization": "Bearer ops-secret-token"}
    assert httpx.get(service.update_url, params=params, headers=ops).status_code == 403
    assert httpx.get(service.update_url, params={"name": "infra1", "ip": "10.0.0.9"}, headers=ops).text == "success"
    assert service.bind.addresses("node1") == {"10.0.0.1"} and service.bind.addresses("infra1") == {"10.0.0.9"}
    assert httpx.delete(f"{service.url}/records/node1").status_code == 401
    assert httpx.get(f"{service.url}/delete", params={"name": "node1"}).status_code == 401
    assert service.bind.addresses("node1") == {"10.0.0.1"}
    assert httpx.get(f"{service.url}/records/node1").json()["addresses"] == ["10.0.0.1"]  # reading stays open
    log = service.log_text()
    assert "op=update token=ci name=node1.lab.example." in log and "op=update token=ops name=infra1" in log
    assert "secret-token" not in log


def test_several_worker_processes_serve_the_same_port(dns_service_factory):
    service = dns_service_factory(workers=2)
    with httpx.Client() as client:
        for i in range(20):
            assert client.get(service.update_url, params={"name": f"node{i}", "ip": f"10.0.1.{i}"}).text == "success"
    assert service.bind.addresses("node19") == {"10.0.1.19"}


def test_a_service_with_a_bad_key_file_fails_fast_with_its_reason(dns_service_factory, tmp_path):
    (tmp_path / "broken.key").write_text("not a key\n")
    with pytest.raises(RuntimeError, match="key_file"):
        dns_service_factory(key_file=str(tmp_path / "broken.key"))
