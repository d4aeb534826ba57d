"""teuthology 1.3.0's own `teuthology-lock`, unmodified, against the lab service: its client config has no
libcloud: section, yet --lock-many gets SSH-ready cloud nodes, --list shows them and --unlock destroys them.

devcloud (real sshd per server), the DNS service and BIND are checked after each step.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from lablease.provision.devlab import devcloud_lab_data, generate_lab_key
from lablease.testing.lockserver import start_lock_server
from tests.integration.test_teuthology_client import commands, teuthology_venv

pytestmark = pytest.mark.integration

DOMAIN = "lab.example"
OWNER = "tester@lab"
CLOUD = {"boot_delay": 0.5, "volume_delay": 0.1, "ssh": {"enabled": True, "delay": 0.3, "runcmd_delay": 0.1}}


@pytest.fixture(scope="module")
def venv():
    return teuthology_venv()


@pytest.fixture
def lab(tmp_path, venv, devcloud_factory, dns_service_factory):
    cloud = devcloud_factory(CLOUD)
    dns = dns_service_factory(allow_pattern=r"ovh[0-9]+")
    key = generate_lab_key(tmp_path / "lab_key")
    top = devcloud_lab_data(cloud, key, nsupdate_url=dns.update_url, lab_domain=DOMAIN, machine_type="ovh",
                            max_parallel=4, boot_timeout=30, ready_timeout=30)
    server = start_lock_server(tmp_path / "server", lab_domain=DOMAIN, top=top)
    home = tmp_path / "home"
    (home / ".cache").mkdir(parents=True)
    # The user's config: where the lock server is and the lab's domain; no cloud password, no libcloud section.
    (home / ".teuthology.yaml").write_text(yaml.safe_dump({"lock_server": server.url, "lab_domain": DOMAIN}))
    lablease, teuthology_lock = commands(home, venv)

    yield lablease, teuthology_lock, cloud, dns.bind, server.url
    server.stop()


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-3000:]}"
    return proc.stdout


def test_teuthology_lock_gets_ssh_ready_cloud_nodes_from_the_lab_service_and_unlock_destroys_them(lab):
    lablease, tl, cloud, bind, url = lab
    ok(lablease("nodes", "add", "--server", url, "--machine-type", "ovh", "--vm", "--count", "3"))
    assert cloud.resources()["servers"] == []

    out = ok(tl("--lock-many", "2", "-m", "ovh", "--os-type", "ubuntu", "--os-version", "22.04",
                "--owner", OWNER, "--desc", "teuthology job"))
    targets = yaml.safe_load(out)["targets"]
    assert sorted(targets) == [f"ovh001.{DOMAIN}", f"ovh002.{DOMAIN}"]
    servers = {s["name"]: s for s in cloud.resources()["servers"]}
    assert sorted(servers) == ["ovh001", "ovh002"] and all(s["status"] == "ACTIVE" for s in servers.values())
    for name, host_key in targets.items():
        short = name.split(".")[0]
        assert bind.addresses(short), f"{short} has no DNS record"
        assert host_key and host_key.split()[0].startswith(("ssh-", "ecdsa-"))

    listed = {n["name"]: n for n in json.loads(ok(tl("--list", "--owner", OWNER)))}
    assert sorted(listed) == sorted(targets)
    assert all(n["locked"] and n["is_vm"] is False and n["state"] == "ready" for n in listed.values())

    # teuthology's --unlock tries to SSH to a node it unlocks (stop_node), by a name only this test's BIND
    # knows: about 25 s of its own reconnect loop per node. One node shows it; lablease's CLI unlocks the other.
    first, second = sorted(targets)
    ok(tl("--unlock", "--owner", OWNER, first))
    assert [s["name"] for s in cloud.resources()["servers"]] == ["ovh002"]
    assert bind.addresses("ovh001") == set() and bind.addresses("ovh002")
    ok(lablease("unlock", "--server", url, "--owner", OWNER, second))
    assert cloud.resources()["servers"] == [] and cloud.resources()["volumes"] == []
    assert bind.addresses("ovh002") == set()
    after = {n["name"]: n for n in json.loads(ok(tl("--list", "-a")))}
    assert all(not after[n]["locked"] and after[n]["state"] == "idle" for n in targets)

