"""Bad input gets the status and body OpenStack gives it, never a 500; quotas answer as Nova and Cinder do."""

from __future__ import annotations

import base64

import httpx
import pytest

from lablease.testing.devcloud import start_devcloud

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    handle = start_devcloud(tmp_path_factory.mktemp("devcloud-bad"), {
        "boot_delay": 0.1, "volume_delay": 0.05,
        "quotas": {"instances": 2, "cores": 20, "ram": 51200, "volumes": 2, "gigabytes": 10}})
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def api(cloud):
    resp = httpx.post(f"{cloud.url}/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "demo", "password": "demo-password", "domain": {"name": "Default"}}}},
        "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}}})
    assert resp.status_code == 201
    token = resp.headers["X-Subject-Token"]
    project = resp.json()["token"]["project"]["id"]
    with httpx.Client(base_url=cloud.url, headers={"X-Auth-Token": token}) as client:
        client.project = project  # type: ignore[attr-defined]
        yield client


def server_body(**overrides):
    body = {"name": "x", "flavorRef": "1", "imageRef": "2f1a1a38-0c7e-4a4c-9c9f-2204a0e22040"}
    body.update(overrides)
    return {"server": {k: v for k, v in body.items() if v is not None}}


@pytest.mark.parametrize("content,message", [
    (b"{not json", "Malformed request body"),
    (b"[1, 2]", "Malformed request body"),
    (b'{"servers": {}}', "'server' is a required property"),
])
def test_malformed_server_requests_get_nova_400_badrequest(api, content, message):
    resp = api.post("/compute/v2.1/servers", content=content, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert message in resp.json()["badRequest"]["message"]
    assert resp.json()["badRequest"]["code"] == 400


@pytest.mark.parametrize("overrides,message", [
    ({"name": None}, "'name' is a required property"),
    ({"flavorRef": None}, "'flavorRef' is a required property"),
    ({"flavorRef": "no-such-flavor"}, "Invalid flavorRef provided."),
    ({"imageRef": "no-such-image"}, "Can not find requested image"),
    ({"user_data": "***not base64***"}, "User data needs to be valid base 64."),
    ({"key_name": "nokey"}, "Invalid key_name provided."),
    ({"security_groups": [{"name": "nogroup"}]}, "Unable to find security_group with name or id 'nogroup'"),
    ({"networks": [{"uuid": "nonet"}]}, "Network nonet could not be found."),
    ({"metadata": {"k": 1}}, "Invalid input for field/attribute metadata"),
])
def test_invalid_server_fields_get_nova_400_naming_the_problem(api, cloud, overrides, message):
    resp = api.post("/compute/v2.1/servers", json=server_body(**overrides))
    assert resp.status_code == 400, resp.text
    assert message in resp.json()["badRequest"]["message"]
    assert cloud.resources()["servers"] == []


def test_unknown_ids_get_404_in_each_services_style(api):
    missing = "00000000-0000-0000-0000-000000000000"
    nova = api.get(f"/compute/v2.1/servers/{missing}")
    assert nova.status_code == 404 and "could not be found" in nova.json()["itemNotFound"]["message"]
    assert api.get("/compute/v2.1/flavors/99").json()["itemNotFound"]["code"] == 404
    cinder = api.get(f"/volume/v3/{api.project}/volumes/{missing}")
    assert cinder.status_code == 404 and cinder.json()["itemNotFound"]["code"] == 404
    neutron = api.get(f"/network/v2.0/networks/{missing}")
    assert neutron.status_code == 404 and neutron.json()["NeutronError"]["type"] == "NetworkNotFound"
    assert api.get(f"/image/v2/images/{missing}").status_code == 404
    assert api.get("/compute/v2.1/no-such-api").status_code == 404


@pytest.mark.parametrize("body", [{"volume": {}}, {"volume": {"size": 0}}, {"volume": {"size": "big"}}])
def test_bad_volume_requests_get_cinder_400(api, body):
    resp = api.post(f"/volume/v3/{api.project}/volumes", json=body)
    assert resp.status_code == 400 and "size" in resp.json()["badRequest"]["message"]


def test_keystone_answers_bad_auth_bodies_with_400_and_bad_passwords_with_401(cloud):
    assert httpx.post(f"{cloud.url}/v2.0/tokens", content=b"nope").status_code == 400
    assert httpx.post(f"{cloud.url}/v2.0/tokens", json={"auth": {}}).status_code == 400
    bad = httpx.post(f"{cloud.url}/v2.0/tokens", json={"auth": {"passwordCredentials": {
        "username": "demo", "password": "nope"}, "tenantName": "demo"}})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == 401
    assert "nope" not in bad.text


def test_compute_quota_gives_403_and_volume_quota_gives_413_overlimit(api, cloud):
    created = [api.post("/compute/v2.1/servers", json=server_body(name=f"q{i}")) for i in range(2)]
    assert [r.status_code for r in created] == [202, 202]
    over = api.post("/compute/v2.1/servers", json=server_body(name="q3"))
    assert over.status_code == 403
    assert "Quota exceeded for instances" in over.json()["forbidden"]["message"]
    limits = api.get("/compute/v2.1/limits").json()["limits"]["absolute"]
    assert (limits["maxTotalInstances"], limits["totalInstancesUsed"]) == (2, 2)

    too_big = api.post(f"/volume/v3/{api.project}/volumes", json={"volume": {"size": 11}})
    assert too_big.status_code == 413 and "gigabytes" in too_big.json()["overLimit"]["message"]
    for _ in range(2):
        assert api.post(f"/volume/v3/{api.project}/volumes", json={"volume": {"size": 1}}).status_code == 202
    third = api.post("/compute/v2.1/os-volumes", json={"volume": {"size": 1}})
    assert third.status_code == 413 and "VolumeLimitExceeded" in third.json()["overLimit"]["message"]
    for r in created:
        assert api.delete(f"/compute/v2.1/servers/{r.json()['server']['id']}").status_code == 204


def test_user_data_is_accepted_as_base64(api):
    ud = base64.b64encode(b"#cloud-config\nruncmd: [touch /x]\n").decode()
    resp = api.post("/compute/v2.1/servers", json=server_body(name="ud", user_data=ud))
    assert resp.status_code == 202
    assert api.delete(f"/compute/v2.1/servers/{resp.json()['server']['id']}").status_code == 204
