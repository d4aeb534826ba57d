"""OpenStack clouds that are not OVH, on the engine's side: floating IPs, boot from volume, availability zone,
networks by name or id, key pair, config drive, pages, newer Nova microversions, and the config keys.

The cloud is the engine tests' in-memory fake behind the adapter boundary, given Neutron's floating IPs;
libcloud's own parsing is run on recorded-shape JSON. The end-to-end tests on devcloud are in
tests/integration/test_openstack_shapes.py.
"""

from __future__ import annotations

import pytest
from libcloud.common.exceptions import BaseHTTPError
from pydantic import ValidationError

from lablease.config.lab import LabConfig
from lablease.provision.adapters.base import FloatingIP, Network, Size
from lablease.provision.errors import ProvisionError
from lablease.provision.floating import describe, tags_of
from lablease.provision.hints import Resources
from lablease.provision.models import TAG_ATTEMPT, TAG_NODE, CreateRequest
from lablease.provision.selection import select_networks, select_size, wants_boot_volume
from tests.unit.test_provision_engine import FakeCloud, FakeDNS, FakeProbe, lab_key, make  # noqa: F401

LAB = "lab.example"
POOL = {"floating_ip_pool": "ext", "driver_args": {"username": "u", "password": "secret-pw", "api_version": "2.0",
                                                   "ex_force_auth_url": "http://127.0.0.1:1/v2.0/tokens"}}


