"""Console logs of failed boots and usage reports end to end (issue 22): `lablease serve` on devcloud (real sshd per
server), the DNS service and BIND, over HTTP and through the `lablease` command.

devcloud writes each server's boot log and serves it as Nova's os-getConsoleOutput; its boot_error fault makes
the servers named node9 panic and go to ERROR. One devcloud, BIND and DNS service serve the whole module; each
test starts its own lab service on its own database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from datetime import datetime

from lablease.provision.devlab import devcloud_lab_data, generate_lab_key
from lablease.testing.lockserver import start_lock_server
from tests.integration.test_lab_service import Lab

pytestmark = pytest.mark.integration

DOMAIN = "lab.example"
OWNER = "alice@lab"
PANIC = "Kernel panic - not syncing: VFS: Unable to mount root fs; db_password: hunter2"
PRICE = 0.36  # per node-hour: 0.0001 per second
CLOUD = {"boot_delay": 0.1, "volume_delay": 0.05, "ssh": {"enabled": True, "delay": 0.05, "runcmd_delay": 0.05},
         "faults": {"boot_error": {"match_name": "node9", "console": PANIC}}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from lablease.testing.bind import start_bind
    from lablease.testing.devcloud import _merge, start_devcloud
    from lablease.testing.dns import start_dns_service
    from tests.fixtures.devcloud import TEST_DEFAULTS

    work = tmp_path_factory.mktemp("console-usage")
    cloud = start_devcloud(work / "devcloud", _merge(TEST_DEFAULTS, CLOUD))
    bind = start_bind(work / "bind", DOMAIN, f"*.{DOMAIN}.")
    dns = start_dns_service(work / "dns", bind, allow_pattern=r"node[0-9]+")
    key = generate_lab_key(work / "lab_key")
    yield cloud, bind, dns, key
    dns.stop()
    bind.stop()
    cloud.stop()


@pytest.fixture
def lab_factory(stack, tmp_path):
    """``start(**provider)``: a lab service of machine type dev on the module's cloud, with its own database."""
    cloud, bind, dns, key = stack
    started = []

    def start(**provider) -> Lab:  # noqa: ANN003
        settings = {"boot_timeout": 30, "ready_timeout": 30, "delete_timeout": 10, "launch_retries": 1,
                    "price_per_hour": PRICE, **provider}
        top = devcloud_lab_data(cloud, key, nsupdate_url=dns.update_url, lab_domain=DOMAIN, machine_type="dev",
                                **settings)
        url = f"sqlite:///{tmp_path / f'lab{len(started)}.db'}"
        server = start_lock_server(tmp_path / f"lab{len(started)}", database_url=url, lab_domain=DOMAIN, top=top)
        started.append(server)
        return Lab(server.url, cloud, bind, key, url, server)

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def lab(lab_factory):
    return lab_factory()


def lablease(home, *args: str) -> subprocess.CompletedProcess:  # noqa: ANN001
    return subprocess.run([sys.executable, "-m", "lablease", *args], env={**os.environ, "HOME": str(home)},
                          capture_output=True, text=True, timeout=120)


def test_a_failed_boot_keeps_the_servers_console_log_in_its_failure_event_and_lablease_status_shows_it(
        lab, tmp_path):
    [name] = lab.add("node9")
    answer = lab.lock_many(1)
    assert answer.status_code == 503 and "ERROR" in answer.json()["message"], answer.text
    failed = [e["new"] for e in lab.http.get(f"/nodes/{name}/events/").json()
              if e["action"] == "stage" and (e["new"] or {}).get("status") == "failed"]
    assert [f["stage"] for f in failed] == ["boot"], failed
    console = failed[0]["console"]
    assert "Linux version" in console and "Kernel panic - not syncing" in console  # the boot log, to its end
    assert "hunter2" not in console and "db_password: ***" in console  # no secret is kept
    assert len(console.encode()) <= 4096
    out = lablease(tmp_path, "status", name, "--server", lab.url)
    assert out.returncode == 0 and "console of boot failed" in out.stdout, out.stderr
    assert "Kernel panic - not syncing" in out.stdout and "hunter2" not in out.stdout
    page = lab.http.get(f"/ui/nodes/{name}")
    assert page.status_code == 200 and "Console log of a failed boot" in page.text and "Kernel panic" in page.text
    lab.assert_nothing_left([name])


