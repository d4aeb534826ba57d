"""A machine type served by several clouds (``libcloud.machine_types``), end to end: `lablease serve` over HTTP
with two real clouds on loopback, the DNS service in front of a real BIND.

Type ``mixed`` is the first cloud (a devcloud with a quota of 2 servers), then the second, which has room for 2
servers too. The second cloud is a parameter (``SECOND_CLOUDS``): a second devcloud, or EC2 (the test worker's
shared moto harness with an instance limit of 2: ``InstanceLimitExceeded``, a quota refusal, beyond it; a real sshd
per running instance). Each node gets one 1 GB volume.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lablease.provision.devlab import devcloud_lab_data, ec2_lab_data, generate_lab_key
from lablease.testing.lockserver import start_lock_server

pytestmark = pytest.mark.integration

DOMAIN = "lab.example"
OWNER = "alice@lab"
QUOTA = {"instances": 2, "volumes": 10, "cores": 100, "ram": 400000}
CLOUD = {"boot_delay": 0.3, "volume_delay": 0.1, "ssh": {"enabled": True, "delay": 0.2, "runcmd_delay": 0.1},
         "quotas": QUOTA}
TIMINGS = {"max_parallel": 10, "launch_retries": 2, "boot_timeout": 30, "ready_timeout": 30, "volume_timeout": 20,
           "delete_timeout": 4}


@dataclass
class Cloud:
    """One cloud as a test sees it: its provider settings and what it holds now."""

    settings: dict[str, Any]
    servers: Callable[[], list[str]]  # ids of the servers it holds
    volumes: Callable[[], list[str]]
    refusal: str  # what its refusal of one server too many says
    host_keys: Callable[[], dict[str, str]] | None = None  # server id -> the host key its sshd presents


def _devcloud(workdir: Path, key: Path, request: pytest.FixtureRequest) -> tuple[Cloud, Callable[[], None]]:
    from lablease.testing.devcloud import _merge, start_devcloud
    from tests.fixtures.devcloud import TEST_DEFAULTS

    cloud = start_devcloud(workdir, _merge(TEST_DEFAULTS, CLOUD))
    settings = devcloud_lab_data(cloud, key, machine_type="x", **TIMINGS)["libcloud"]["providers"]["x"]
    return Cloud(settings, lambda: [s["id"] for s in cloud.resources()["servers"]],
                 lambda: [v["id"] for v in cloud.resources()["volumes"]], "Quota exceeded for instances"), cloud.stop


def _ec2(workdir: Path, key: Path, request: pytest.FixtureRequest) -> tuple[Cloud, Callable[[], None]]:
    """The worker's shared moto harness (tests/fixtures/moto_ec2.py), reset with an instance limit of 2 for the
    module and reset again at its end (the process is shared: it is not stopped)."""
    from lablease.testing.moto_ec2 import READY_COMMAND

    ec2 = request.getfixturevalue("_moto_ec2_shared").get()
    ec2.reset(max_instances=2, pending_seconds=0.3)
    settings = ec2_lab_data(ec2, key, machine_type="x", ready_command=READY_COMMAND, api_timeout=5,
                            **TIMINGS)["libcloud"]["providers"]["x"]
    return Cloud(settings, lambda: [i["id"] for i in ec2.instances() if i["state"] != "terminated"],
                 lambda: [v["id"] for v in ec2.volumes()],  # lablease's and each instance's root volume
                 "InstanceLimitExceeded",
                 lambda: {i["id"]: i["host_key"] for i in ec2.instances()}), ec2.reset


# The second cloud of type mixed, by name: each entry starts one with room for 2 servers (in ``workdir``, the lab
# logging in with ``key``; ``request`` for shared fixtures) and returns it with its stop.
SECOND_CLOUDS: dict[str, Callable[[Path, Path, pytest.FixtureRequest], tuple[Cloud, Callable[[], None]]]] = {
    "devcloud": _devcloud, "ec2": _ec2}


class Lab:
    """The running lab service, its two clouds and its zone."""

    def __init__(self, url: str, clouds: dict[str, Cloud], bind) -> None:  # noqa: ANN001
        self.clouds, self.bind = clouds, bind
        self.http = httpx.Client(base_url=url, timeout=120)

    def add(self, count: int, machine_type: str) -> list[str]:
        names = [f"node{i}.{DOMAIN}" for i in range(1, count + 1)]
        for name in names:
            r = self.http.post("/nodes/", json={"name": name, "machine_type": machine_type, "up": True})
            assert r.status_code == 200, r.text
        return names

    def lock_many(self, count: int, machine_type: str = "mixed") -> httpx.Response:
        return self.http.post("/nodes/lock_many/", json={"count": count, "machine_type": machine_type,
                                                         "locked_by": OWNER, "description": "job 1"})

    def node(self, name: str) -> dict[str, Any]:
        return self.http.get(f"/nodes/{name}/").json()

    def held(self) -> dict[str, int]:
        return {provider: len(cloud.servers()) for provider, cloud in self.clouds.items()}

    def assert_nothing_left(self, names: list[str]) -> None:
        assert self.held() == {p: 0 for p in self.clouds}
        assert {p: c.volumes() for p, c in self.clouds.items()} == {p: [] for p in self.clouds}
        assert {n: self.bind.addresses(n.split(".")[0]) for n in names} == {n: set() for n in names}
        for name in names:
            node = self.node(name)
            assert (node["locked"], node["state"], node["cloud_server_id"], node["provider"]) == \
                (False, "idle", None, None), node


@pytest.fixture(scope="module")
def common(request, tmp_path_factory) -> Iterator[tuple[Cloud, Any, Any, Path]]:
    """BIND, the DNS service, the cloud ``first`` (a devcloud with a quota of 2 servers) and the lab's key, shared
    by this module's tests whichever the second cloud: each test leaves the clouds and the zone empty (they check
    it)."""
    from lablease.testing.bind import start_bind
    from lablease.testing.dns import start_dns_service

    work = tmp_path_factory.mktemp("fallback-stack")
    key = generate_lab_key(work / "lab_key")
    stops: list[Callable[[], None]] = []
    try:
        bind = start_bind(work / "bind", DOMAIN, f"*.{DOMAIN}.")
        stops.append(bind.stop)
        dns = start_dns_service(work / "dns", bind, allow_pattern=r"node[0-9]+")
        stops.append(dns.stop)
        first, stop = _devcloud(work / "first", key, request)
        stops.append(stop)
        yield first, bind, dns, key
    finally:
        for stop in reversed(stops):
            stop()


@pytest.fixture(scope="module", params=sorted(SECOND_CLOUDS))
def stack(request, common, tmp_path_factory) -> Iterator[tuple[dict[str, Cloud], Any, Any, Path]]:
    """``common`` and the cloud ``second`` (the parameter, room for 2 servers)."""
    first, bind, dns, key = common
    second, stop = SECOND_CLOUDS[request.param](tmp_path_factory.mktemp(f"second-{request.param}"), key, request)
    try:
        yield {"first": first, "second": second}, bind, dns, key
    finally:
        stop()


@pytest.fixture
def lab_factory(stack, tmp_path) -> Iterator[Callable[[dict[str, Any] | None], Lab]]:
    """Start a lab service on ``stack`` with providers ``first`` and ``second``; ``machine_types`` is the config's
    ``libcloud.machine_types`` (None: the key is absent)."""
    clouds, bind, dns, _ = stack
    started: list[tuple[Any, Lab]] = []

    def start(machine_types: dict[str, Any] | None) -> Lab:
        libcloud: dict[str, Any] = {"providers": {p: c.settings for p, c in clouds.items()}}
        if machine_types is not None:
            libcloud["machine_types"] = machine_types
        top = {"lab_domain": DOMAIN, "nsupdate_url": dns.update_url, "libcloud": libcloud,
               "openstack": {"volumes": {"count": 1, "size": 1}}}
        server = start_lock_server(tmp_path / "lab", database_url=f"sqlite:///{tmp_path / 'lab.db'}",
                                   lab_domain=DOMAIN, top=top)
        lab = Lab(server.url, clouds, bind)
        started.append((server, lab))
        return lab

    yield start
    for server, lab in started:
        lab.http.close()
        server.stop()


MIXED = {"mixed": {"providers": ["first", "second"]}}


def test_lock_many_of_a_mixed_type_takes_what_the_first_cloud_can_give_and_the_rest_from_the_second(lab_factory):
    lab = lab_factory(MIXED)
    names = lab.add(4, "mixed")

    r = lab.lock_many(4)

    assert r.status_code == 200, r.text
    assert sorted(n["name"] for n in r.json()) == names
    nodes = [lab.node(n) for n in names]
    assert {n["state"] for n in nodes} == {"ready"} and all(n["ssh_pub_key"] for n in nodes)
    assert Counter(n["provider"] for n in nodes) == {"first": 2, "second": 2}
    for node in nodes:  # each record names the provider whose cloud holds its server
        cloud = lab.clouds[node["provider"]]
        assert node["cloud_server_id"] in cloud.servers()
        if cloud.host_keys is not None:  # ssh_pub_key: the key the server's sshd presents
            assert node["ssh_pub_key"] == cloud.host_keys()[node["cloud_server_id"]]
        assert node["machine_type"] == "mixed"
        assert lab.bind.addresses(node["name"].split(".")[0]) == set(node["addresses"])
    assert lab.held() == {"first": 2, "second": 2}
    for node in nodes:  # the events of each node that went to the second cloud say why
        said = [e["new"] for e in lab.http.get(f"/nodes/{node['name']}/events/").json()
                if e["action"] == "stage" and e["new"]["stage"] == "provider"]
        if node["provider"] == "first":
            assert said == []
        else:
            assert [(s["status"], s["error"].split(" (")[0]) for s in said] == [("fallback", "first could not give it")]
            assert "quota" in said[0]["error"] and said[0]["error"].endswith("trying second")

    page = lab.http.get("/ui/").text  # the dashboard and the metrics name the provider too
    assert (page.count("mixed via first"), page.count("mixed via second")) == (2, 2)
    metrics = lab.http.get("/metrics").text
    for provider in ("first", "second"):
        assert f'lablease_nodes_by_provider{{machine_type="mixed",provider="{provider}",state="ready"}} 2.0' in metrics
    assert 'lablease_provider_fallbacks_total{machine_type="first",to="second"} 2.0' in metrics

    r = lab.http.post("/nodes/unlock_many/", json={"names": names, "locked_by": OWNER})

    assert r.status_code == 200, r.text
    lab.assert_nothing_left(names)


def test_a_node_locked_alone_also_falls_back_and_each_provider_reconciles_and_force_unlocks_what_it_made(lab_factory):
    lab = lab_factory(MIXED)
    names = lab.add(3, "mixed")
    assert lab.lock_many(2).status_code == 200  # the first cloud is full now
    alone = lab.http.put(f"/nodes/{names[2]}/lock/", json={"locked": True, "locked_by": OWNER, "description": "d"})
    assert alone.status_code == 200, alone.text
    assert [lab.node(n)["provider"] for n in names] == ["first", "first", "second"]
    assert lab.node(names[2])["state"] == "ready"

    reports = lab.http.post("/lab/reconcile/", params={"dry_run": "true", "settle": "0.5"}).json()

    # the second cloud's server belongs to a record of type mixed, not of type second: it is not a leak
    assert sorted(r["machine_type"] for r in reports) == ["first", "second"]
    for report in reports:
        assert (any(report["found"].values()), report["actions"]) == (False, []), report
    forced = lab.http.post(f"/lab/nodes/{names[2]}/force-unlock/", params={"by": "root@admin"})
    assert forced.status_code == 200, forced.text
    assert (forced.json()["state"], forced.json()["provider"]) == ("idle", None)
    assert lab.held() == {"first": 2, "second": 0}
    assert lab.http.post("/nodes/unlock_many/", json={"names": names[:2], "locked_by": OWNER}).status_code == 200
    lab.assert_nothing_left(names)


def test_a_mixed_lock_more_than_both_clouds_hold_is_503_and_leaves_nothing_in_either_cloud(lab_factory):
    lab = lab_factory(MIXED)
    names = lab.add(5, "mixed")

    r = lab.lock_many(5)

    assert r.status_code == 503, r.text
    assert "quota exceeded" in r.json()["message"] and lab.clouds["second"].refusal in r.json()["message"], r.text
    lab.assert_nothing_left(names)
    r = lab.lock_many(4)  # the rollback really gave the room back
    assert r.status_code == 200, r.text
    assert lab.http.post("/nodes/unlock_many/", json={"names": [n["name"] for n in r.json()],
                                                      "locked_by": OWNER}).status_code == 200
    lab.assert_nothing_left(names)


@pytest.mark.parametrize("stack", ["devcloud"], indirect=True)  # the first cloud alone: one second cloud is enough
def test_a_single_provider_type_keeps_to_its_own_cloud_without_machine_types(lab_factory):
    lab = lab_factory(None)
    names = lab.add(3, "first")

    full = lab.lock_many(3, "first")  # one more than its quota: no fallback without machine_types

    assert full.status_code == 503 and "quota exceeded" in full.json()["message"], full.text
    lab.assert_nothing_left(names)
    r = lab.lock_many(2, "first")
    assert r.status_code == 200, r.text
    assert [lab.node(n["name"])["provider"] for n in r.json()] == ["first", "first"]
    assert lab.held() == {"first": 2, "second": 0}
    assert lab.http.post("/nodes/unlock_many/", json={"names": [n["name"] for n in r.json()],
                                                      "locked_by": OWNER}).status_code == 200
    lab.assert_nothing_left(names)
