"""Warm pools under faults: a full quota is not hammered (refills back off, one create per step, a bounded
trail, the provider's health in /lab/status/ and /metrics); a lowered min_ready drains the surplus at the next
start; a warm node that stops answering is replaced without waiting for a lock. `lablease serve` as a
subprocess, real devcloud (SSH on), the DNS service, BIND, one SQLite file across restarts."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from lablease.provision.devlab import devcloud_lab_data, generate_lab_key
from lablease.testing.lockserver import start_lock_server
from tests.integration.test_lab_service import CLOUD, DOMAIN, Lab

pytestmark = pytest.mark.integration
CREATES = "POST /compute/v2.1/servers"
UBUNTU = "ubuntu-22.04"


@pytest.fixture
def pool_lab(devcloud_factory, dns_service, tmp_path):
    """Start (and restart) a lab service on one SQLite file; keyword arguments are provider keys of ``dev``."""
    started: list = []
    cloud = devcloud_factory({**CLOUD, "quotas": {**CLOUD["quotas"], "instances": 2}})
    key = generate_lab_key(tmp_path / "lab_key")
    db_url = f"sqlite:///{tmp_path / 'lab.db'}"

    def start(**provider) -> Lab:  # noqa: ANN003
        top = devcloud_lab_data(cloud, key, nsupdate_url=dns_service.update_url, lab_domain=DOMAIN,
                                machine_type="dev", boot_timeout=30, ready_timeout=30, delete_timeout=10, **provider)
        server = start_lock_server(tmp_path / f"lab{len(started)}", database_url=db_url, lab_domain=DOMAIN, top=top,
                                   extra={"reconcile_interval": 0})
        started.append(server)
        return Lab(server.url, cloud, dns_service.bind, key, db_url, server)

    yield start
    for server in started:
        server.stop()


def _wait(check, timeout: float = 60.0, every: float = 0.1):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := check():
            return got
        time.sleep(every)
    raise AssertionError("timed out")


def _health(lab: Lab) -> dict:
    return lab.http.get("/lab/status/").json()["providers"]["dev"]["health"]


def _warm(lab: Lab) -> list[dict]:
    return [n for n in lab.http.get("/nodes/", params={"machine_type": "dev"}).json()
            if n["state"] == "ready" and not n["locked"]]


def _events(lab: Lab, names: list[str]) -> int:
    return sum(len(lab.http.get(f"/nodes/{name}/events/").json()) for name in names)


def _fill_quota(lab: Lab) -> list:
    """Servers of someone else in the project, as many as the instance quota (2): the pool's creates are refused."""
    driver = lab.cloud.driver()
    image = next(i for i in driver.list_images() if "22.04" in i.name)
    size = sorted(driver.list_sizes(), key=lambda s: s.ram)[0]
    return [driver.create_node(name=f"someone-else-{i}", image=image, size=size) for i in range(2)]