class FloatingCloud(FakeCloud):
    """The fake cloud on a private network: servers get a fixed address only; ``ext`` is the external network
    floating IPs come from (Neutron's semantics: allocated with a port, released by one DELETE)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fips: dict[str, FloatingIP] = {}
        self.fip_posts = 0
        self.events: list[str] = []

    def list_networks(self):
        self._maybe_fail("list_networks")
        return [Network("n-priv", "private"), Network("n-ext", "ext")]

    def get_server(self, server_id):
        server = super().get_server(server_id)
        if server is not None and server.state == "running":  # a fixed address only
            server.private_ips, server.public_ips = server.public_ips, []
        return server

    def list_floating_ips(self, network_id=None):
        self._maybe_fail("list_floating_ips")
        with self.lock:
            return [FloatingIP(f.id, f.address, f.network_id, f.port_id, f.description, f.revision)
                    for f in self.fips.values() if network_id in (None, f.network_id)]

    def server_port(self, server_id):
        self._maybe_fail("server_port")
        return f"port-of-{server_id}" if server_id in self.servers else None

    def create_floating_ip(self, network_id, port_id, description):
        self._maybe_fail("create_floating_ip")
        with self.lock:
            self.fip_posts += 1
            n = next(self.ids)
            fip = FloatingIP(f"fip-{n}", f"127.77.0.{n}", network_id, port_id, description, 1)
            self.fips[fip.id] = fip
            self.events.append(f"allocate {fip.id}")
            return FloatingIP(fip.id, fip.address, fip.network_id, fip.port_id, fip.description)

    def associate_floating_ip(self, fip_id, port_id, description, revision=None):
        self._maybe_fail("associate_floating_ip")
        with self.lock:
            fip = self.fips.get(fip_id)
            if fip is None or (revision is not None and revision != fip.revision):
                return None  # Neutron's 404 or 412, as the adapter answers them
            fip.port_id, fip.description, fip.revision = port_id, description, (fip.revision or 0) + 1
            self.events.append(f"associate {fip_id}")
            return FloatingIP(fip.id, fip.address, fip.network_id, fip.port_id, fip.description)

    def delete_floating_ip(self, fip_id):
        self._maybe_fail("delete_floating_ip")
        with self.lock:
            self.fips.pop(fip_id, None)


def private(lab_key, cloud=None, **provider):  # noqa: F811
    return make(lab_key, cloud=cloud or FloatingCloud(), **POOL, **provider)


# -- floating IPs ------------------------------------------------------------------------------------


def test_a_node_on_a_private_network_is_named_in_dns_and_checked_over_ssh_on_its_floating_ip(lab_key):  # noqa: F811
    dns, probe = FakeDNS(), FakeProbe()
    prov, cloud = make(lab_key, cloud=FloatingCloud(), dns=dns, probe=probe, **POOL)
    node = prov.create("node1", "ubuntu", "22.04")
    (fip,) = cloud.fips.values()
    assert fip.network_id == "n-ext" and fip.port_id == f"port-of-{node.server_id}"
    assert node.address == fip.address and node.public_ips[0] == fip.address
    assert dns.records == {"node1": [fip.address]}
    assert [host for host, _ in probe.calls] == [fip.address]  # never the private address
    assert [n.name for n in cloud.last_spec.networks] == ["private"]  # not the external network
    assert tags_of(fip) == {"lablease-lab": LAB, TAG_NODE: "node1", TAG_ATTEMPT: tags_of(fip)[TAG_ATTEMPT]}


def test_destroy_releases_the_nodes_floating_ip_and_no_other(lab_key):  # noqa: F811
    prov, cloud = private(lab_key)
    prov.create("node1", "ubuntu", "22.04")
    prov.create("node2", "ubuntu", "22.04")
    prov.destroy("node1")
    assert [tags_of(f)[TAG_NODE] for f in cloud.fips.values()] == ["node2"]
    assert [s.name for s in cloud.servers.values()] == ["node2"]


def test_a_batch_of_destroys_lists_the_floating_ips_once_and_releases_each_nodes(lab_key):  # noqa: F811
    prov, cloud = private(lab_key)
    names = ["node1", "node2", "node3"]
    assert all(o.ok for o in prov.create_many([CreateRequest(n, "ubuntu", "22.04") for n in names]))
    cloud.calls.clear()
    assert all(o.ok for o in prov.destroy_many(names))
    assert cloud.calls["list_floating_ips"] == 1 and cloud.calls["delete_floating_ip"] == 3 and not cloud.fips


def test_the_floating_ip_id_is_reported_as_made_so_the_row_records_it(lab_key):  # noqa: F811
    events = []
    prov, cloud = make(lab_key, cloud=FloatingCloud(), on_progress=events.append, **POOL)
    prov.create("node1", "ubuntu", "22.04")
    made = [e.made for e in events if e.status == "made" and "floating_ip_id" in e.made]
    assert made == [{"floating_ip_id": next(iter(cloud.fips)), "floating_ip_source": "new"}]


def test_a_free_floating_ip_of_this_lab_is_reused_and_recorded_once_it_is_this_nodes(lab_key):  # noqa: F811
    cloud = FloatingCloud()
    cloud.fips["fip-old"] = FloatingIP("fip-old", "127.77.1.1", "n-ext", None, describe(LAB, "gone", "1-x"), 3)
    cloud.fips["fip-other"] = FloatingIP("fip-other", "127.77.1.2", "n-ext", None, describe("other.lab", "n", "1-y"))
    order = []
    cloud.events = order
    prov, _ = make(lab_key, cloud=cloud, **POOL,
                   on_progress=lambda e: order.append("recorded") if "floating_ip_id" in e.made else None)
    node = prov.create("node1", "ubuntu", "22.04")
    assert node.address == "127.77.1.1" and cloud.fip_posts == 0
    assert order == ["associate fip-old", "recorded"]
    assert tags_of(cloud.fips["fip-old"])[TAG_NODE] == "node1"
    assert cloud.fips["fip-other"].port_id is None  # another lab's free address is never taken


def test_a_free_floating_ip_another_process_took_meanwhile_is_left_to_it_and_a_new_one_allocated(lab_key):  # noqa: F811
    cloud = FloatingCloud()
    cloud.fips["fip-old"] = FloatingIP("fip-old", "127.77.1.1", "n-ext", None, describe(LAB, "gone", "1-x"), 3)
    listed = cloud.list_floating_ips

    def then_taken(network_id=None):
        answer = listed(network_id)
        theirs = cloud.fips["fip-old"]  # another lablease process associates it right after this listing
        theirs.port_id, theirs.description, theirs.revision = "their-port", describe(LAB, "other", "1-y"), 4
        return answer

    cloud.list_floating_ips = then_taken
    events = []
    prov, _ = make(lab_key, cloud=cloud, on_progress=events.append, **POOL)
    node = prov.create("node1", "ubuntu", "22.04")
    assert node.address != "127.77.1.1" and cloud.fip_posts == 1
    assert cloud.fips["fip-old"].port_id == "their-port"  # never moved, never recorded as ours
    assert "fip-old" not in [e.made.get("floating_ip_id") for e in events]
    prov.destroy("node1")
    assert list(cloud.fips) == ["fip-old"]


def test_a_node_failing_after_its_floating_ip_was_allocated_releases_it(lab_key):  # noqa: F811
    prov, cloud = private(lab_key, launch_retries=2)
    prov.context.probe.never = True
    with pytest.raises(ProvisionError) as err:
        prov.create("node1", "ubuntu", "22.04")
    assert err.value.stage.value == "ssh"
    assert cloud.fip_posts == 2 and not cloud.fips and not cloud.servers


def test_an_allocation_whose_answer_was_lost_is_adopted_by_its_description(lab_key):  # noqa: F811
    cloud = FloatingCloud()
    real = cloud.create_floating_ip

    def lost(network_id, port_id, description):
        real(network_id, port_id, description)
        raise BaseHTTPError(502, "502 Bad Gateway")

    cloud.create_floating_ip = lost
    prov, _ = private(lab_key, cloud=cloud)
    node = prov.create("node1", "ubuntu", "22.04")
    assert cloud.fip_posts == 1 and [f.address for f in cloud.fips.values()] == [node.address]


def test_a_pool_that_is_not_a_network_of_the_cloud_is_a_config_error_before_anything_is_made(lab_key):  # noqa: F811
    prov, cloud = make(lab_key, cloud=FloatingCloud(), **{**POOL, "floating_ip_pool": "nope"})
    with pytest.raises(ProvisionError) as err:
        prov.create("node1", "ubuntu", "22.04")
    assert err.value.kind.value == "config" and "floating_ip_pool 'nope'" in err.value.message
    assert not cloud.servers and cloud.calls["create_server"] == 0


def test_the_reconciler_sees_this_labs_floating_ips_and_releases_only_those_still_described_as_judged(lab_key):  # noqa: F811
    prov, cloud = private(lab_key)
    cloud.fips["a"] = FloatingIP("a", "127.77.2.1", "n-ext", None, describe(LAB, "n1", "1-a"))
    cloud.fips["b"] = FloatingIP("b", "127.77.2.2", "n-ext", None, describe(LAB, "n2", "1-b"))
    cloud.fips["c"] = FloatingIP("c", "127.77.2.3", "n-ext", None, "made by hand")
    owned = prov.list_owned().floating_ips
    assert sorted((f.id, f.node, f.attempt) for f in owned) == [("a", "n1", "1-a"), ("b", "n2", "1-b")]
    cloud.fips["b"].description = describe(LAB, "n3", "1-new")  # reused meanwhile
    assert prov.remove_leaks([], [], {f.id: f.description for f in owned}) == []
    assert sorted(cloud.fips) == ["b", "c"]


def test_without_a_pool_nothing_asks_for_floating_ips(lab_key):  # noqa: F811
    prov, cloud = make(lab_key)  # the plain fake has no floating IP calls at all: any would raise
    prov.create("node1", "ubuntu", "22.04")
    prov.destroy("node1")
    assert prov.list_owned().floating_ips == []


# -- boot from volume, zone, networks, key pair, config drive ------------------------------------------


def test_a_flavor_with_no_disk_boots_from_a_volume_of_the_disk_the_node_needs(lab_key):  # noqa: F811
    cloud = FakeCloud()
    cloud.list_sizes = lambda: [Size("z", "z1.large", 8000, 0, 2), Size("s", "m1.huge", 16000, 80, 8)]
    prov, _ = make(lab_key, cloud=cloud)
    prov.create("node1", "ubuntu", "22.04", {"machine": {"disk": 30}})
    assert cloud.last_spec.size.name == "z1.large" and cloud.last_spec.boot_volume_size == 30


def test_boot_from_volume_never_skips_flavors_without_disk_and_always_applies_to_every_flavor():
    sizes = [Size("z", "z1", 8000, 0, 2), Size("s", "m1", 8000, 40, 2)]
    need = Resources(disk=20, ram=8000, cpus=1, volume_count=0, volume_size=0)
    assert select_size(sizes, need, [".*"], [], boot_from_volume="never").name == "m1"
    assert select_size(sizes, need, [".*"], [], boot_from_volume="auto").name == "z1"
    assert wants_boot_volume(sizes[1], "always") and not wants_boot_volume(sizes[1], "auto")


def test_zone_key_pair_and_config_drive_go_to_the_create_and_the_key_pair_replaces_the_labs_key_in_user_data(
        lab_key):  # noqa: F811
    prov, cloud = make(lab_key, availability_zone="az2", key_name="lab-key", config_drive=True,
                       authorized_keys=["ssh-ed25519 AAAAextra extra@x"])
    prov.create("node1", "ubuntu", "22.04")
    spec = cloud.last_spec
    assert (spec.availability_zone, spec.key_name, spec.config_drive) == ("az2", "lab-key", True)
    assert "lablease@lab.example" not in spec.userdata and "AAAAextra" in spec.userdata


def test_networks_are_chosen_by_id_or_exact_name_in_the_order_given():
    nets = [Network("id-1", "priv"), Network("id-2", "storage"), Network("id-3", "dup"), Network("id-4", "dup")]
    assert [n.id for n in select_networks(nets, [".*"], exact=["storage", "id-1"])] == ["id-2", "id-1"]
    assert [n.id for n in select_networks(nets, [".*"], exact=["id-4"])] == ["id-4"]
    for wanted, words in (("dup", "ambiguous"), ("nope", "does not exist")):
        with pytest.raises(ProvisionError, match=words):
            select_networks(nets, [".*"], exact=[wanted])


# -- config -------------------------------------------------------------------------------------------


NEUTRON = {"username": "u", "password": "p", "ex_force_auth_url": "http://127.0.0.1:1/v3", "api_version": "2.0"}


def _provider(**keys):
    settings = {"driver": "openstack", "driver_args": NEUTRON, **keys}
    return LabConfig.model_validate({"libcloud": {"providers": {"os": settings}}}).provider("os")


def test_every_new_key_defaults_to_todays_behaviour():
    p = _provider()
    assert (p.floating_ip_pool, p.boot_from_volume, p.availability_zone, p.networks, p.key_name, p.config_drive) == \
        (None, "auto", None, [], None, False)


@pytest.mark.parametrize("keys, words", [
    ({"networks": ["priv"], "allow_networks": "pr.*"}, "not both"),
    ({"networks": ["ext"], "floating_ip_pool": "ext", "driver_args": NEUTRON}, "names the floating IP pool"),
    ({"floating_ip_pool": " "}, "must not be blank"),
    ({"boot_from_volume": "yes"}, "'auto', 'always' or 'never'"),
    ({"networks": [""]}, "list of network names or ids"),
    ({"floating_ip_poll": "ext"}, "floating_ip_poll"),
    ({"floating_ip_pool": "ext", "driver_args": {"username": "u", "password": "p", "ex_force_auth_url": "http://x"}},
     "set driver_args.api_version to '2.0'"),
])
def test_bad_openstack_shape_keys_are_refused_with_the_reason(keys, words):
    with pytest.raises((ValidationError, ValueError)) as err:
        _provider(**keys)
    assert words in str(err.value)


# -- pages and microversions, through libcloud's own driver ---------------------------------------------


class PagedConnection:
    """Answers ``key`` listings ``page`` items at a time with Nova/Neutron's ``<key>_links`` next links."""

    def __init__(self, key: str, items: list[dict], page: int):
        self.key, self.items, self.page, self.requests = key, items, page, []

    def request(self, url, params=None, **_):
        params = dict(params or {})
        self.requests.append((url, params))
        marker = params.get("marker")
        marker = marker[0] if isinstance(marker, list) else marker
        start = 0 if marker is None else [i["id"] for i in self.items].index(marker) + 1
        chunk = self.items[start:start + self.page]
        body = {self.key: chunk}
        if start + self.page < len(self.items):
            body[f"{self.key}_links"] = [{"rel": "next", "href": f"http://127.0.0.1:1{url}?limit={self.page}"
                                                                  f"&marker={chunk[-1]['id']}"}]
        return type("Answer", (), {"object": body})()


