"""Warm pools: a lock of a warm OS is answered from nodes provisioned ahead; the pool refills; a warm node
that no longer answers over SSH is replaced, never lent. Real devcloud with SSH, the DNS service, BIND."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import paramiko
import pytest

from lablease.devcloud.sshd import write_host_key
from lablease.provision.devlab import devcloud_lab_data, generate_lab_key
from lablease.testing.lockserver import start_lock_server
from lablease.testing.waiting import wait_until
from tests.integration.test_lab_service import CLOUD, DOMAIN, Lab

pytestmark = pytest.mark.integration
CREATES = "POST /compute/v2.1/servers"


@pytest.fixture
def warm_lab(devcloud_factory, dns_service, tmp_path):
    cloud = devcloud_factory(CLOUD)
    key = generate_lab_key(tmp_path / "lab_key")
    top = devcloud_lab_data(cloud, key, nsupdate_url=dns_service.update_url, lab_domain=DOMAIN, machine_type="dev",
                            boot_timeout=30, ready_timeout=30, min_ready={"ubuntu-22.04": 3})
    server = start_lock_server(tmp_path / "lab", database_url=f"sqlite:///{tmp_path / 'lab.db'}", lab_domain=DOMAIN,
                               top=top, extra={"reconcile_interval": 0})
    lab = Lab(server.url, cloud, dns_service.bind, key, f"sqlite:///{tmp_path / 'lab.db'}", server)
    yield lab
    lab.http.close()
    server.stop()


def _warm(lab: Lab) -> list[dict]:
    return [n for n in lab.http.get("/nodes/", params={"machine_type": "dev"}).json()
            if n["state"] == "ready" and not n["locked"]]


def test_a_lock_of_a_warm_os_is_answered_from_the_pool_which_then_refills(warm_lab):
    lab = warm_lab
    lab.add("node1", "node2", "node3", "node4", "node5")
    warm = wait_until(lambda: len(_warm(lab)) == 3 and _warm(lab), what="3 warm nodes", timeout=60, interval=0.3)
    assert all((n["os_type"], n["os_version"]) == ("ubuntu", "22.04") for n in warm)
    creates = lab.cloud.request_counts()[CREATES]
    got = lab.lock_many(3, os_type="ubuntu", os_version="22.04")
    assert got.status_code == 200, got.text
    assert sorted(n["name"] for n in got.json()) == sorted(n["name"] for n in warm)
    assert lab.cloud.request_counts()[CREATES] == creates  # nothing was created for this lock
    assert all(n["locked_by"] == "alice@lab" and n["ssh_pub_key"] for n in got.json())
    # the two idle records left refill the pool; nothing idle is left for a lock of another OS
    wait_until(lambda: len(_warm(lab)) == 2, what="2 warm nodes", timeout=60, interval=0.3)
    other = lab.lock_many(1, os_type="centos", os_version="9")
    assert other.status_code == 503 and other.json() == {"message": "only 0 nodes available"}
    assert lab.unlock_many([n["name"] for n in got.json()]).status_code == 200


def test_a_lock_many_that_cannot_be_filled_is_refused_before_it_claims_a_warm_node(warm_lab):
    lab = warm_lab
    names = lab.add("node1", "node2", "node3", "node4", "node5")
    wait_until(lambda: len(_warm(lab)) == 3, what="3 warm nodes", timeout=60, interval=0.3)
    records = {n: lab.node(n) for n in names}
    trails = {n: lab.http.get(f"/nodes/{n}/events/").json() for n in names}
    got = lab.lock_many(6, os_type="ubuntu", os_version="22.04")  # 3 warm + 2 idle: one short
    assert got.status_code == 503 and got.json() == {"message": "only 5 nodes available"}
    assert {n: lab.http.get(f"/nodes/{n}/events/").json() for n in names} == trails  # no claim, no give-back
    assert {n: lab.node(n) for n in names} == records


def test_a_warm_node_that_stopped_answering_is_replaced_not_lent(warm_lab):
    lab = warm_lab
    lab.add("node1", "node2", "node3", "node4")
    warm = wait_until(lambda: len(_warm(lab)) == 3 and _warm(lab), what="3 warm nodes", timeout=60, interval=0.3)
    dead = warm[0]
    root = Path(lab.cloud.server_internals(dead["cloud_server_id"])["root"])
    subprocess.run(["pkill", "-f", str(root.parent / "ssh" / "sshd_config")], check=True)
    got = lab.lock_many(3, os_type="ubuntu", os_version="22.04")
    assert got.status_code == 200, got.text
    names = [n["name"] for n in got.json()]
    assert dead["name"] not in names and len(names) == 3
    assert all(lab.cloud.server_internals(n["cloud_server_id"])["ssh_up"] for n in got.json())
    events = lab.http.get(f"/nodes/{dead['name']}/events/").json()
    assert any("failed its check" in str(e["new"]) for e in events), events
    assert dead["cloud_server_id"] not in {s["id"] for s in lab.cloud.resources()["servers"]}


def _host_key_served(address: str, port: int) -> str | None:
    """The host key sshd at ``address`` signs a key exchange with; None while it does not answer."""
    try:
        transport = paramiko.Transport(socket.create_connection((address, port), timeout=5))
    except OSError:
        return None
    try:
        transport.start_client(timeout=5)
        key = transport.get_remote_server_key()
        return f"{key.get_name()} {key.get_base64()}"
    except (paramiko.SSHException, EOFError, OSError):
        return None
    finally:
        transport.close()


def test_a_warm_node_whose_host_key_changed_is_replaced_not_lent(warm_lab):
    lab = warm_lab
    lab.add("node1", "node2", "node3", "node4")
    warm = wait_until(lambda: len(_warm(lab)) == 3 and _warm(lab), what="3 warm nodes", timeout=60, interval=0.3)
    changed = warm[0]
    ssh_dir = Path(lab.cloud.server_internals(changed["cloud_server_id"])["root"]).parent / "ssh"
    write_host_key(ssh_dir / "ssh_host_ed25519_key")
    os.kill(int((ssh_dir / "sshd.pid").read_text()), signal.SIGHUP)  # sshd restarts with the new key
    address, port = changed["addresses"][0], lab.cloud.ssh_port
    wait_until(lambda: _host_key_served(address, port) not in (None, changed["ssh_pub_key"]),
               what="the rebuilt node's sshd to serve a new host key", timeout=60, interval=0.3)
    got = lab.lock_many(3, os_type="ubuntu", os_version="22.04")
    assert got.status_code == 200, got.text
    names = [n["name"] for n in got.json()]
    assert changed["name"] not in names and len(names) == 3
    assert f"warm node {changed['name']} answered with another host key" in lab.server.process.log_path.read_text()
    events = lab.http.get(f"/nodes/{changed['name']}/events/").json()
    assert any("failed its check" in str(e["new"]) for e in events), events
    assert changed["cloud_server_id"] not in {s["id"] for s in lab.cloud.resources()["servers"]}
