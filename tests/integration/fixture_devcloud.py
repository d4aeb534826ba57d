"""devcloud's side of test_devcloud_matches_fixtures.py: a cloud in which every optional part of an answer shows, its
answers to the calls lablease makes, and the keys it sends that libcloud's recordings lack, each with its reason."""

from __future__ import annotations

from typing import Any, Callable

Kinds = dict[str, list[tuple[str, str]]]
IMAGE = "2f1a1a38-0c7e-4a4c-9c9f-2204a0e22040"
NOVA = "/compute/v2.1"


class Answers(dict):
    """devcloud's answers by call, and the item root of those that are not the first recording's."""

    roots = {"servers/{id}": "server", "POST volumes": "volume", "volumes/{id}": "volume",
             "POST os-volumes": "volume", "POST os-keypairs": "keypair", "POST os-keypairs (import)": "keypair",
             "POST network/v2.0/floatingips": "floatingip", "POST os-floating-ips": "floating_ip"}


def make_state(client: Any, wait_until: Callable[..., Any]) -> Answers:
    """Make servers (one with a boot volume, one failed), volumes (one attached), key pairs and floating IPs (one
    associated through Neutron, one through Nova), then collect devcloud's answers."""
    got = Answers()
    v2 = client.post("/v2.0/tokens", json={"auth": {"passwordCredentials": {
        "username": "demo", "password": "demo-password"}, "tenantName": "demo"}})
    got["POST v2.0/tokens"] = v2.json()
    client.headers["X-Auth-Token"] = v2.json()["access"]["token"]["id"]
    project = v2.json()["access"]["token"]["tenant"]["id"]
    v3 = client.post("/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "demo", "password": "demo-password", "domain": {"name": "Default"}}}},
        "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}}})
    got["POST v3/auth/tokens"] = v3.json()
    got["GET v3/auth/tokens"] = client.get("/v3/auth/tokens", headers={
        "X-Subject-Token": v3.headers["X-Subject-Token"]}).json()

    got["POST os-keypairs"] = client.post(f"{NOVA}/os-keypairs", json={"keypair": {"name": "gen"}}).json()
    public = got["POST os-keypairs"]["keypair"]["public_key"]
    got["POST os-keypairs (import)"] = client.post(f"{NOVA}/os-keypairs", json={"keypair": {
        "name": "imp", "public_key": public}}).json()
    got["POST servers"] = client.post(f"{NOVA}/servers", json={"server": {
        "name": "s1", "flavorRef": "1", "imageRef": IMAGE, "key_name": "gen", "availability_zone": "nova",
        "config_drive": True, "metadata": {"owner": "t"}}}).json()
    got["POST servers (bdm)"] = client.post(f"{NOVA}/servers", json={"server": {
        "name": "s2", "flavorRef": "10", "imageRef": "", "block_device_mapping_v2": [{
            "boot_index": 0, "uuid": IMAGE, "source_type": "image", "destination_type": "volume",
            "volume_size": 2, "delete_on_termination": True}]}}).json()
    client.post(f"{NOVA}/servers", json={"server": {"name": "broken1", "flavorRef": "1", "imageRef": IMAGE}})
    s1, s2 = got["POST servers"]["server"]["id"], got["POST servers (bdm)"]["server"]["id"]
    statuses = lambda: sorted(s["status"] for s in client.get(f"{NOVA}/servers/detail").json()["servers"])  # noqa: E731
    wait_until(lambda: statuses() == ["ACTIVE", "ACTIVE", "ERROR"], what="servers booted", timeout=10, interval=0.02)

    cinder = f"/volume/v3/{project}"
    got["POST volumes"] = client.post(f"{cinder}/volumes", json={"volume": {
        "name": "v1", "size": 1, "metadata": {"lablease": "t"}}}).json()
    volume = got["POST volumes"]["volume"]["id"]
    got["POST os-volumes"] = client.post(f"{NOVA}/os-volumes", json={"volume": {"size": 1, "display_name": "nv"}}).json()
    wait_until(lambda: client.get(f"{cinder}/volumes/{volume}").json()["volume"]["status"] == "available",
               what="volume available", timeout=10, interval=0.02)
    client.post(f"{NOVA}/servers/{s1}/os-volume_attachments", json={"volumeAttachment": {"volumeId": volume}})
    wait_until(lambda: client.get(f"{cinder}/volumes/{volume}").json()["volume"]["status"] == "in-use",
               what="volume attached", timeout=10, interval=0.02)

    external = client.get("/network/v2.0/networks", params={"name": "ext-net"}).json()["networks"][0]["id"]
    port = client.get(f"{NOVA}/servers/{s1}/os-interface").json()["interfaceAttachments"][0]["port_id"]
    got["POST network/v2.0/floatingips"] = client.post("/network/v2.0/floatingips", json={"floatingip": {
        "floating_network_id": external, "port_id": port, "description": "lablease", "tags": ["lab"]}}).json()
    got["POST os-floating-ips"] = client.post(f"{NOVA}/os-floating-ips", json={"pool": "ext-net"}).json()
    client.post(f"{NOVA}/servers/{s2}/action", json={"addFloatingIp": {
        "address": got["POST os-floating-ips"]["floating_ip"]["ip"]}})

    for call, path, key in [("servers/detail?limit=2", f"{NOVA}/servers/detail?limit=2", "servers"),
                            ("volumes/detail?limit=2", f"{cinder}/volumes/detail?limit=2", "volumes"),
                            ("image/v2/images?limit=2", "/image/v2/images?limit=2", "images")]:
        got[call] = every_page(client, path, key)
    for call, path in [
        ("servers/detail", f"{NOVA}/servers/detail"),
        ("servers/{id}", f"{NOVA}/servers/{s1}"), ("flavors/detail", f"{NOVA}/flavors/detail"),
        ("images/detail", f"{NOVA}/images/detail"), ("volumes/{id}", f"{cinder}/volumes/{volume}"),
        ("os-volumes", f"{NOVA}/os-volumes"), ("os-keypairs", f"{NOVA}/os-keypairs"),
        ("os-networks", f"{NOVA}/os-networks"), ("network/v2.0/networks", "/network/v2.0/networks"),
        ("network/v2.0/networks?router:external",
         "/network/v2.0/networks?router:external=True&fields=id&fields=name"),
        ("os-security-groups", f"{NOVA}/os-security-groups"),
        ("network/v2.0/security-groups", "/network/v2.0/security-groups"),
        ("servers/{id}/os-interface", f"{NOVA}/servers/{s1}/os-interface"),
        ("network/v2.0/floatingips", "/network/v2.0/floatingips"), ("os-floating-ips", f"{NOVA}/os-floating-ips"),
        ("os-floating-ip-pools", f"{NOVA}/os-floating-ip-pools"),
    ]:
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text)
        got[call] = answer.json()
    return got


