"""Every service says where it listens when it starts, and `lablease serve` and `lablease dns serve` log one
access line per request (method, path, status, duration, client) unless the config turns it off.
"""

from __future__ import annotations

import re

import httpx
import pytest

from lablease.testing.lockserver import start_lock_server
from lablease.testing.waiting import wait_until

pytestmark = pytest.mark.integration

ACCESS = re.compile(r"access method=(\S+) path=(\S+) status=(\d+) duration_ms=(\d+\.\d) client=(\S+)")


def _settled(read, wanted: str) -> str:
    """The log once ``wanted`` is in it (lines are written after the answer went out)."""
    return wait_until(lambda: text if wanted in (text := read()) else None, what=f"{wanted!r} in the log",
                      timeout=10)


def test_lablease_serve_prints_its_url_and_logs_one_access_line_per_change_or_refusal(tmp_path):
    """Successful reads (a dashboard refreshes every few seconds) are DEBUG lines; the rest INFO."""
    server = start_lock_server(tmp_path / "srv")
    try:
        httpx.get(f"{server.url}/nodes/", timeout=10)
        httpx.post(f"{server.url}/nodes/", json={"name": "node1.example"}, timeout=10)
        httpx.get(f"{server.url}/nodes/nope.example/", timeout=10)
        log = _settled(server.process.log_tail, "path=/nodes/nope.example/")
    finally:
        server.stop()
    assert f"lablease serve listening on {server.url}" in log
    lines = [m.groups() for m in ACCESS.finditer(log)]
    assert [(m, p, s, c) for m, p, s, _, c in lines] == [("POST", "/nodes/", "200", "127.0.0.1"),
                                                          ("GET", "/nodes/nope.example/", "404", "127.0.0.1")]


def test_lablease_serve_logs_no_access_lines_with_access_log_false(tmp_path):
    # An access line is written after the answer went out, so "none yet" proves nothing; a stopped server writes
    # nothing more. The same steps against a server with access lines on show they would have caught one.
    logs = {}
    for access_log in (True, False):
        server = start_lock_server(tmp_path / f"srv-{access_log}", extra={"access_log": access_log})
        try:
            assert httpx.get(f"{server.url}/nodes/nope.example/", timeout=10).status_code == 404
        finally:
            server.stop()  # waits until it has exited: its log is complete
        logs[access_log] = server.process.log_tail(100000)
        assert f"listening on {server.url}" in logs[access_log]
    assert "access method=GET path=/nodes/nope.example/ status=404" in logs[True]
    assert "access method=" not in logs[False]


def test_lablease_dns_serve_prints_its_url_and_logs_access_lines_unless_turned_off(dns_service_factory):
    service = dns_service_factory()
    httpx.get(f"{service.url}/healthz", timeout=10)  # a successful read: a DEBUG line
    httpx.get(service.update_url, params={"name": "node1", "ip": "127.0.0.11"}, timeout=10)  # a change: INFO
    log = _settled(service.log_text, "path=/update")
    assert f"lablease dns serve listening on {service.url}" in log
    assert [(m, p, s) for m, p, s, _, _ in (x.groups() for x in ACCESS.finditer(log))] == [("GET", "/update", "200")]
    quiet = dns_service_factory(access_log=False)
    for handle in (service, quiet):  # the same steps: a request, then the service stopped (its log is complete)
        assert httpx.get(handle.update_url, params={"name": "node1", "ip": "127.0.0.12"}, timeout=10).status_code == 200
        handle.stop()
    assert service.log_text().count("access method=GET path=/update status=200") == 2  # the steps catch a line
    assert "listening on" in quiet.log_text() and "access method=" not in quiet.log_text()


def test_devcloud_serve_prints_its_url(devcloud):
    assert f"lablease devcloud serve listening on {devcloud.url}" in devcloud.log_tail(100000)
