"""The lab service end to end: `lablease serve` with a libcloud: section, over HTTP, against devcloud (real sshd
per server, real libcloud driver), the DNS service in front of a real BIND, on SQLite and PostgreSQL.

Locking nodes of a cloud machine type provisions them; unlocking destroys them; a failed lock undoes everything.
"""

from __future__ import annotations

import concurrent.futures
from collections import Counter

import httpx
import paramiko
import pytest

from lablease.provision.devlab import devcloud_lab_data, generate_lab_key
from lablease.store import NodeStore
from lablease.testing.lockserver import start_lock_server
from lablease.testing.waiting import wait_until

pytestmark = pytest.mark.integration

DOMAIN = "lab.example"
CLOUD = {"boot_delay": 0.5, "volume_delay": 0.1, "ssh": {"enabled": True, "delay": 0.3, "runcmd_delay": 0.1},
         "quotas": {"instances": 20, "volumes": 40, "cores": 200, "ram": 400000}}
OWNER = "alice@lab"


class Lab:
    """The running lab service and what a test checks it against."""

    def __init__(self, url, cloud, bind, key, db_url, server):  # noqa: ANN001
        self.url, self.cloud, self.bind, self.key, self.db_url, self.server = url, cloud, bind, key, db_url, server
        self.http = httpx.Client(base_url=url, timeout=120)

    def add(self, *shorts: str, machine_type: str = "dev") -> list[str]:
        names = [f"{s}.{DOMAIN}" for s in shorts]
        for name in names:
            r = self.http.post("/nodes/", json={"name": name, "machine_type": machine_type, "is_vm": True, "up": True})
            assert r.status_code == 200, r.text
        return names

    def lock_many(self, count: int, **extra) -> httpx.Response:  # noqa: ANN003
        return self.http.post("/nodes/lock_many/", json={"count": count, "machine_type": "dev", "locked_by": OWNER,
                                                         "description": "job 1", **extra})

    def unlock_many(self, names: list[str], owner: str = OWNER) -> httpx.Response:
        return self.http.post("/nodes/unlock_many/", json={"names": names, "locked_by": owner})

    def node(self, name: str) -> dict:
        return self.http.get(f"/nodes/{name}/").json()

    def assert_nothing_left(self, names: list[str]) -> None:
        res = self.cloud.resources()
        assert res["servers"] == [] and res["volumes"] == [], res
        assert {n: self.bind.addresses(n.split(".")[0]) for n in names} == {n: set() for n in names}
        for name in names:
            node = self.node(name)
            assert (node["locked"], node["state"], node["cloud_server_id"]) == (False, "idle", None), node


@pytest.fixture(scope="module")
def cloud_stack(tmp_path_factory):
    """devcloud (SSH on), BIND and the DNS service, shared by this module's tests: each test starts its own
    lab service on its own database and must leave the cloud and the zone empty (they check it)."""
    from lablease.testing.bind import start_bind
    from lablease.testing.devcloud import _merge, start_devcloud
    from lablease.testing.dns import start_dns_service
    from tests.fixtures.devcloud import TEST_DEFAULTS

    work = tmp_path_factory.mktemp("cloud-stack")
    cloud = start_devcloud(work / "devcloud", _merge(TEST_DEFAULTS, CLOUD))
    bind = start_bind(work / "bind", DOMAIN, f"*.{DOMAIN}.")
    dns = start_dns_service(work / "dns", bind, allow_pattern=r"node[0-9]+")
    yield cloud, bind, dns
    dns.stop()
    bind.stop()
    cloud.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def lab(request, cloud_stack, tmp_path):
    cloud, bind, dns = cloud_stack
    cloud.clear_faults()
    assert cloud.resources()["servers"] == [], "an earlier test left servers behind"
    db_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else \
        f"sqlite:///{tmp_path / 'lab.db'}"
    key = generate_lab_key(tmp_path / "lab_key")
    top = devcloud_lab_data(cloud, key, nsupdate_url=dns.update_url, lab_domain=DOMAIN, machine_type="dev",
                            max_parallel=10, launch_retries=2, boot_timeout=30, ready_timeout=30,
                            delete_timeout=4)
    server = start_lock_server(tmp_path / "lab", database_url=db_url, lab_domain=DOMAIN, top=top)
    lab = Lab(server.url, cloud, bind, key, db_url, server)
    yield lab
    lab.http.close()
    server.stop()
    cloud.clear_faults()
    _wipe(cloud, dns)


