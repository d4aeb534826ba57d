"""Hostile input: every request below is refused with a 4xx and BIND's zone stays byte-for-byte the same."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.integration

LONG_LABEL = "node" + "1" * 60
LONG_NAME = ".".join(["a" * 60] * 4) + ".lab.example"

# (query parameters, expected status): the name and address attacks of the issue, and nsupdate-web's weaknesses.
HOSTILE: list[tuple[dict, int]] = [
    ({"name": "node1\nupdate add evil.lab.example 300 A 6.6.6.6\nsend", "ip": "10.0.0.1"}, 400),  # injected commands
    ({"name": "node1\n", "ip": "10.0.0.1"}, 400),                     # one trailing newline: Python's `$` lets it through
    ({"name": "node1\r\n", "ip": "10.0.0.1"}, 400),
    ({"name": "node1 evil", "ip": "10.0.0.1"}, 400),                  # space
    ({"name": "node1;evil", "ip": "10.0.0.1"}, 400),                  # semicolon
    ({"name": "node1'", "ip": "10.0.0.1"}, 400),                      # quotes
    ({"name": 'node1"', "ip": "10.0.0.1"}, 400),
    ({"name": "node1", "ip": "fe80::1%eth0\nupdate add evil.lab.example 300 A 6.6.6.6"}, 400),  # %zone carrying text
    ({"name": "node1", "ip": "fe80::1%eth0"}, 400),
    ({"name": "node1.evil", "ip": "10.0.0.1"}, 403),                  # matches the pattern only as a prefix
    ({"name": "node1x", "ip": "10.0.0.1"}, 403),
    ({"name": "node1.other.example", "ip": "10.0.0.1"}, 403),         # another zone
    ({"name": "node1.lab.example.org", "ip": "10.0.0.1"}, 403),
    ({"name": "lab.example", "ip": "10.0.0.1"}, 403),                 # apex
    ({"name": "lab.example.", "ip": "10.0.0.1"}, 403),
    ({"name": "*.lab.example", "ip": "10.0.0.1"}, 400),               # wildcard
    ({"name": "*", "ip": "10.0.0.1"}, 400),
    ({"name": LONG_LABEL, "ip": "10.0.0.1"}, 400),                    # label over 63
    ({"name": LONG_NAME, "ip": "10.0.0.1"}, 400),                     # name over 253
    ({"name": "node1", "ip": "not-an-ip"}, 400),                      # non-IP addresses
    ({"name": "node1", "ip": "node2.lab.example"}, 400),
    ({"name": "node1", "ip": "10.0.0.1:22"}, 400),                    # with a port
    ({"name": "node1", "ip": "[fd00::1]:22"}, 400),
    ({"name": "node1", "ip": ["10.0.0.1", "10.0.0.1 ; rm"]}, 400),
    ({"name": "node1", "ip": [f"10.0.1.{i}" for i in range(33)]}, 400),  # too many addresses
    ({"name": "node1"}, 400),                                         # no address
    ({"ip": "10.0.0.1"}, 400),                                        # no name
    ({"name": "", "ip": "10.0.0.1"}, 400),
]


def test_hostile_updates_are_refused_and_leave_the_zone_unchanged(dns_service):
    bind = dns_service.bind
    assert httpx.get(dns_service.update_url, params={"name": "node1", "ip": "10.0.0.1"}).text == "success"
    before = bind.zone_dump()
    for params, status in HOSTILE:
        response = httpx.get(dns_service.update_url, params=params)
        assert response.status_code == status, (params, response.status_code, response.text)
        assert "\n" not in response.text.strip(), params   # one line, never an echo of injected lines
        assert "6.6.6.6" not in response.text and "eth0" not in response.text
    for name in ("node1\n", "node1.evil", "lab.example", "*.lab.example"):
        assert httpx.get(f"{dns_service.url}/delete", params={"name": name}).status_code in (400, 403)
    assert bind.zone_dump() == before
    assert bind.addresses("evil") == set() and bind.addresses("node1") == {"10.0.0.1"}


def test_hostile_names_in_the_records_path_are_refused(dns_service):
    dns_service_client = httpx.Client(base_url=dns_service.url)
    before = dns_service.bind.zone_dump()
    for raw in ("node1%0A", "node1%3Bevil", "%2A", "node1.evil", "lab.example"):
        assert dns_service_client.delete(f"/records/{raw}").status_code in (400, 403), raw
    assert dns_service_client.get("/records/node1%0Aupdate").status_code == 400
    assert dns_service.bind.zone_dump() == before
