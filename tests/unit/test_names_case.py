"""Node names are DNS names: equal in any case, lowered at every edge (engine, configs, CLI, DNS service).

The engine runs against the in-memory cloud of test_provision_engine (the adapter boundary); the
CLI against a stub lock client, as in test_lockapi_nodes_cli.
"""

from __future__ import annotations

import re

import paramiko
import pytest
from typer.testing import CliRunner

from lablease.cli import app
from lablease.config.lab import LabConfig
from lablease.dns.validation import check_name
from lablease.client import nodes as nodes_cli
from lablease.lockapi.settings import LockSettings
from lablease.provision.engine import Provisioner
from lablease.provision.context import ProvisionerOptions
from lablease.provision.errors import ProvisionError, Stage
from tests.unit.test_lockapi_nodes_cli import StubClient
from tests.unit.test_provision_engine import FakeCloud, FakeProbe

MIXED = "Front.Example.com"


@pytest.fixture(scope="module")
def lab_key(tmp_path_factory):
    path = tmp_path_factory.mktemp("key") / "lab_key"
    paramiko.ECDSAKey.generate().write_private_key_file(str(path))
    return path


def lab_config(lab_key, lab_domain: str = MIXED) -> LabConfig:
    """A lab whose one provider ``dev`` is the in-memory cloud; ``lab_domain`` as an admin typed it."""
    provider = {"driver": "openstack", "ssh_key_file": str(lab_key), "launch_retries": 1,
                "driver_args": {"username": "u", "password": "p", "ex_force_auth_url": "http://127.0.0.1:1/v2.0/tokens"}}
    return LabConfig.model_validate({"lab_domain": lab_domain, "libcloud": {"providers": {"dev": provider}}})


@pytest.fixture
def engine(lab_key):
    cloud = FakeCloud()
    prov = Provisioner(lab_config(lab_key), "dev", None, ProvisionerOptions(adapter=cloud, token_cache_dir=None, probe=FakeProbe(), poll_first=0.001, poll_cap=0.005))
    return prov, cloud


# -- configs lower the lab domain once ------------------------------------------------------------


def test_the_lab_config_lowers_the_lab_domain(lab_key):
    assert lab_config(lab_key, " Front.Example.COM. ").lab_domain == "front.example.com"


def test_the_lock_server_settings_lower_the_lab_domain(tmp_path):
    settings = LockSettings.from_mapping({"lab_domain": MIXED}, data_dir=tmp_path)
    assert settings.lab_domain == "front.example.com"


# -- the engine ----------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["Node1", "NODE1.FRONT.EXAMPLE.COM", "node1.front.example.com",
                                   "ubuntu@Node1.Front.Example.com."])
def test_short_and_node_names_are_lowered_and_lose_a_lab_domain_in_any_case(engine, given):
    prov, _ = engine
    assert prov.short_name(given) == "node1"
    assert prov.node_name(given, Stage.CREATE) == "node1"


def test_a_name_outside_the_mixed_case_lab_domain_is_a_bad_node_name(engine):
    prov, _ = engine
    with pytest.raises(ProvisionError, match="bad node name: 'node1.other.org' is outside the lab domain"):
        prov.node_name("Node1.Other.ORG", Stage.CREATE)


def test_a_node_in_a_mixed_case_lab_domain_gets_its_short_name_and_one_lab_domain(engine):
    prov, cloud = engine
    node = prov.create("node1.front.example.com", "ubuntu", "22.04")
    assert node.name == "node1" and node.fqdn == "node1.front.example.com"
    assert [s.name for s in cloud.servers.values()] == ["node1"]


def test_a_node_created_in_one_case_is_destroyed_in_another(engine):
    prov, cloud = engine
    prov.create("Node1", "ubuntu", "22.04", {"volumes": {"count": 1, "size": 1}})
    assert len(cloud.servers) == 1 and len(cloud.volumes) == 1
    prov.destroy("node1")
    assert not cloud.servers and not cloud.volumes


# -- the DNS service's allow pattern --------------------------------------------------------------


def test_the_allow_pattern_sees_the_lowered_short_name_and_matches_ignoring_case():
    host = check_name("Node7.LAB.example", "lab.example", re.compile(r"NODE[0-9]+"))
    assert (host.relative, host.fqdn) == ("node7", "node7.lab.example.")


# -- `lablease nodes add|remove` ------------------------------------------------------------------


def run_cli(monkeypatch, existing: list[str], *args: str):
    stub = StubClient()
    stub.existing = list(existing)
    monkeypatch.setattr(nodes_cli, "admin_client", lambda *_: (stub, MIXED))
    return CliRunner().invoke(app, ["nodes", *args]), stub


def test_nodes_add_lowers_names_into_the_lab_domain_and_adds_each_once(monkeypatch):
    done, stub = run_cli(monkeypatch, [], "add", "Node1", "NODE1.Front.Example.com", "node2")
    assert done.exit_code == 0, done.output
    assert stub.existing == ["node1.front.example.com", "node2.front.example.com"]


def test_nodes_add_sees_a_node_spelled_in_another_case_as_already_there(monkeypatch):
    done, stub = run_cli(monkeypatch, ["Node1.Front.Example.com"], "add", "node1")
    assert done.exit_code == 1 and "already in the inventory: node1.front.example.com" in done.output  # refused (README: 1)
    assert stub.existing == ["Node1.Front.Example.com"]


def test_nodes_remove_finds_a_node_in_any_case(monkeypatch):
    done, stub = run_cli(monkeypatch, ["node1.front.example.com", "Node2.Front.Example.com"], "remove", "NODE1", "node2")
    assert done.exit_code == 0, done.output
    assert stub.existing == []
