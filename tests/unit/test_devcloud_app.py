"""devcloud's HTTP app in-process: list filters and pagination, metadata, request templates, secrecy."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from lablease.devcloud.app import create_app
from lablease.devcloud.config import DevcloudConfig
from lablease.testing.waiting import wait_until

IMAGE = "2f1a1a38-0c7e-4a4c-9c9f-2204a0e22040"


@pytest.fixture
def client(tmp_path):
    cfg = DevcloudConfig(boot_delay=0, volume_delay=0)
    with TestClient(create_app(cfg, tmp_path)) as c:
        resp = c.post("/v2.0/tokens", json={"auth": {"passwordCredentials": {
            "username": "demo", "password": "demo-password"}, "tenantName": "demo"}})
        c.headers["X-Auth-Token"] = resp.json()["access"]["token"]["id"]
        yield c


def boot(client, name, flavor="1"):
    resp = client.post("/compute/v2.1/servers", json={"server": {"name": name, "flavorRef": flavor,
                                                                 "imageRef": IMAGE}})
    assert resp.status_code == 202
    return resp.json()["server"]["id"]


def test_server_list_filters_by_name_regex_flavor_and_status(client):
    boot(client, "web-1"), boot(client, "web-2", flavor="2"), boot(client, "db-1")
    names = lambda **q: sorted(s["name"] for s in client.get("/compute/v2.1/servers/detail", params=q).json()["servers"])  # noqa: E731
    assert names(name="^web") == ["web-1", "web-2"]
    assert names(flavor="2") == ["web-2"]
    # With no boot delay the servers turn ACTIVE on devcloud's scheduler thread: wait for that,
    # then the status filter must put every server on the ACTIVE side and none on BUILD.
    wait_until(lambda: names(status="ACTIVE") == ["db-1", "web-1", "web-2"], what="every server ACTIVE", timeout=10,
               interval=0.02)
    assert names(status="BUILD") == []
    assert client.get("/compute/v2.1/servers", params={"name": "("}).status_code == 400


def test_server_list_pages_with_limit_marker_and_next_links(client):
    ids = {boot(client, f"s{i}") for i in range(5)}
    seen, params = [], {"limit": "2"}
    while True:
        body = client.get("/compute/v2.1/servers/detail", params=params).json()
        seen += [s["id"] for s in body["servers"]]
        nxt = [link for link in body.get("servers_links", []) if link["rel"] == "next"]
        if not nxt:
            break
        params = dict(p.split("=") for p in nxt[0]["href"].split("?", 1)[1].split("&"))
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    assert client.get("/compute/v2.1/servers", params={"marker": "nope"}).status_code == 400


def test_server_metadata_can_be_replaced_updated_read_and_deleted(client):
    sid = boot(client, "m")
    base = f"/compute/v2.1/servers/{sid}/metadata"
    assert client.put(base, json={"metadata": {"a": "1"}}).json() == {"metadata": {"a": "1"}}
    assert client.post(base, json={"metadata": {"b": "2"}}).json() == {"metadata": {"a": "1", "b": "2"}}
    assert client.get(f"{base}/b").json() == {"meta": {"b": "2"}}
    assert client.delete(f"{base}/a").status_code == 204
    assert client.get(base).json() == {"metadata": {"b": "2"}}
    assert client.get(f"{base}/a").status_code == 404


def test_request_counts_use_path_templates_and_can_be_reset(client):
    sid = boot(client, "c")
    client.get(f"/compute/v2.1/servers/{sid}")
    client.get("/compute/v2.1/nothing-here")
    counts = client.get("/devcloud/admin/requests").json()["counts"]
    assert counts["POST /compute/v2.1/servers"] == 1
    assert counts["GET /compute/v2.1/servers/{server_id}"] == 1
    assert counts["GET <unmatched>"] == 1
    assert client.delete("/devcloud/admin/requests").status_code == 204
    assert client.get("/devcloud/admin/requests").json()["counts"] == {}


def test_passwords_and_tokens_stay_out_of_logs_and_admin_answers(client, caplog):
    caplog.set_level(logging.DEBUG)
    client.post("/v2.0/tokens", json={"auth": {"passwordCredentials": {
        "username": "demo", "password": "demo-password"}, "tenantName": "demo"}})
    boot(client, "secret-check")
    token = client.headers["X-Auth-Token"]
    text = caplog.text + client.get("/devcloud/admin/resources").text + client.get("/devcloud/admin/faults").text
    assert "demo-password" not in text and token not in text


def test_nova_delete_of_server_releases_its_address_for_reuse(client):
    sid = boot(client, "a")
    addr = client.get(f"/compute/v2.1/servers/{sid}").json()["server"]["addresses"]["public"][0]["addr"]
    assert client.delete(f"/compute/v2.1/servers/{sid}").status_code == 204
    assert client.get(f"/compute/v2.1/servers/{sid}").status_code == 404
    assert addr not in str(client.get("/devcloud/admin/resources").json())
