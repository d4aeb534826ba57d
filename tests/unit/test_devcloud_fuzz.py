"""Whatever a client sends, devcloud (a real server process, over HTTP) answers with an OpenStack error or
success, never a 5xx, and afterwards its listings still answer.

Every method on every route of devcloud's OpenAPI document, with the ids of resources that exist; bodies
mostly of the shapes clients send, sometimes any JSON, sometimes hostile (unpaired surrogates, NUL, nesting
deeper than the edge's 32 levels).
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lablease.testing.devcloud import start_devcloud

IMAGE = "2f1a1a38-0c7e-4a4c-9c9f-2204a0e22040"
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]
LISTINGS = ["/compute/v2.1/servers/detail", "/compute/v2.1/os-keypairs", "/compute/v2.1/os-volumes"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)

# The shapes clients send, nested as OpenStack nests them; every key optional, every leaf arbitrary.
LEAF = None
SHAPES = {
    "server": {"name": LEAF, "flavorRef": LEAF, "imageRef": LEAF, "user_data": LEAF, "metadata": LEAF,
               "networks": [{"uuid": LEAF}], "security_groups": [{"name": LEAF}], "key_name": LEAF,
               "availability_zone": LEAF, "config_drive": LEAF,
               "block_device_mapping_v2": [{"boot_index": LEAF, "uuid": LEAF, "source_type": LEAF,
                                            "destination_type": LEAF, "volume_size": LEAF,
                                            "delete_on_termination": LEAF}]},
    "floatingip": {"floating_network_id": LEAF, "port_id": LEAF, "description": LEAF, "tags": [LEAF]},
    "tags": [LEAF],
    "addFloatingIp": {"address": LEAF, "fixed_address": LEAF},
    "removeFloatingIp": {"address": LEAF},
    "pool": LEAF,
    "volume": {"size": LEAF, "name": LEAF, "display_name": LEAF, "description": LEAF, "metadata": LEAF,
               "volume_type": LEAF},
    "keypair": {"name": LEAF, "public_key": LEAF},
    "volumeAttachment": {"volumeId": LEAF, "device": LEAF},
    "metadata": {"a": LEAF, "b": LEAF},
    "meta": {"a": LEAF},
    "reboot": {"type": LEAF},
    "auth": {"identity": {"methods": [LEAF], "password": {"user": {"name": LEAF, "password": LEAF,
                                                                   "domain": {"name": LEAF}}}},
             "scope": {"project": {"name": LEAF, "id": LEAF, "domain": {"id": LEAF}}},
             "passwordCredentials": {"username": LEAF, "password": LEAF}, "tenantName": LEAF},
}
HOSTILE_TEXT = st.sampled_from(["\ud800", "a\udfffb", "\x00", "n\x00", "(a*)*b", "%2F", "' OR 1=1 --", "\u202e"])


def shaped(spec):
    """Mostly the right shape, sometimes any JSON value in its place, sometimes hostile text."""
    if spec is LEAF:
        return st.one_of(json_values, json_values, HOSTILE_TEXT)
    if isinstance(spec, list):
        right = st.lists(shaped(spec[0]), max_size=3)
    else:
        right = st.fixed_dictionaries({}, optional={k: shaped(v) for k, v in spec.items()})
    return st.one_of(right, right, right, right, json_values)


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


bodies = st.one_of(
    st.sampled_from(sorted(SHAPES)).flatmap(lambda root: st.builds(lambda d: {root: d}, shaped(SHAPES[root]))),
    json_values,
    st.builds(lambda root, depth: {root: json.loads(deep(min(depth, 500)))}, st.sampled_from(sorted(SHAPES)),
              st.sampled_from([33, 200])),
)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    handle = start_devcloud(tmp_path_factory.mktemp("devcloud-fuzz"), {
        "boot_delay": 0, "volume_delay": 0, "ssh": {"enabled": False},
        "networks": [{"name": "public"}, {"name": "ext-net", "external": True}]})
    try:
        auth = {"auth": {"passwordCredentials": {"username": "demo", "password": "demo-password"}, "tenantName": "demo"}}
        access = httpx.post(f"{handle.url}/v2.0/tokens", json=auth).json()["access"]
        client = httpx.Client(base_url=handle.url, headers={"X-Auth-Token": access["token"]["id"]}, timeout=30)
        server = client.post("/compute/v2.1/servers", json={"server": {"name": "s", "flavorRef": "1", "imageRef": IMAGE}})
        volume = client.post("/compute/v2.1/os-volumes", json={"volume": {"size": 1}})
        keypair = client.post("/compute/v2.1/os-keypairs", json={"keypair": {"name": "kp"}})
        assert {server.status_code, volume.status_code, keypair.status_code} <= {200, 202}
        ids = {"server_id": server.json()["server"]["id"], "volume_id": volume.json()["volume"]["id"],
               "project_id": access["token"]["tenant"]["id"], "name": "kp", "key": "a", "flavor_id": "1",
               "image_id": IMAGE}
        doc = client.get("/devcloud/openapi.json").json()
        ids.update({"network_id": client.get("/network/v2.0/networks").json()["networks"][0]["id"]})
        external = client.get("/network/v2.0/networks", params={"name": "ext-net"}).json()["networks"][0]["id"]
        fip = client.post("/network/v2.0/floatingips", json={"floatingip": {"floating_network_id": external}})
        ids.update({"fip_id": fip.json()["floatingip"]["id"], "tag": "t"})
        paths = sorted({_concrete(path, ids) for path in doc["paths"]}
                       - {"/devcloud/admin/faults", "/devcloud/admin/tokens"})  # these would change the run
        client.paths = paths  # type: ignore[attr-defined]
        yield client
        client.close()
    finally:
        handle.stop()
    assert "Traceback" not in handle.log_tail(5_000_000)


def _concrete(path: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    return path.replace("{", "").replace("}", "")  # ids no resource has: a 404 is the answer


def test_any_request_to_any_route_gets_no_5xx_and_leaves_the_listings_answering(cloud):
    @settings(max_examples=300, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(method=st.sampled_from(METHODS), path=st.sampled_from(cloud.paths), body=st.none() | bodies,
           raw=st.none() | st.sampled_from([deep(10_000), b"{not json", b"\xff\xfe", b"x" * 200_000]))
    def check(method, path, body, raw):
        content = raw if raw is not None else json.dumps(body).encode() if body is not None else None
        resp = cloud.request(method, path, content=content, headers={"Content-Type": "application/json"})
        assert resp.status_code < 500, (method, path, content[:200] if content else None, resp.text[:300])
        assert resp.headers.get("content-type", "").startswith("application/json") or not resp.content
        for listing in LISTINGS:
            assert cloud.get(listing).status_code == 200, (listing, method, path)

    check()
