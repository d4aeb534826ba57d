"""The lab service heals itself: leaks are deleted after two sightings, and a killed process's work is undone.

Real parts only: `lablease serve` (SQLite; PostgreSQL where it matters), devcloud with SSH, the DNS service and
BIND. `lablease unlock --force` and Ctrl-C of `lablease lock-many` are in test_lab_crash.py.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from lablease.config.lab import ProviderConfig
from lablease.provision.adapters import adapter_for
from lablease.provision.devlab import devcloud_lab_data, generate_lab_key
from lablease.provision.models import TAG_ATTEMPT, TAG_LAB, TAG_NODE
from lablease.store import NodeStore
from lablease.testing.lockserver import start_lock_server
from lablease.testing.waiting import wait_until
from tests.integration.test_lab_service import CLOUD, DOMAIN, Lab

pytestmark = pytest.mark.integration


@pytest.fixture
def lab_factory(devcloud_factory, dns_service, tmp_path):
    """Start (and restart) a lab service on one SQLite file; ``extra`` are lablease: keys."""
    started: list = []
    cloud = devcloud_factory(CLOUD)
    key = generate_lab_key(tmp_path / "lab_key")
    top = devcloud_lab_data(cloud, key, nsupdate_url=dns_service.update_url, lab_domain=DOMAIN, machine_type="dev",
                            boot_timeout=30, ready_timeout=30, delete_timeout=10)
    db_url = f"sqlite:///{tmp_path / 'lab.db'}"

    def start(database_url: str | None = None, admin_token: str | None = None, **extra) -> Lab:  # noqa: ANN003
        url = database_url or db_url
        server = start_lock_server(tmp_path / f"lab{len(started)}", database_url=url, lab_domain=DOMAIN,
                                   top=top, admin_token=admin_token, extra={"reconcile_interval": 0, **extra})
        started.append(server)
        return Lab(server.url, cloud, dns_service.bind, key, url, server)

    start.top = top  # type: ignore[attr-defined]
    start.dns = dns_service  # type: ignore[attr-defined]
    yield start
    for server in started:
        server.stop()


def _plant(lab: Lab, top: dict) -> dict[str, str]:
    """Leaks of every kind, made straight in the cloud: what the reconciler must (and must not) delete."""
    driver = lab.cloud.driver()
    image = next(i for i in driver.list_images() if "22.04" in i.name)
    size = sorted(driver.list_sizes(), key=lambda s: s.ram)[0]

    def server(name: str, tags: dict[str, str]) -> str:
        return driver.create_node(name=name, image=image, size=size, ex_metadata=tags).id

    ours = {TAG_LAB: DOMAIN, TAG_NODE: "node9", TAG_ATTEMPT: "1-dead"}
    adapter = adapter_for(ProviderConfig.model_validate(top["libcloud"]["providers"]["dev"]))
    return {
        "our_server": server("node9", ours),
        "our_volume": adapter.create_volume("node9_0", 1, ours).id,
        "other_labs_server": server("node9", {**ours, TAG_LAB: "other.example"}),
        "untagged_server": server("node9", {}),
    }


def _reconcile(lab: Lab) -> dict:
    answer = lab.http.post("/lab/reconcile/")
    assert answer.status_code == 200, answer.text
    [report] = answer.json()
    return report


def test_planted_leaks_survive_the_first_pass_and_the_second_deletes_exactly_this_labs(lab_factory):
    lab = lab_factory()
    [free] = lab.add("node1")
    planted = _plant(lab, lab_factory.top)
    httpx.get(lab_factory.dns.update_url, params={"name": "node1", "ip": "127.0.9.9"}).raise_for_status()
    assert lab.bind.addresses("node1") == {"127.0.9.9"}

    dry = lab.http.post("/lab/reconcile/", params={"dry_run": "true"}).json()[0]
    first = _reconcile(lab)
    assert first["deleted"] == {"servers": [], "volumes": [], "floating_ips": [], "dns": []}
    assert first["pending"]["servers"] == [planted["our_server"]] and first["pending"]["volumes"] == [
        planted["our_volume"]]
    assert first["pending"]["dns"] == ["node1"] and dry["pending"] == first["pending"]
    assert len(lab.cloud.resources()["servers"]) == 3

    second = _reconcile(lab)
    assert second["deleted"] == {"servers": [planted["our_server"]], "volumes": [planted["our_volume"]],
                                 "floating_ips": [], "dns": ["node1"]}
    left = {s["id"] for s in lab.cloud.resources()["servers"]}
    assert left == {planted["other_labs_server"], planted["untagged_server"]}
    assert lab.cloud.resources()["volumes"] == [] and lab.bind.addresses("node1") == set()
    assert lab.node(free)["state"] == "idle"
    metrics = lab.http.get("/metrics").text
    assert 'lablease_reconciler_leaks_cleaned_total{kind="servers",machine_type="dev"} 1.0' in metrics


def test_a_lock_in_flight_is_never_taken_for_a_leak(lab_factory):
    lab = lab_factory()
    lab.add("node1", "node2")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        locking = pool.submit(lab.lock_many, 2)
        reports = []
        while not locking.done():
            reports.append(_reconcile(lab))
    assert locking.result().status_code == 200
    reports += [_reconcile(lab), _reconcile(lab)]
    assert all(r["deleted"] == {"servers": [], "volumes": [], "floating_ips": [], "dns": []} for r in reports), reports
    assert len(lab.cloud.resources()["servers"]) == 2


def kill(lab: Lab) -> None:
    os.killpg(lab.server.process.proc.pid, signal.SIGKILL)
    lab.server.process.proc.wait(timeout=10)


@pytest.mark.parametrize("moment,database", [("lock", "sqlite"), ("unlock", "sqlite"), ("lock", "postgresql")])
def test_kill_9_during_a_lock_or_unlock_then_an_immediate_restart_heals_everything_within_a_minute(
        lab_factory, moment, database, request):
    url = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    lab = lab_factory(database_url=url)  # the default lease: a dead process's nodes must not wait it out
    names = lab.add("node1", "node2")
    pool = concurrent.futures.ThreadPoolExecutor(1)
    if moment == "unlock":
        assert lab.lock_many(2).status_code == 200
        lab.cloud.set_faults({"latency": [{"match": "DELETE *", "seconds": 3}]})  # a destroy in progress to kill
        pool.submit(lab.unlock_many, names)
        wait_until(lambda: lab.node(names[0])["state"] == "destroying", what=f"{names[0]} to be destroying",
                   timeout=20)
    else:
        pool.submit(lab.lock_many, 2)
        wait_until(lambda: len(lab.cloud.resources()["servers"]) == 2, what="2 servers in the cloud", timeout=20)
    kill(lab)
    pool.shutdown(wait=False)
    store = NodeStore.open(lab.db_url, run_migrations=False, pool_size=1)
    try:
        stuck = {n.name: n.state for n in store.list()}
    finally:
        store.close()
    assert set(stuck.values()) <= {"provisioning", "destroying", "ready"}, stuck

    lab.cloud.clear_faults()
    restarted = time.monotonic()
    # The shipped settings (lease 30 s, a pass every 60 s): the start-up pass sees the predecessor's process
    # is gone on this host and takes its nodes over at once.
    again = lab_factory(database_url=url, reconcile_interval=60)

    def healed() -> bool:
        nodes = [again.node(n) for n in names]
        res = again.cloud.resources()
        return (all(n["state"] == "idle" and not n["locked"] for n in nodes) and res["servers"] == []
                and res["volumes"] == [] and all(again.bind.addresses(n.split(".")[0]) == set() for n in names))
    wait_until(healed, what="nothing left and every node free after the restart", timeout=60, interval=0.5)
    assert time.monotonic() - restarted < 60  # the bound: nothing left and no node locked 60 s later
    events = again.http.get(f"/nodes/{names[0]}/events/").json()
    assert any(e["who"] == "reconciler" for e in events), events


def test_a_client_that_disconnects_mid_provision_has_its_nodes_rolled_back(lab_factory):
    lab = lab_factory()
    names = lab.add("node1", "node2")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{lab.url}/nodes/lock_many/", json={"count": 2, "machine_type": "dev", "locked_by": "gone@lab",
                                                        "description": None}, timeout=1.0)
    wait_until(lambda: all(lab.node(n)["state"] == "idle" and not lab.node(n)["locked"] for n in names),
               what="every node idle and unlocked", timeout=60, interval=0.5)
    assert lab.cloud.resources()["servers"] == [] and lab.cloud.resources()["volumes"] == []
    assert "disconnected" in " ".join(str(e["new"]) for e in lab.http.get(f"/nodes/{names[0]}/events/").json())


def _reconcile_cli(lab: Lab, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lablease", "reconcile", "--server", lab.url, "--settle", "0.5",
                           *args], capture_output=True, text=True, timeout=120)


def test_reconcile_cli_dry_run_lists_planned_deletions_and_the_real_run_deletes_exactly_those(lab_factory):
    lab = lab_factory()
    [free] = lab.add("node1")
    planted = _plant(lab, lab_factory.top)
    httpx.get(lab_factory.dns.update_url, params={"name": "node1", "ip": "127.0.9.9"}).raise_for_status()

    dry = _reconcile_cli(lab, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    planned = dry.stdout.splitlines()
    assert len(planned) == 3, dry.stdout
    assert any(f"would delete server {planted['our_server']} (node node9)" in line and "no record holds" in line
               for line in planned), planned
    assert any(f"would delete volume {planted['our_volume']} (node node9)" in line for line in planned), planned
    assert any("would delete dns node1: its node is idle" in line for line in planned), planned
    assert len(lab.cloud.resources()["servers"]) == 3 and len(lab.cloud.resources()["volumes"]) == 1
    assert lab.bind.addresses("node1") == {"127.0.9.9"}

    done = _reconcile_cli(lab, "--json")
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    assert sorted((a["kind"], a["id"], a["done"]) for a in report["actions"]) == sorted([
        ("server", planted["our_server"], True), ("volume", planted["our_volume"], True), ("dns", "node1", True)])
    left = {s["id"] for s in lab.cloud.resources()["servers"]}
    assert left == {planted["other_labs_server"], planted["untagged_server"]}
    assert lab.cloud.resources()["volumes"] == [] and lab.bind.addresses("node1") == set()
    assert lab.node(free)["state"] == "idle"

    again = _reconcile_cli(lab)
    assert again.returncode == 0 and again.stdout == "", again.stdout
    assert "0 of 0 action(s) done" in again.stderr


def test_reconcile_cli_names_an_unknown_machine_type_and_exits_refused(lab_factory):
    lab = lab_factory()
    answer = _reconcile_cli(lab, "-m", "nosuch")
    assert answer.returncode == 1
    assert "'nosuch' is not a cloud machine type of this service (known: dev)" in answer.stderr