def _wipe(cloud, dns) -> None:  # noqa: ANN001
    """Remove what a test left on purpose (a node held at its end, a simulated crash) from the shared cloud and
    zone, straight through the cloud's API and the DNS service."""
    from lablease.dns.client import DNSClient

    driver = cloud.driver()
    for node in driver.list_nodes():
        driver.destroy_node(node)

    def gone() -> bool:
        for volume in driver.list_volumes():
            if volume.state in ("available", "error"):  # detached once its server is gone
                driver.destroy_volume(volume)
        res = cloud.resources()
        return not res["servers"] and not res["volumes"]

    wait_until(gone, what="the cloud's servers and volumes to be gone", timeout=30, interval=0.2)
    with DNSClient(dns.update_url) as client:
        for name in client.names():
            client.delete(name)


def _host_key_seen_over_ssh(address: str, port: int, key_path, user: str) -> tuple[str, str]:
    client = paramiko.SSHClient()
    seen = {}

    class Pin(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, _client, _host, key):  # noqa: ANN001
            seen["key"] = f"{key.get_name()} {key.get_base64()}"

    client.set_missing_host_key_policy(Pin())
    client.connect(address, port=port, username=user, key_filename=str(key_path), look_for_keys=False,
                   allow_agent=False, timeout=10)
    try:
        _, out, _ = client.exec_command("echo hello")
        return out.read().decode().strip(), seen["key"]
    finally:
        client.close()


def test_lock_many_of_cloud_nodes_answers_ssh_ready_nodes_named_in_dns_and_unlock_leaves_nothing(lab):
    import getpass
    names = lab.add("node1", "node2", "node3")
    got = lab.lock_many(2, os_type="ubuntu", os_version="22.04", openstack={"volumes": {"count": 1, "size": 1}})
    assert got.status_code == 200, got.text
    nodes = got.json()
    assert [n["name"] for n in nodes] == names[:2]
    servers = {s["id"]: s for s in lab.cloud.resources()["servers"]}
    assert len(servers) == 2 and len(lab.cloud.resources()["volumes"]) == 2
    for node in nodes:
        assert (node["locked"], node["locked_by"], node["state"]) == (True, OWNER, "ready")
        assert (node["os_type"], node["os_version"]) == ("ubuntu", "22.04")
        address = node["addresses"][0]
        assert lab.bind.addresses(node["name"].split(".")[0]) == {address}
        said, host_key = _host_key_seen_over_ssh(address, lab.cloud.ssh_port, lab.key, getpass.getuser())
        assert said == "hello" and host_key == node["ssh_pub_key"]
        assert node["cloud_server_id"] in servers
    states = [e["new"]["state"] for e in lab.http.get(f"/nodes/{names[0]}/events/").json() if e["action"] == "state"]
    assert states == ["provisioning", "ready"]

    unlocked = lab.unlock_many(names[:2])
    assert unlocked.status_code == 200, unlocked.text
    assert [(n["name"], n["locked"]) for n in unlocked.json()] == [(names[0], False), (names[1], False)]
    lab.assert_nothing_left(names)
    states = [e["new"]["state"] for e in lab.http.get(f"/nodes/{names[0]}/events/").json() if e["action"] == "state"]
    assert states == ["provisioning", "ready", "destroying", "idle"]


def test_lock_many_is_all_or_nothing_when_one_node_fails_for_good(lab):
    names = lab.add("node1", "node2", "node3")
    lab.cloud.set_faults({"server_error": {"probability": 1.0, "match_name": "node2"}})
    got = lab.lock_many(3)
    assert got.status_code == 503, got.text
    message = got.json()["message"]
    assert "node2" in message and "no node of the request was kept" in message
    lab.assert_nothing_left(names)
    assert lab.lock_many(4).json() == {"message": "only 3 nodes available"}


def test_a_node_being_destroyed_or_whose_destroy_failed_is_never_handed_out(lab):
    names = lab.add("node1", "node2", "node3")
    assert lab.lock_many(2).status_code == 200
    lab.cloud.set_faults({"delete_error": {"probability": 1.0, "match_name": "node1"}})
    failed = lab.unlock_many([names[0]])
    assert failed.status_code == 503 and "node1" in failed.json()["message"], failed.text
    node = lab.node(names[0])
    assert (node["state"], node["locked"]) == ("destroy-failed", True) and node["last_error"]
    store = NodeStore.open(lab.db_url, run_migrations=False, pool_size=1)
    try:  # a node caught mid-destroy, as a crash would leave it
        store.begin_destroy([names[1]], OWNER)
    finally:
        store.close()
    got = lab.lock_many(2, description="job 2")
    assert got.status_code == 503 and got.json() == {"message": "only 1 nodes available"}
    assert [n["name"] for n in lab.lock_many(1, description="job 2").json()] == [names[2]]
    lab.cloud.clear_faults()
    again = lab.unlock_many([names[0]])  # the owner retries the failed destroy
    assert again.status_code == 200, again.text
    assert lab.node(names[0])["state"] == "idle"