def _driver():
    from libcloud.compute.drivers.openstack import OpenStack_2_NodeDriver

    return OpenStack_2_NodeDriver("u", "p", ex_force_auth_url="http://127.0.0.1:1/v3",
                                  ex_force_auth_version="3.x_password", ex_tenant_name="demo")


def test_flavors_networks_security_groups_and_floating_ips_are_listed_across_every_page():
    from lablease.provision.adapters import openstack_calls as neutron

    driver = _driver()
    flavors = [{"id": str(i), "name": f"f{i}", "ram": 512, "disk": 0, "vcpus": 1, "swap": 0} for i in range(25)]
    driver.connection = PagedConnection("flavors", flavors, 10)
    assert [s.id for s in neutron.list_sizes(driver)] == [f["id"] for f in flavors]
    assert len(driver.connection.requests) == 3
    fips = [{"id": f"fip-{i:02d}", "floating_ip_address": f"127.77.0.{i}", "floating_network_id": "ext",
             "port_id": None, "description": ""} for i in range(25)]
    driver.network_connection = PagedConnection("floatingips", fips, 10)
    assert [f.id for f in neutron.list_floating_ips(driver, "ext")] == [f["id"] for f in fips]
    assert all(p.get("floating_network_id") in ("ext", ["ext"]) for _, p in driver.network_connection.requests)
    nets = [{"id": f"n{i}", "name": f"net{i}", "subnets": [], "router:external": False} for i in range(12)]
    driver.network_connection = PagedConnection("networks", nets, 5)
    assert [n.id for n in neutron.list_networks(driver)] == [n["id"] for n in nets]
    groups = [{"id": f"g{i}", "name": f"g{i}", "description": "", "tenant_id": "p", "security_group_rules": []} for i in range(11)]
    driver.network_connection = PagedConnection("security_groups", groups, 10)
    assert len(neutron.list_security_groups(driver)) == 11


