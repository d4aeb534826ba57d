"""Every service says where it listens when it starts, and `lablease serve` and `lablease dns serve` log one
access line per request (method, path, status, duration, client) unless the config turns it off.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

from lablease.testing.lockserver import start_lock_server

pytestmark = pytest.mark.integration

ACCESS = re.compile(r"access method=(\S+) path=(\S+) status=(\d+) duration_ms=(\d+\.\d) client=(\S+)")


def _settled(read, wanted: str, timeout: float = 5.0) -> str:
    """The log once ``wanted`` is in it (lines are written after the answer went out)."""
    end = time.monotonic() + timeout
    while wanted not in (text := read()) and time.monotonic() < end:
        time.sleep(0.05)
    return text


def test_lablease_serve_prints_its_url_and_logs_one_access_line_per_request(tmp_path):
    server = start_lock_server(tmp_path / "srv")
    try:
        httpx.get(f"{server.url}/nodes/", timeout=10)
        httpx.get(f"{server.url}/nodes/nope.example/", timeout=10)
        log = _settled(server.process.log_tail, "path=/nodes/nope.example/")
    finally:
        server.stop()
    assert f"lablease serve listening on {server.url}" in log
    lines = [m.groups() for m in ACCESS.finditer(log)]
    assert [(m, p, s, c) for m, p, s, _, c in lines] == [("GET", "/nodes/", "200", "127.0.0.1"),
                                                          ("GET", "/nodes/nope.example/", "404", "127.0.0.1")]


def test_lablease_serve_logs_no_access_lines_with_access_log_false(tmp_path):
    server = start_lock_server(tmp_path / "srv", extra={"access_log": False})
    try:
        assert httpx.get(f"{server.url}/nodes/", timeout=10).status_code == 200
        time.sleep(0.3)
        log = server.process.log_tail(100000)
    finally:
        server.stop()
    assert f"listening on {server.url}" in log and "access method=" not in log


def test_lablease_dns_serve_prints_its_url_and_logs_access_lines_unless_turned_off(dns_service_factory):
    service = dns_service_factory()
    httpx.get(service.update_url, params={"name": "node1", "ip": "10.0.0.1"}, timeout=10)
    httpx.get(f"{service.url}/healthz", timeout=10)
    log = _settled(service.log_text, "path=/healthz")
    assert f"lablease dns serve listening on {service.url}" in log
    assert [(m, p, s) for m, p, s, _, _ in (x.groups() for x in ACCESS.finditer(log))] == [
        ("GET", "/update", "200"), ("GET", "/healthz", "200")]
    quiet = dns_service_factory(access_log=False)
    httpx.get(f"{quiet.url}/healthz", timeout=10)
    time.sleep(0.3)
    assert "listening on" in quiet.log_text() and "access method=" not in quiet.log_text()


def test_devcloud_serve_prints_its_url(devcloud):
    assert f"lablease devcloud serve listening on {devcloud.url}" in devcloud.log_tail(100000)
