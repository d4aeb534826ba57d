"""Node names in any case, through libcloud over HTTP to devcloud: one server per node, and destroy finds it.

This devcloud runs no sshd, so readiness is a stub; the names the cloud sees are what is tested.
"""

from __future__ import annotations

import pytest

from lablease.provision.devlab import devcloud_lab_config, generate_lab_key
from lablease.provision.engine import Provisioner
from lablease.provision.context import ProvisionerOptions
from lablease.provision.readiness import ReadyResult

pytestmark = pytest.mark.integration


class AddressIsReady:
    """Readiness without SSH: a node is ready once it has an address."""

    def wait(self, host, timeout, node=None, **_) -> ReadyResult:  # the probe's other options do not matter here
        return ReadyResult(host_key=f"ssh-ed25519 KEY-OF-{host}", attempts=1, seconds=0.0)


@pytest.fixture
def engine(devcloud, tmp_path):
    key = generate_lab_key(tmp_path / "lab_key")
    config = devcloud_lab_config(devcloud, key)  # lab domain lab.example
    prov = Provisioner(config, "dev", None, ProvisionerOptions(token_cache_dir=tmp_path / "tokens", probe=AddressIsReady(), poll_cap=0.5))
    yield prov, devcloud
    prov.close()


def test_a_node_created_as_Node1_is_destroyed_as_node1_and_nothing_is_left(engine):
    prov, cloud = engine
    prov.create("Node1", "ubuntu", "22.04", {"volumes": {"count": 1, "size": 1}})
    res = cloud.resources()
    assert len(res["servers"]) == 1 and len(res["volumes"]) == 1, res
    prov.destroy("node1")
    res = cloud.resources()
    assert res["servers"] == [] and res["volumes"] == [], res


def test_a_name_in_the_lab_domain_in_upper_case_gives_a_server_named_by_the_short_name(engine):
    prov, cloud = engine
    node = prov.create("node2.LAB.EXAMPLE", "ubuntu", "22.04")
    assert node.name == "node2" and node.fqdn == "node2.lab.example"
    assert [s["name"] for s in cloud.resources()["servers"]] == ["node2"]
    prov.destroy("NODE2.lab.example")
    assert cloud.resources()["servers"] == []
