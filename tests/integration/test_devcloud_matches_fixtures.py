"""devcloud speaks no dialect of its own: for each call lablease makes through libcloud, the keys of devcloud's answer
are compared with libcloud's own recorded answers of real clouds (libcloud/test/compute/fixtures/openstack*).

The rule, per call (a row of CALLS: devcloud's answer, the fixtures recorded for that kind of answer, and the
libcloud code that reads it):

1. **What libcloud reads, devcloud sends.** libcloud's own parser for the call is run over each fixture with every
   JSON object noting the keys read from it; each key path it reads that the fixture holds must be in devcloud's
   answer (a ``get`` of a key the fixture lacks is code that copes without it, and is not required), unless
   ``ABSENT`` says why a cloud would not send it either in that case (a snapshot's ``server``, say).
2. **devcloud invents nothing.** Each key path of devcloud's answer must be in a fixture of the same kind, or in
   ``DOCUMENTED`` with its reason: a key of the OpenStack API reference (Nova, Cinder, Neutron, Keystone) that
   libcloud's older recordings lack.

Key paths name lists' items ``[]`` and the keys of maps keyed by data (addresses by network, metadata) ``*``, and
are taken relative to the answer's item (``servers.[]``): so a server is compared with servers wherever recorded.
devcloud's state is made so that every optional part shows (a fault, a floating IP, attachments, next links).
Not compared, for want of a recording: Nova's ``GET /limits`` (libcloud holds only the XML of API 1.0) and the
answers libcloud reads nothing of but the status (attach, detach, delete, floating IP association).
"""

from __future__ import annotations

import json
import types
from typing import Any, Callable

import pytest
from fastapi.testclient import TestClient
from libcloud.common import openstack_identity
from libcloud.common.openstack_identity import (
    OpenStackIdentity_2_0_Connection, OpenStackIdentity_3_0_Connection, OpenStackServiceCatalog,
)
from libcloud.compute.drivers.openstack import OpenStack_2_FloatingIpPool
from libcloud.compute.providers import get_driver
from libcloud.compute.types import Provider

from lablease.devcloud.app import create_app
from lablease.devcloud.config import DevcloudConfig
from lablease.testing.waiting import wait_until
from tests.integration.fixture_keys import Canned, fixture, key_paths, reads
from tests.integration.fixture_devcloud import ABSENT, DOCUMENTED, Kinds, make_state

pytestmark = pytest.mark.integration

V11, V1 = "openstack_v1_1/", "openstack/"
# kind -> (fixture file, the answer's item root) for every recording of that kind of answer
KINDS: Kinds = {
    "server": [(V11 + "_servers_detail.json", "servers.[]"), (V11 + "_servers_detail_ERROR_STATE.json", "servers.[]"),
               (V11 + "_servers_12064.json", "server"), (V11 + "_servers_26f7fbee_8ce1_4c28_887a_bfe8e4bb10fe.json",
                                                          "server")],
    "server_created": [(V11 + "_servers_create.json", "server"), (V11 + "_servers_create_disk_config.json", "server")],
    "flavor": [(V11 + "_flavors_detail.json", "flavors.[]"), (V11 + "_flavors_7.json", "flavor")],
    "nova_image": [(V11 + "_images_detail.json", "images.[]"), (V11 + "_images_13.json", "image")],
    "glance_image": [(V11 + "_images_v2.json", "images.[]"), (V11 + "_images_v2_page2.json", "images.[]"),
                     (V11 + "_images_f24a3c1b-d52a-4116-91da-25b3eee8f55d.json", "")],
    "cinder_volume": [(V11 + "_v2_0__volumes.json", "volumes.[]"), (V11 + "_v2_0__volume.json", "volume"),
                      (V11 + "_v2_0__volume_abc6a3a1_c4ce_40f6_9b9f_07a61508938d.json", "volume")],
    "nova_volume": [(V11 + "_os_volumes.json", "volumes.[]"), (V11 + "_os_volumes_create.json", "volume"),
                    (V11 + "_os_volumes_cd76a3a1_c4ce_40f6_9b9f_07a61508938d.json", "volume")],
    "keypair": [(V11 + "_os_keypairs.json", "keypairs.[].keypair"), (V11 + "_os_keypairs_create.json", "keypair"),
                (V11 + "_os_keypairs_create_import.json", "keypair"), (V11 + "_os_keypairs_get_one.json", "keypair")],
    "nova_network": [(V11 + "_os_networks.json", "networks.[]")],
    "neutron_network": [(V11 + "_v2_0__networks.json", "networks.[]"), (V11 + "_v2_0__network.json", "network"),
                        (V11 + "_v2_0__networks_public.json", "networks.[]")],
    "nova_security_group": [(V11 + "_os_security_groups.json", "security_groups.[]")],
    "neutron_security_group": [(V11 + "_v2_0__security_groups.json", "security_groups.[]"),
                               (V11 + "_v2_0__security_group.json", "security_group")],
    "interface": [(V11 + "_servers_os_intefaces.json", "interfaceAttachments.[]")],
    "floatingip": [(V11 + "_v2_0__floatingips.json", "floatingips.[]"), (V11 + "_v2_0__floatingip.json", "floatingip")],
    "nova_floating_ip": [(V11 + "_floating_ips.json", "floating_ips.[]"), (V11 + "_floating_ip.json", "floating_ip")],
    "nova_pool": [(V11 + "_floating_ip_pools.json", "floating_ip_pools.[]")],
    "token_v3": [(V1 + "_v3__auth.json", "token")],
    "access_v2": [(V1 + "_v2_0__auth.json", "access"), (V1 + "_v2_0__auth_deployment.json", "access")],
}