def test_concurrent_lock_many_requests_never_provision_one_node_twice(lab):
    names = lab.add("node1", "node2", "node3", "node4")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda i: httpx.post(
            f"{lab.url}/nodes/lock_many/", json={"count": 1, "machine_type": "dev", "locked_by": f"user{i}",
                                                 "description": None}, timeout=120), range(6)))
    ok = [a.json()[0]["name"] for a in answers if a.status_code == 200]
    assert all(a.json()[0]["is_vm"] is False for a in answers if a.status_code == 200)  # see docs/lab-service.md
    assert sorted(ok) == names and Counter(a.status_code for a in answers) == {200: 4, 503: 2}
    servers = lab.cloud.resources()["servers"]
    assert sorted(s["name"] for s in servers) == ["node1", "node2", "node3", "node4"]
    for name in names:
        moves = [e for e in lab.http.get(f"/nodes/{name}/events/").json()
                 if e["action"] == "state" and e["new"]["state"] == "provisioning"]
        assert len(moves) == 1


def test_locking_one_cloud_node_provisions_it_and_only_its_owner_can_unlock_it(lab):
    [name] = lab.add("node7")
    put = lab.http.put(f"/nodes/{name}/lock/", json={"locked": True, "locked_by": OWNER, "description": "d"})
    assert put.status_code == 200 and put.json()["locked"] is True, put.text
    node = lab.node(name)
    assert node["state"] == "ready" and lab.bind.addresses("node7") == set(node["addresses"])
    refused = lab.http.put(f"/nodes/{name}/lock/", json={"locked": False, "locked_by": "mallory"})
    assert refused.status_code == 403 and "locked_by values must match" in refused.json()["message"]
    assert len(lab.cloud.resources()["servers"]) == 1
    deleted = lab.http.delete(f"/nodes/{name}/")
    assert deleted.status_code == 403 and "unlock it first" in deleted.json()["message"]
    done = lab.http.put(f"/nodes/{name}/lock/", json={"locked": False, "locked_by": OWNER})
    assert done.status_code == 200 and done.json()["locked"] is False, done.text
    lab.assert_nothing_left([name])


def test_progress_of_a_lock_is_streamed_and_counted_in_metrics(lab):
    import threading
    import json as _json
    lab.add("node1", "node2")
    seen: list[dict] = []
    opened = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{lab.url}/lab/progress/", params={"request": "req-42"}, timeout=60) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            opened.set()
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    seen.append(_json.loads(line[6:]))
                    if sum(1 for e in seen if e["stage"] == "ready") == 2:
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(10)
    assert lab.lock_many(2, request_id="req-42").status_code == 200
    listener.join(20)
    stages = {(e["node"], e["stage"], e["status"]) for e in seen}
    for name in ("node1.lab.example", "node2.lab.example"):
        for stage in ("create", "boot", "dns", "ssh"):
            assert (name, stage, "start") in stages, (name, stage)
        assert (name, "ready", "done") in stages
    assert {e["request"] for e in seen} == {"req-42"}
    metrics = lab.http.get("/metrics").text
    assert 'lablease_launches_total{machine_type="dev",result="ready"} 2.0' in metrics
    assert 'lablease_nodes{locked="true",machine_type="dev",state="ready"} 2.0' in metrics
    stage_events = [e for e in lab.http.get("/nodes/node1.lab.example/events/").json() if e["action"] == "stage"]
    assert {"stage": "ssh", "status": "start", "attempt": 1} in [e["new"] for e in stage_events]


@pytest.fixture
def slow_lab(devcloud_factory, dns_service, tmp_path):
    """A lab service whose nodes take a few seconds to answer over SSH, on SQLite."""
    def start(shutdown_timeout: float) -> Lab:
        cloud = devcloud_factory({**CLOUD, "ssh": {"enabled": True, "delay": 4.0, "runcmd_delay": 0.1}})
        key = generate_lab_key(tmp_path / "lab_key")
        top = devcloud_lab_data(cloud, key, nsupdate_url=dns_service.update_url, lab_domain=DOMAIN,
                                machine_type="dev", boot_timeout=30, ready_timeout=60, delete_timeout=10)
        db_url = f"sqlite:///{tmp_path / 'lab.db'}"
        server = start_lock_server(tmp_path / "lab", database_url=db_url, lab_domain=DOMAIN, top=top,
                                   extra={"shutdown_timeout": shutdown_timeout})
        started.append(server)
        return Lab(server.url, cloud, dns_service.bind, key, db_url, server)

    started: list = []
    yield start
    for server in started:
        server.stop()


