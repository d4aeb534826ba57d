"""Lost create answers: the cloud (or the DNS service) acted, the engine never heard. The engine looks for what
the create made, by name and this attempt's tag, and adopts it; nothing is made twice, nothing is left behind.

Real devcloud over HTTP (its ``lost_answers`` fault), the real libcloud driver, BIND and the DNS service.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from lablease.dns.client import DNSClient
from lablease.provision.context import ProvisionerOptions
from lablease.provision.devlab import devcloud_lab_config, generate_lab_key
from lablease.provision.engine import Provisioner
from lablease.testing.lossy_proxy import LossyProxy

pytestmark = pytest.mark.integration

CLOUD = {"boot_delay": 0.3, "volume_delay": 0.1, "ssh": {"enabled": True, "delay": 0.2, "runcmd_delay": 0.1}}
TWO_VOLUMES = {"volumes": {"count": 2, "size": 1}}


@pytest.fixture
def make_lab(devcloud_factory, dns_service, tmp_path):
    """devcloud whose answers to ``match`` are lost (mode ``mode``), and an engine on it with ``dns_url``'s DNS."""
    opened = []

    def make(match: str | None = None, mode: str = "reset", dns_url: str | None = None, **provider):
        faults = {"lost_answers": [{"match": match, "probability": 1.0, "mode": mode, "seconds": 2.5}]} if match else {}
        cloud = devcloud_factory({**CLOUD, "faults": faults})
        key = generate_lab_key(tmp_path / "lab_key")
        url = dns_url or dns_service.update_url
        config = devcloud_lab_config(cloud, key, nsupdate_url=url, launch_retries=1, api_timeout=1, **provider)
        dns = DNSClient(url)
        prov = Provisioner(config, "dev", dns, ProvisionerOptions(token_cache_dir=tmp_path / f"t{len(opened)}",
                                                                   poll_cap=0.3))
        opened.append((prov, dns))
        return prov, cloud

    yield make
    for prov, dns in opened:
        prov.close()
        dns.close()


def _destroyed_leaves_nothing(prov, cloud, bind, name):
    prov.destroy(name)
    res = cloud.resources()
    assert res["servers"] == [] and res["volumes"] == []
    assert bind.addresses(name) == set()


def test_a_server_whose_create_answer_was_cut_is_adopted_not_made_twice(make_lab, dns_service):
    make = make_lab
    prov, cloud = make("POST /compute/v2.1/servers", mode="reset")
    node = prov.create("node1", "ubuntu", "22.04")
    servers = cloud.resources()["servers"]
    assert [s["id"] for s in servers] == [node.server_id] and node.attempts == 1
    assert cloud.request_counts()["POST /compute/v2.1/servers"] == 1
    _destroyed_leaves_nothing(prov, cloud, dns_service.bind, "node1")


def test_volumes_whose_create_answers_timed_out_are_adopted_not_made_twice(make_lab, dns_service):
    make = make_lab
    prov, cloud = make("POST /compute/v2.1/os-volumes", mode="timeout")
    node = prov.create("node2", "ubuntu", "22.04", TWO_VOLUMES)
    volumes = cloud.resources()["volumes"]
    assert sorted(v["name"] for v in volumes) == ["node2_0", "node2_1"] and node.attempts == 1
    assert sorted(v["id"] for v in volumes) == sorted(node.volume_ids)
    assert cloud.request_counts()["POST /compute/v2.1/os-volumes"] == 2
    _destroyed_leaves_nothing(prov, cloud, dns_service.bind, "node2")


def test_attachments_whose_answers_were_cut_are_adopted_and_complete(make_lab, dns_service):
    make = make_lab
    prov, cloud = make("POST /compute/v2.1/servers/{server_id}/os-volume_attachments", mode="reset")
    node = prov.create("node3", "ubuntu", "22.04", TWO_VOLUMES)
    volumes = cloud.resources()["volumes"]
    assert node.attempts == 1 and len(volumes) == 2
    assert all(v["status"] == "in-use" for v in volumes), volumes
    assert cloud.request_counts()["POST /compute/v2.1/servers/{server_id}/os-volume_attachments"] == 2
    _destroyed_leaves_nothing(prov, cloud, dns_service.bind, "node3")


def test_a_dns_registration_whose_answer_was_lost_is_asked_again_and_holds_one_address(make_lab, dns_service):
    make = make_lab
    upstream = urlsplit(dns_service.url)
    proxy = LossyProxy(upstream.port, match="/update?", lose=1)
    try:
        prov, cloud = make(dns_url=f"{proxy.url}{upstream.path}/update")
        node = prov.create("node4", "ubuntu", "22.04")
        assert proxy.lost == 1  # the service registered the name; its answer never came
        assert dns_service.bind.addresses("node4") == {node.address} and node.attempts == 1
        _destroyed_leaves_nothing(prov, cloud, dns_service.bind, "node4")
    finally:
        proxy.close()