def drivers() -> tuple[Any, Any]:
    args = dict(ex_force_auth_url="http://127.0.0.1:9", ex_force_auth_version="2.0_password", ex_tenant_name="t")
    cls = get_driver(Provider.OPENSTACK)
    return cls("u", "p", **args), cls("u", "p", api_version="2.0", **args)


D11, D20 = drivers()


def token_v3(answer: Any) -> None:
    conn = OpenStackIdentity_3_0_Connection("http://127.0.0.1:9", "u", "p", tenant_name="t")
    loads = types.SimpleNamespace(loads=lambda text: answer, dumps=json.dumps)
    real, openstack_identity.json = openstack_identity.json, loads
    try:
        conn._parse_token_response(types.SimpleNamespace(status=201, headers={"x-subject-token": "t"}, body="{}"))
    finally:
        openstack_identity.json = real
    OpenStackServiceCatalog(service_catalog=answer["token"]["catalog"], auth_version="3.x")


def access_v2(answer: Any) -> None:
    conn = OpenStackIdentity_2_0_Connection("http://127.0.0.1:9", "u", "p", tenant_name="t")
    conn.request = lambda *a, **k: types.SimpleNamespace(status=200, object=answer, body="")
    conn._authenticate_2_0_with_body("{}")
    OpenStackServiceCatalog(service_catalog=answer["access"]["serviceCatalog"], auth_version="2.0")


def created(answer: Any) -> None:
    """What create_node reads of POST /servers (then it shows the server, a 'server' row)."""
    answer["server"]["id"], answer["server"].get("adminPass")


def paginated(key: str) -> Callable[[Any], Any]:
    return lambda answer: D20._paginated_request("/x", key, Canned(answer))


