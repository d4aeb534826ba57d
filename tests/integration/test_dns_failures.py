"""When BIND is down, silent, keyed differently or refuses by policy: a 5xx naming why, nothing half-done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest

pytestmark = pytest.mark.integration


def test_bind_stopped_answers_502_and_changes_nothing_after_it_returns(dns_service):
    bind = dns_service.bind
    assert httpx.get(dns_service.update_url, params={"name": "node1", "ip": "10.0.0.1"}).text == "success"
    bind.process.stop()
    response = httpx.get(dns_service.update_url, params={"name": "node1", "ip": "10.0.0.2"})
    assert response.status_code in (502, 504)
    assert "unreachable" in response.text
    assert httpx.get(f"{dns_service.url}/healthz").status_code == 503
    bind.restart()
    assert bind.addresses("node1") == {"10.0.0.1"}
    # The service reconnects by itself once BIND is back.
    assert httpx.get(dns_service.update_url, params={"name": "node1", "ip": "10.0.0.2"}).text == "success"
    assert bind.addresses("node1") == {"10.0.0.2"}
    assert 'lablease_dns_errors_total{rcode="unreachable"}' in httpx.get(f"{dns_service.url}/metrics").text


def test_bind_not_answering_within_the_timeout_is_a_504(dns_service_factory, bind_server):
    service = dns_service_factory(timeout=0.5)
    os.killpg(bind_server.process.proc.pid, signal.SIGSTOP)  # named accepts nothing more but the port stays open
    try:
        response = httpx.get(service.update_url, params={"name": "node1", "ip": "10.0.0.1"}, timeout=10)
        assert response.status_code == 504
        assert "did not answer within 0.5s" in response.text
    finally:
        os.killpg(bind_server.process.proc.pid, signal.SIGCONT)
    assert bind_server.addresses("node1") == set()


def test_a_wrong_tsig_key_is_a_502_that_never_shows_the_secret(dns_service_factory, bind_server, tmp_path):
    wrong = tmp_path / "wrong.key"
    wrong.write_text(subprocess.run(["tsig-keygen", "-a", "hmac-sha256", bind_server.key_name],
                                    check=True, capture_output=True, text=True).stdout)
    secret = wrong.read_text().split('secret "')[1].split('"')[0]
    service = dns_service_factory(key_file=str(wrong))
    response = httpx.get(service.update_url, params={"name": "node1", "ip": "10.0.0.1"})
    assert response.status_code == 502
    assert "TSIG" in response.text
    assert secret not in response.text and secret not in service.log_text()
    assert bind_server.addresses("node1") == set()


def test_bind_refusing_by_update_policy_is_a_502_naming_refused(dns_service_factory, bind_factory):
    narrow = bind_factory(policy_names="*.infra.lab.example.")
    service = dns_service_factory(bind=narrow)
    response = httpx.get(service.update_url, params={"name": "node1", "ip": "10.0.0.1"})
    assert response.status_code == 502
    assert "REFUSED" in response.text
    assert narrow.addresses("node1") == set()
    assert 'lablease_dns_errors_total{rcode="REFUSED"} 1.0' in httpx.get(f"{service.url}/metrics").text


def test_a_zone_the_server_does_not_serve_is_a_502_naming_notauth(dns_service_factory, bind_server):
    service = dns_service_factory(zone="other.example")
    response = httpx.get(service.update_url, params={"name": "node1", "ip": "10.0.0.1"})
    assert response.status_code == 502
    assert "NOTAUTH" in response.text or "REFUSED" in response.text


def test_serve_with_a_bad_config_exits_naming_the_key(tmp_path):
    config = tmp_path / "dns.yaml"
    config.write_text("zone: lab.example\nkey_file: missing.key\nallow_pattern: 'node(['\n")
    result = subprocess.run([sys.executable, "-m", "lablease", "dns", "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, env={**os.environ})
    assert result.returncode == 2
    assert "allow_pattern" in result.stderr
    config.write_text("zone: lab.example\nkey_file: missing.key\nallow_pattern: 'node[0-9]+'\n")
    result = subprocess.run([sys.executable, "-m", "lablease", "dns", "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "key_file" in result.stderr


def test_pooled_connections_to_a_restarted_bind_are_replaced_without_an_error(dns_service):
    bind = dns_service.bind
    for i in range(3):
        assert httpx.get(dns_service.update_url, params={"name": "node1", "ip": f"10.0.0.{i + 1}"}).text == "success"
        bind.restart()  # every pooled connection is now closed by the server
    assert httpx.get(dns_service.update_url, params={"name": "node1", "ip": "10.0.0.9"}).text == "success"
    assert bind.addresses("node1") == {"10.0.0.9"}
    assert "lablease_dns_errors_total{" not in httpx.get(f"{dns_service.url}/metrics").text


def test_serve_with_several_workers_on_a_busy_port_says_so_without_a_traceback(tmp_path):
    import socket

    key = tmp_path / "k.key"
    key.write_text(subprocess.run(["tsig-keygen", "-a", "hmac-sha256", "k"], check=True, capture_output=True,
                                  text=True).stdout)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "dns.yaml"
        config.write_text(f"zone: lab.example\nkey_file: k.key\nallow_pattern: 'node[0-9]+'\n"
                          f"listen_port: {port}\nworkers: 2\n")
        result = subprocess.run([sys.executable, "-m", "lablease", "dns", "serve", "--config", str(config)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