def test_a_server_that_runs_but_never_answers_ssh_keeps_its_console_log_in_the_ssh_failure_event(lab_factory, stack):
    cloud = stack[0]
    lab = lab_factory(ready_timeout=2)
    [name] = lab.add("node8")
    cloud.set_faults({"boot_error": {"match_name": "node8", "mode": "no_ssh",
                                     "console": "cloud-init[612]: ERROR: could not start sshd"}})
    try:
        answer = lab.lock_many(1)
    finally:
        cloud.set_faults(CLOUD["faults"])
    assert answer.status_code == 503, answer.text
    [failed] = [e["new"] for e in lab.http.get(f"/nodes/{name}/events/").json()
                if e["action"] == "stage" and (e["new"] or {}).get("status") == "failed"]
    assert failed["stage"] == "ssh" and "could not start sshd" in failed["console"], failed
    lab.assert_nothing_left([name])


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def expected_usage(events: dict[str, list[dict]]) -> dict[str, tuple[float, float]]:
    """(in use, provisioning) seconds per node, read from its events: provisioning from the state move to
    provisioning to the move to ready; in use from ready to the move to destroying."""
    out = {}
    for name, trail in events.items():
        use = prov = 0.0
        started = ready = None
        for e in trail:
            state = (e["new"] or {}).get("state")
            if state == "provisioning":
                started = _at(e["at"])
            elif state == "ready":
                prov += (_at(e["at"]) - started).total_seconds()
                ready = _at(e["at"])
            elif state == "destroying":
                use += (_at(e["at"]) - ready).total_seconds()
        out[name] = (use, prov)
    return out


def test_usage_of_a_scripted_sequence_of_locks_matches_the_node_events_to_the_second(lab, tmp_path):
    names = lab.add("node1", "node2", "node3")
    bob = "bob@lab"
    first = [n["name"] for n in lab.lock_many(2).json()]  # alice: two nodes
    [second] = [n["name"] for n in lab.http.post("/nodes/lock_many/", json={
        "count": 1, "machine_type": "dev", "locked_by": bob, "description": "job 2"}).json()]
    assert lab.unlock_many(first[:1]).status_code == 200
    [again] = [n["name"] for n in lab.lock_many(1).json()]  # alice again, on the node just freed
    assert lab.unlock_many([first[1], again]).status_code == 200
    assert lab.unlock_many([second], owner=bob).status_code == 200
    lab.assert_nothing_left(names)

    assert again == first[0]  # the only free node: alice's two locks of it both count

    per_node = expected_usage({n: lab.http.get(f"/nodes/{n}/events/").json() for n in names})
    owners = {"alice@lab": (first[0], first[1]), bob: (second,)}
    by_owner = {r["key"]: r for r in lab.http.get("/lab/usage/", params={"by": "owner"}).json()["rows"]}
    assert set(by_owner) == set(owners) and (by_owner["alice@lab"]["locks"], by_owner[bob]["locks"]) == (3, 1)
    for owner, held in owners.items():
        row = by_owner[owner]
        use, prov = (sum(per_node[n][i] for n in held) for i in (0, 1))
        assert abs(row["node_seconds"] - use) < 0.002 and abs(row["provisioning_seconds"] - prov) < 0.002, row
        assert abs(row["cost"] - (use + prov) / 3600 * PRICE) < 1e-4
    [by_type] = lab.http.get("/lab/usage/", params={"by": "type"}).json()["rows"]
    assert by_type["key"] == "dev" and by_type["locks"] == 4
    assert abs(by_type["node_seconds"] - sum(u for u, _ in per_node.values())) < 0.002

    out = lablease(tmp_path, "usage", "--by", "owner", "--server", lab.url)
    assert out.returncode == 0 and "alice@lab" in out.stdout and bob in out.stdout, out.stderr
    as_json = lablease(tmp_path, "usage", "--by", "type", "--json", "--since", "2000-01-01", "--server", lab.url)
    assert json.loads(as_json.stdout)["rows"][0]["node_seconds"] == by_type["node_seconds"]
    assert lab.http.get("/lab/usage/", params={"since": "yesterday"}).status_code == 400
    page = lab.http.get("/ui/usage")
    assert page.status_code == 200 and "alice@lab" in page.text and "<svg" in page.text
    metrics = lab.http.get("/metrics").text
    counted = sum(float(line.split()[-1]) for line in metrics.splitlines()
                  if line.startswith("lablease_node_seconds_total{"))
    assert abs(counted - by_type["node_seconds"]) < 0.01, metrics