# (call, kind, devcloud's answer (a key of make_state's answers), libcloud's reader of the whole answer)
CALLS: list[tuple[str, str, str, Callable[[Any], Any]]] = [
    ("list_nodes, 1.1 (one page)", "server", "servers/detail", D11._to_nodes),
    ("list_nodes, 2.0 (pages: servers_links)", "server", "servers/detail?limit=2",
     lambda a: D20._to_nodes(paginated("servers")(a))),
    ("ex_get_node_details / create_node's show", "server", "servers/{id}", lambda a: D11._to_node(a["server"])),
    ("create_node: POST /servers", "server_created", "POST servers", created),
    ("create_node with a boot volume: POST /servers", "server_created", "POST servers (bdm)", created),
    ("list_sizes", "flavor", "flavors/detail", D11._to_sizes),
    ("list_images, 1.1", "nova_image", "images/detail", lambda a: D11._to_images(a, True)),
    ("list_images, 2.0 (pages: next)", "glance_image", "image/v2/images?limit=2",
     lambda a: [D20._to_image(i) for i in D20._paginated_request_next("/v2/images", lambda p: Canned(a).request(),
                                                                       "images")]),
    ("list_volumes, 2.0 (pages: volumes_links)", "cinder_volume", "volumes/detail?limit=2",
     lambda a: D20._to_volumes(paginated("volumes")(a))),
    ("create_volume (lablease's POST), 2.0", "cinder_volume", "POST volumes", D20._to_volume),
    ("ex_get_volume, 2.0", "cinder_volume", "volumes/{id}", D20._to_volume),
    ("list_volumes, 1.1", "nova_volume", "os-volumes", D11._to_volumes),
    ("create_volume / ex_get_volume, 1.1", "nova_volume", "POST os-volumes", D11._to_volume),
    ("list_key_pairs", "keypair", "os-keypairs", D11._to_key_pairs),
    ("create_key_pair", "keypair", "POST os-keypairs", lambda a: D11._to_key_pair(a["keypair"])),
    ("import_key_pair_from_string", "keypair", "POST os-keypairs (import)", lambda a: D11._to_key_pair(a["keypair"])),
    ("ex_list_networks, 1.1", "nova_network", "os-networks", D11._to_networks),
    ("ex_list_networks, 2.0", "neutron_network", "network/v2.0/networks", D20._to_networks),
    ("ex_list_floating_ip_pools, 2.0", "neutron_network", "network/v2.0/networks?router:external",
     D20._to_floating_ip_pools),
    ("ex_list_security_groups, 1.1", "nova_security_group", "os-security-groups", D11._to_security_groups),
    ("ex_list_security_groups, 2.0", "neutron_security_group", "network/v2.0/security-groups",
     D20._to_security_groups),
    ("ex_get_node_ports", "interface", "servers/{id}/os-interface",
     lambda a: D20._to_port({**a["interfaceAttachments"][0], "id": a["interfaceAttachments"][0].pop("port_id")})),
    ("ex_list_floating_ips, 2.0", "floatingip", "network/v2.0/floatingips",
     lambda a: [f.get_node_id() for f in D20._to_floating_ips(a)]),
    ("ex_create_floating_ip, 2.0", "floatingip", "POST network/v2.0/floatingips",
     lambda a: OpenStack_2_FloatingIpPool("n", "ext", Canned(a, driver=D20)).create_floating_ip()),
    ("ex_list_floating_ips, 1.1", "nova_floating_ip", "os-floating-ips", D11._to_floating_ips),
    ("ex_create_floating_ip, 1.1", "nova_floating_ip", "POST os-floating-ips",
     lambda a: (a["floating_ip"]["id"], a["floating_ip"]["ip"])),
    ("ex_list_floating_ip_pools, 1.1", "nova_pool", "os-floating-ip-pools", D11._to_floating_ip_pools),
    ("3.x_password: POST /v3/auth/tokens", "token_v3", "POST v3/auth/tokens", token_v3),
    ("3.x_password with a cached token: GET /v3/auth/tokens", "token_v3", "GET v3/auth/tokens", token_v3),
    ("2.0_password: POST /v2.0/tokens", "access_v2", "POST v2.0/tokens", access_v2),
]


def relative(paths: set[str], root: str) -> set[str]:
    """Paths below the item root, relative to it; others (a next link) as they are, marked with ^."""
    out = set()
    for path in paths:
        if root and (path == root or root.startswith(path + ".")):
            continue
        out.add(path[len(root) + 1:] if root and path.startswith(root + ".") else path if not root else "^" + path)
    return out


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    app = create_app(DevcloudConfig.model_validate(make_state.CONFIG), tmp_path_factory.mktemp("fixtures"))
    with TestClient(app) as client:
        yield make_state(client, wait_until)


@pytest.mark.parametrize("call,kind,answer,parse", CALLS, ids=[c[0] for c in CALLS])
def test_devcloud_answers_carry_what_libcloud_reads_and_only_keys_real_clouds_send(answers, call, kind, answer,
                                                                                     parse):
    root = dict(KINDS[kind])
    mine_root = answers.roots.get(answer, next(iter(root.values())))
    mine = relative(set(key_paths(answers[answer])), mine_root)
    recorded: set[str] = set()
    needed: set[str] = set()
    for name, item_root in KINDS[kind]:
        recorded |= relative(set(key_paths(fixture(name))), item_root)
    parsed = 0
    for name, item_root in KINDS[kind]:
        try:
            needed |= relative(reads(parse, fixture(name)), item_root)
            parsed += 1
        except (KeyError, TypeError, IndexError, AttributeError):
            continue  # a recording of another call of this kind (a show, where this call reads a listing)
    assert parsed and needed, f"{call}: libcloud's reader read none of the recordings of {kind}"
    missing = sorted(needed - mine - set(ABSENT.get(kind, {})))
    invented = sorted(mine - recorded - set(DOCUMENTED.get(kind, {})))
    assert not missing, f"{call}: libcloud reads these keys of the recorded answer; devcloud's lacks them: {missing}"
    assert not invented, f"{call}: no recorded answer has these keys of devcloud's, nor DOCUMENTED: {invented}"