def every_page(client: Any, path: str, key: str) -> dict[str, Any]:
    """The first page of a listing with the items of every page: what a client that follows the links reads."""
    first = page = client.get(path).json()
    items = list(page[key])
    while True:
        link = page.get("next") or next((x["href"] for x in page.get(f"{key}_links", []) if x["rel"] == "next"), None)
        if not link:
            break
        page = client.get(("/image" if key == "images" else "") + link.split(str(client.base_url))[-1]).json()
        items += page[key]
    assert len(items) >= 3 and (first.get("next") or first.get(f"{key}_links")), (path, first)
    return {**first, key: items}


make_state.CONFIG = {  # type: ignore[attr-defined]
    "boot_delay": 0, "volume_delay": 0, "ssh": {"enabled": False},
    "networks": [{"name": "private", "cidr": "127.88.1.0/24", "public": False, "reachable": False},
                 {"name": "ext-net", "cidr": "127.88.2.0/24", "external": True}],
    "flavors": [{"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1},
                {"id": "10", "name": "v1.bfv", "vcpus": 1, "ram": 512, "disk": 0}],
    "faults": {"server_error": {"probability": 1.0, "match_name": "broken*"}},
}

DATA = "the keys of this map are data (metadata set by the client): recordings with an empty map have none"
NOVA_REF = "Nova API reference (compute), show server details / list servers detailed"
CINDER_REF = "Cinder API reference (block-storage v3), show a volume's details"
NEUTRON_SG = "Networking API reference, security groups (standard attributes, stateful, tags)"
KEYSTONE_V3 = "Identity API v3 reference, password authentication with scoped authorization"
KEYSTONE_V2 = "Identity API v2.0 reference, authenticate (POST /v2.0/tokens) answer"

# Keys devcloud sends that no recording of libcloud's holds, by kind, each with its reason.
DOCUMENTED: dict[str, dict[str, str]] = {
    "server": {
        "security_groups": NOVA_REF, "security_groups.[].name": NOVA_REF,
        "^servers_links": "Nova API reference, list servers detailed: servers_links (paging)",
        "^servers_links.[].href": "Nova API reference, servers_links", "^servers_links.[].rel": "ditto",
    },
    "server_created": {"security_groups": "Nova API reference, create server answer",
                       "security_groups.[].name": "Nova API reference, create server answer"},
    "cinder_volume": {
        "^volumes_links": "Cinder API reference, list volumes with details: volumes_links (paging); libcloud's "
                          "_v2_0__snapshots_paginate_start.json records snapshots_links of the same shape",
        "^volumes_links.[].href": "ditto", "^volumes_links.[].rel": "ditto",
        "attachments.[].attached_at": CINDER_REF, "attachments.[].host_name": CINDER_REF,
        "consistencygroup_id": CINDER_REF, "encrypted": CINDER_REF, "links": CINDER_REF, "links.[].href": CINDER_REF,
        "links.[].rel": CINDER_REF, "multiattach": CINDER_REF, "os-vol-tenant-attr:tenant_id": CINDER_REF,
        "updated_at": CINDER_REF, "metadata.*": DATA,
        "volume_image_metadata": CINDER_REF + " (a volume made from an image: a boot volume)",
        "volume_image_metadata.image_id": "ditto", "volume_image_metadata.image_name": "ditto",
    },
    "nova_volume": {"metadata.*": DATA},
    "flavor": {"os-flavor-access:is_public": "Nova API reference, list flavors with details",
               "rxtx_factor": "Nova API reference, list flavors with details (up to microversion 2.75)"},
    "nova_image": {"OS-EXT-IMG-SIZE:size": "Nova API reference, list images with details (image proxy)"},
    "glance_image": {"os_hidden": "Image API v2 reference (2.7 on), list images"},
    "nova_security_group": {"rules.[].group.name": "Nova API reference, os-security-groups: a rule from a group",
                            "rules.[].group.tenant_id": "ditto"},
    "neutron_security_group": {key: NEUTRON_SG for key in [
        "created_at", "updated_at", "revision_number", "project_id", "stateful", "tags",
        "security_group_rules.[].description", "security_group_rules.[].ethertype",
        "security_group_rules.[].project_id", "security_group_rules.[].tenant_id",
        "security_group_rules.[].remote_group_id"]},
    "token_v3": {"audit_ids": KEYSTONE_V3, "catalog.[].name": KEYSTONE_V3, "is_domain": KEYSTONE_V3,
                 "catalog.[].endpoints.[].region_id": KEYSTONE_V3, "user.password_expires_at": KEYSTONE_V3},
    "access_v2": {key: KEYSTONE_V2 for key in [
        "metadata", "serviceCatalog.[].endpoints.[].adminURL", "serviceCatalog.[].endpoints.[].id",
        "serviceCatalog.[].endpoints_links", "token.issued_at", "token.tenant", "token.tenant.description",
        "token.tenant.enabled", "token.tenant.id", "token.tenant.name", "user.roles_links", "user.username"]}
    | {"metadata.*": "Identity API v2.0 reference: metadata {is_admin, roles}"},
}

# Keys libcloud reads of a recording that devcloud's answer does not hold, each with why a cloud would not send it
# either in this case (libcloud reads all of them with a default).
ABSENT: dict[str, dict[str, str]] = {
    "flavor": {"OS-FLV-WITH-EXT-SPECS:extra_specs": "a pre-2.1 extension of Nova (2.61 names it extra_specs); "
                                                    "Nova 2.1 sends no extra specs"},
    "nova_image": {"server": "only a snapshot image names the server it was made from",
                   "server.id": "ditto"},
    "glance_image": {"os_type": "an image property: only images whose owner set it have it"},
    "keypair": {"private_key": "Nova sends a private key only for a key pair it generated, never for an import"},
    "nova_security_group": {"rules.[].ip_range.cidr": "devcloud's default group admits its own members only (as "
                                                      "Neutron's default group): a rule from a group, no address range"},
}