def test_a_full_quota_gets_one_refill_per_backoff_step_and_the_provider_shows_quota_until_it_frees(pool_lab):
    lab = pool_lab(min_ready={UBUNTU: 2}, refill_backoff=2, refill_backoff_max=8)
    planted = _fill_quota(lab)
    names = lab.add("node1", "node2")
    first = _wait(lambda: (h := _health(lab))["state"] == "quota" and h)
    assert "Quota exceeded for instances" in first["message"] and first["next_refill"], first
    log = Path(lab.server.process.log_path)
    log_start, events_start = len(log.read_text()), _events(lab, names)
    creates, seen, start = [], lab.cloud.request_counts()[CREATES], time.monotonic()
    while time.monotonic() - start < 10:  # watch the cloud's create counter for 10 s
        now = lab.cloud.request_counts()[CREATES]
        creates += [time.monotonic()] * (now - seen)
        seen = now
        time.sleep(0.1)
    # after the n-th failure in a row the next refill waits at least half of min(8, 2 * 2^(n-1)) s
    floors = [min(8, 2 * 2 ** (n - 1)) / 2 for n in range(first["failures"], first["failures"] + len(creates))]
    gaps = [b - a for a, b in zip([start] + creates, creates)]
    assert len(creates) <= 3 and all(gap >= floor - 0.3 for gap, floor in zip(gaps, floors)), (gaps, floors)
    # the trail of the two records grows by a bounded number of events per refill, not per second
    grown = _events(lab, names) - events_start
    assert grown <= 12 * len(creates) + 12, (grown, len(creates))
    warnings = [line for line in log.read_text()[log_start:].splitlines() if " WARNING " in line]
    assert len(warnings) <= len(creates) + 1 and all("warm pool dev: refilling" in w for w in warnings), warnings
    status = _health(lab)
    assert (status["state"], status["since"]) == ("quota", first["since"]) and status["failures"] >= 2
    metrics = lab.http.get("/metrics").text
    assert 'lablease_provider_health{machine_type="dev",state="quota"} 1.0' in metrics
    assert 'lablease_provider_health{machine_type="dev",state="ok"} 0.0' in metrics
    for page in ("/ui/", "/ui/summary"):  # the dashboard: a line for the provider in trouble
        line = re.search(r'<p data-provider="dev">(.*?)</p>', lab.http.get(page).text, re.S)
        assert line and "dev: quota" in line[1] and "Quota exceeded for instances" in line[1], page
    # the quota frees: within one step the pool refills and the provider is ok again
    for server in planted:
        lab.cloud.driver().destroy_node(server)
    _wait(lambda: len(_warm(lab)) == 2, timeout=30)
    assert _health(lab)["state"] == "ok" and _health(lab)["next_refill"] is None
    assert 'lablease_provider_health{machine_type="dev",state="ok"} 1.0' in lab.http.get("/metrics").text
    assert 'data-provider="dev"' not in lab.http.get("/ui/").text


def test_lowering_min_ready_and_restarting_destroys_the_surplus_warm_nodes_and_frees_their_records(pool_lab):
    lab = pool_lab(min_ready={UBUNTU: 2})
    names = lab.add("node1", "node2", "node3")
    warm = _wait(lambda: len(w := _warm(lab)) == 2 and w)
    lab.server.stop()
    # lowered to 1: one warm node stays as it was, the other is destroyed and its record idle
    lab = pool_lab(min_ready={UBUNTU: 1})
    kept, drained = warm
    _wait(lambda: lab.node(drained["name"])["state"] == "idle", timeout=30)
    assert [(n["name"], n["cloud_server_id"]) for n in _warm(lab)] == [(kept["name"], kept["cloud_server_id"])]
    assert {s["id"] for s in lab.cloud.resources()["servers"]} == {kept["cloud_server_id"]}
    lab.server.stop()
    # removed altogether: every warm node is surplus; its server, volumes and DNS name go, its record is idle
    lab = pool_lab()
    _wait(lambda: all(lab.node(n)["state"] == "idle" for n in names), timeout=30)
    lab.assert_nothing_left(names)
    trail = lab.http.get(f"/nodes/{kept['name']}/events/").json()
    assert any("surplus warm node" in str(e["new"]) for e in trail), trail
    # idle is enough for everything a node at rest allows: a lock, an unlock, a removal
    locked = lab.http.put(f"/nodes/{kept['name']}/lock/", json={"locked": True, "locked_by": "alice@lab",
                                                               "description": "job 2"})
    assert locked.status_code == 200, locked.text
    assert lab.unlock_many([kept["name"]]).status_code == 200
    assert lab.http.delete(f"/nodes/{kept['name']}/").status_code == 200


def test_a_warm_node_that_stops_answering_is_replaced_without_waiting_for_a_lock(pool_lab):
    lab = pool_lab(min_ready={UBUNTU: 1}, warm_check_interval=1)
    lab.add("node1", "node2")
    [dead] = _wait(lambda: _warm(lab))
    root = Path(lab.cloud.server_internals(dead["cloud_server_id"])["root"])
    subprocess.run(["pkill", "-f", str(root.parent / "ssh" / "sshd_config")], check=True)
    [fresh] = _wait(lambda: [n for n in _warm(lab) if n["cloud_server_id"] != dead["cloud_server_id"]], timeout=30)
    assert dead["cloud_server_id"] not in {s["id"] for s in lab.cloud.resources()["servers"]}
    trail = lab.http.get(f"/nodes/{dead['name']}/events/").json()
    assert any("failed its periodic check" in str(e["new"]) for e in trail), trail
    assert lab.cloud.server_internals(fresh["cloud_server_id"])["ssh_up"]
