"""Whatever JSON a client sends, devcloud answers with an OpenStack error or success — never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lablease.devcloud.app import create_app
from lablease.devcloud.config import DevcloudConfig

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)

# The shapes clients send, nested as OpenStack nests them; every key optional, every leaf arbitrary.
LEAF = None
SHAPES = {
    "server": {"name": LEAF, "flavorRef": LEAF, "imageRef": LEAF, "user_data": LEAF, "metadata": LEAF,
               "networks": [{"uuid": LEAF}], "security_groups": [{"name": LEAF}], "key_name": LEAF},
    "volume": {"size": LEAF, "name": LEAF, "display_name": LEAF, "description": LEAF, "metadata": LEAF,
               "volume_type": LEAF},
    "keypair": {"name": LEAF, "public_key": LEAF},
    "volumeAttachment": {"volumeId": LEAF, "device": LEAF},
    "metadata": {"a": LEAF, "b": LEAF},
    "auth": {"identity": {"methods": [LEAF], "password": {"user": {"name": LEAF, "password": LEAF,
                                                                   "domain": {"name": LEAF}}}},
             "scope": {"project": {"name": LEAF, "id": LEAF, "domain": {"id": LEAF}}},
             "passwordCredentials": {"username": LEAF, "password": LEAF}, "tenantName": LEAF},
}
FIELDS = SHAPES


def shaped(spec):
    """Mostly the right shape, sometimes any JSON value in its place."""
    if spec is LEAF:
        return json_values
    if isinstance(spec, list):
        right = st.lists(shaped(spec[0]), max_size=3)
    else:
        right = st.fixed_dictionaries({}, optional={k: shaped(v) for k, v in spec.items()})
    return st.one_of(right, right, right, right, json_values)


def bodies(root: str):
    wrapped = st.builds(lambda d: {root: d}, shaped(SHAPES[root]))
    return st.one_of(json_values, wrapped, wrapped, wrapped)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    cfg = DevcloudConfig(boot_delay=0, volume_delay=0)
    with TestClient(create_app(cfg, tmp_path_factory.mktemp("fuzz")), raise_server_exceptions=False) as c:
        resp = c.post("/v2.0/tokens", json={"auth": {"passwordCredentials": {
            "username": "demo", "password": "demo-password"}, "tenantName": "demo"}})
        c.headers["X-Auth-Token"] = resp.json()["access"]["token"]["id"]
        project = resp.json()["access"]["token"]["tenant"]["id"]
        server = c.post("/compute/v2.1/servers", json={"server": {
            "name": "s", "flavorRef": "1", "imageRef": "2f1a1a38-0c7e-4a4c-9c9f-2204a0e22040"}}).json()["server"]["id"]
        c.targets = {  # type: ignore[attr-defined]
            "server": ["/compute/v2.1/servers"],
            "volume": [f"/volume/v3/{project}/volumes", "/compute/v2.1/os-volumes"],
            "keypair": ["/compute/v2.1/os-keypairs"],
            "volumeAttachment": [f"/compute/v2.1/servers/{server}/os-volume_attachments"],
            "metadata": [f"/compute/v2.1/servers/{server}/metadata"],
            "auth": ["/v2.0/tokens", "/v3/auth/tokens"],
        }
        yield c


@pytest.mark.parametrize("root", sorted(FIELDS))
def test_arbitrary_json_bodies_never_get_a_500(client, root):
    @settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(body=bodies(root))
    def check(body):
        for path in client.targets[root]:
            resp = client.post(path, json=body)
            assert resp.status_code < 500, (path, body, resp.text)

    check()