def test_a_server_in_nova_2_47_shape_and_a_flavor_in_2_61_shape_parse():
    from lablease.provision.adapters.openstack import OpenStackAdapter

    driver = _driver()
    server = {  # 2.47+: the flavor is embedded (no id); boot from volume: "image" is ""
        "id": "s-1", "name": "node1", "status": "ACTIVE", "tenant_id": "p", "user_id": "u", "hostId": "h",
        "created": "2026-12-07T00:00:00Z", "updated": "2026-12-07T00:00:00Z", "accessIPv4": "", "accessIPv6": "",
        "addresses": {"private": [{"addr": "10.0.0.5", "version": 4, "OS-EXT-IPS:type": "fixed"},
                                  {"addr": "127.77.0.9", "version": 4, "OS-EXT-IPS:type": "floating"}]},
        "image": "", "flavor": {"original_name": "z1.large", "vcpus": 2, "ram": 8000, "disk": 0, "ephemeral": 0,
                                "swap": 0, "extra_specs": {"hw:cpu_policy": "shared"}},
        "metadata": {"lablease-node": "node1"}, "links": [{"rel": "self", "href": "http://127.0.0.1:1/s-1"}],
        "OS-EXT-AZ:availability_zone": "az2", "locked": False, "description": None, "tags": [],
    }
    parsed = OpenStackAdapter._server(driver._to_node(server))
    assert (parsed.state, parsed.private_ips, parsed.public_ips) == ("running", ["10.0.0.5"], ["127.77.0.9"])
    assert parsed.metadata == {"lablease-node": "node1"}
    flavor = {"id": "z", "name": "z1.large", "ram": 8000, "disk": 0, "vcpus": 2, "swap": "", "rxtx_factor": 1.0,
              "OS-FLV-EXT-DATA:ephemeral": 0, "os-flavor-access:is_public": True, "description": "BFV only",
              "extra_specs": {"hw:mem_page_size": "any"}, "links": []}
    from lablease.provision.adapters import openstack_calls as neutron

    driver.connection = PagedConnection("flavors", [flavor], 10)
    (size,) = neutron.list_sizes(driver)
    assert (size.id, size.ram, size.disk, size.vcpus) == ("z", 8000, 0, 2)