def _sigterm_during_a_lock(lab: Lab) -> tuple[httpx.Response, httpx.Response]:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(lab.lock_many, 1)
        wait_until(lambda: lab.node(f"node1.{DOMAIN}")["state"] == "provisioning", what="node1 to be provisioning",
                   timeout=20)
        lab.server.process.proc.send_signal(15)
        wait_until(lambda: lab.http.get("/lab/status/").json()["draining"], what="the lab service to drain after "
                   "SIGTERM", timeout=10)
        second = lab.lock_many(1, description="after SIGTERM")
        return first.result(timeout=90), second


def test_sigterm_refuses_new_locks_and_lets_a_lock_in_flight_finish_before_exiting(slow_lab):
    lab = slow_lab(shutdown_timeout=60)
    lab.add("node1", "node2")
    first, second = _sigterm_during_a_lock(lab)
    assert second.status_code == 503 and "shutting down" in second.json()["message"]
    assert first.status_code == 200 and first.json()[0]["state"] == "ready", first.text
    assert lab.server.process.proc.wait(timeout=30) is not None


def test_sigterm_rolls_back_a_lock_that_outlasts_the_shutdown_timeout_and_leaves_nothing(slow_lab):
    import time
    lab = slow_lab(shutdown_timeout=1)
    names = lab.add("node1", "node2")
    started = time.monotonic()
    first, second = _sigterm_during_a_lock(lab)
    assert second.status_code == 503
    assert first.status_code == 503 and "cancelled" in first.json()["message"], first.text
    assert time.monotonic() - started < 20  # the 4 s SSH wait plus the 60 s ready_timeout were not run out
    lab.server.process.proc.wait(timeout=30)
    store = NodeStore.open(lab.db_url, run_migrations=False, pool_size=1)
    try:
        assert [(n.name, n.state, n.locked) for n in store.list()] == [(n, "idle", False) for n in names]
    finally:
        store.close()
    assert lab.cloud.resources()["servers"] == [] and lab.bind.addresses("node1") == set()


def test_lock_and_unlock_keep_the_inventory_fields_and_unlock_clears_the_locks_own(lab):
    """As teuthology-lock --lock-many sends it (no arch): arch and mac_address of the inventory survive the
    lock and the unlock; the idle record forgets the lock's description and the OS it was made with."""
    names = lab.add("node1", "node2")
    for name in names:
        put = lab.http.put(f"/nodes/{name}/", json={"arch": "x86_64", "mac_address": "52:54:00:12:34:56"})
        assert put.status_code == 200, put.text
    got = lab.lock_many(1, os_type="ubuntu", os_version="22.04")
    assert got.status_code == 200, got.text
    [locked] = got.json()
    assert (locked["arch"], locked["mac_address"]) == ("x86_64", "52:54:00:12:34:56")
    one = lab.http.put(f"/nodes/{names[1]}/lock/", json={"locked": True, "locked_by": OWNER, "description": "job 2"})
    assert one.status_code == 200, one.text
    assert lab.node(names[1])["arch"] == "x86_64"

    for name in names:
        assert lab.http.put(f"/nodes/{name}/lock/", json={"locked": False, "locked_by": OWNER}).status_code == 200
        node = lab.node(name)
        assert (node["arch"], node["mac_address"]) == ("x86_64", "52:54:00:12:34:56"), node
        assert (node["description"], node["os_type"], node["os_version"]) == (None, None, None), node
    lab.assert_nothing_left(names)


def test_a_lock_of_one_node_and_its_unlock_write_twelve_event_rows_with_every_state_move(lab):
    """docs/performance.md, "Event rows per lock": 17 before rows were shared where stages overlap."""
    [name] = lab.add("node1")
    before = len(lab.http.get(f"/nodes/{name}/events/").json())
    assert lab.lock_many(1).status_code == 200
    assert lab.unlock_many([name]).status_code == 200
    trail = lab.http.get(f"/nodes/{name}/events/").json()[before:]
    moves = [(e["old"]["state"], e["new"]["state"]) for e in trail if e["action"] == "state"]
    assert moves == [("idle", "provisioning"), ("provisioning", "ready"), ("ready", "destroying"),
                     ("destroying", "idle")]
    assert trail[0]["new"]["locked"] is True and trail[0]["new"]["locked_by"] == OWNER  # the lock rides on it
    assert len(trail) == 12, [(e["action"], e["new"]) for e in trail]