@pytest.mark.parametrize("words", ["Quota exceeded for resources: ['floatingip'].",
                                   "No more IP addresses available on network 5a0b."])
def test_neutrons_409_for_floating_ip_quota_or_an_exhausted_pool_is_a_quota_error_not_retried(words):
    from lablease.provision.adapters.openstack import classify_error

    info = classify_error(BaseHTTPError(409, f"409 Conflict {words}"))
    assert info.kind.value == "quota"


def test_a_batch_looks_for_free_floating_ips_once_when_there_are_none(lab_key):  # noqa: F811
    prov, cloud = private(lab_key)
    names = [f"node{i}" for i in range(5)]
    assert all(o.ok for o in prov.create_many([CreateRequest(n, "ubuntu", "22.04") for n in names]))
    assert cloud.calls["list_floating_ips"] == 1 and cloud.fip_posts == 5


def test_reusing_a_floating_ip_is_a_put_conditional_on_the_revision_listed_and_a_412_means_not_ours():
    from lablease.config.lab import ProviderConfig
    from lablease.provision.adapters.openstack import OpenStackAdapter

    sent = []

    class Neutron:
        def request(self, action, params=None, data=None, headers=None, method="GET"):
            sent.append((method, action, headers))
            if headers and headers.get("If-Match") != "revision_number=7":
                raise BaseHTTPError(412, "412 Precondition Failed: revision_number=7 does not match")
            return type("Answer", (), {"object": {"floatingip": {"id": "f", "floating_ip_address": "127.77.0.1",
                                                                 "port_id": "p", "revision_number": 8}}})()

    adapter = OpenStackAdapter(ProviderConfig.model_validate({"driver": "openstack", "driver_args": POOL["driver_args"]}))
    driver = _driver()
    driver.network_connection = Neutron()
    adapter._driver = lambda: driver  # the driver above, without authenticating
    assert adapter.associate_floating_ip("f", "p", "d", 7).revision == 8
    assert adapter.associate_floating_ip("f", "p", "d", 6) is None
    assert [h for _, _, h in sent] == [{"If-Match": "revision_number=7"}, {"If-Match": "revision_number=6"}]
