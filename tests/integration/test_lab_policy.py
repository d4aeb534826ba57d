"""Lab policy end to end (issue 22): `lablease serve` with a policy on devcloud (real sshd per server), the DNS
service and BIND, over HTTP and through the `lablease` and teuthology-lock commands.

A lock that reaches its expiry is destroyed and unlocked; one extended or held is kept; releasing the hold of
an expired lock destroys it; a lock over its owner's quota is refused before anything is claimed or created;
expiry and holds live in the database, so a restart and two processes on PostgreSQL apply them once.
Expiries here are seconds (hours may be fractional); the reconciler's passes are driven by hand
(POST /lab/reconcile/) where a test must know a pass ran after a moment, and by its timer elsewhere.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timedelta

import httpx
import pytest
import yaml

from lablease.provision.devlab import devcloud_lab_data, generate_lab_key
from lablease.store.records import utcnow
from lablease.testing.lockserver import start_lock_server
from lablease.testing.waiting import wait_until
from tests.integration.test_lab_service import Lab
from tests.integration.test_teuthology_client import commands, teuthology_venv

pytestmark = pytest.mark.integration

DOMAIN = "lab.example"
OWNER = "alice@lab"
CLOUD = {"boot_delay": 0.2, "volume_delay": 0.05, "ssh": {"enabled": True, "delay": 0.1, "runcmd_delay": 0.05}}
SECOND = 1 / 3600  # an hour's fraction: policies here count in seconds


@pytest.fixture
def lab_factory(devcloud_factory, dns_service, tmp_path):
    """Start lab services (on SQLite, or the database given) with ``policy`` on machine type dev."""
    started: list = []
    cloud = devcloud_factory(CLOUD)
    key = generate_lab_key(tmp_path / "lab_key")

    def start(policy: dict | None = None, quotas: dict | None = None, database_url: str | None = None,
              interval: float = 0, **provider) -> Lab:  # noqa: ANN003
        top = devcloud_lab_data(cloud, key, nsupdate_url=dns_service.update_url, lab_domain=DOMAIN,
                                machine_type="dev", boot_timeout=30, ready_timeout=30, delete_timeout=10,
                                **({"policy": policy} if policy else {}), **provider)
        if quotas:
            top["libcloud"]["quotas"] = quotas
        url = database_url or f"sqlite:///{tmp_path / 'lab.db'}"
        server = start_lock_server(tmp_path / f"lab{len(started)}", database_url=url, lab_domain=DOMAIN, top=top,
                                   extra={"reconcile_interval": interval})
        started.append(server)
        return Lab(server.url, cloud, dns_service.bind, key, url, server)

    yield start
    for server in started:
        server.stop()


def lablease(home, *args: str) -> subprocess.CompletedProcess:  # noqa: ANN001
    return subprocess.run([sys.executable, "-m", "lablease", *args], env={**os.environ, "HOME": str(home)},
                          capture_output=True, text=True, timeout=120)


def locked(lab: Lab, count: int = 1, **extra) -> list[str]:  # noqa: ANN003
    answer = lab.lock_many(count, **extra)
    assert answer.status_code == 200, answer.text
    return [n["name"] for n in answer.json()]


def expiry(lab: Lab, name: str) -> datetime:
    return datetime.fromisoformat(lab.node(name)["expires_at"])


def reconcile(lab: Lab) -> list[dict]:
    """One reconciler pass, now (the timer is off): its actions."""
    answer = lab.http.post("/lab/reconcile/")
    assert answer.status_code == 200, answer.text
    return [a for report in answer.json() for a in report["actions"]]


def moves(lab: Lab, name: str) -> list[tuple[str, str | None, str | None]]:
    """(action, who, new state) of the node's events that are policy acts or state moves."""
    return [(e["action"], e["who"], (e["new"] or {}).get("state"))
            for e in lab.http.get(f"/nodes/{name}/events/").json()
            if e["action"] in ("state", "expiring", "extend", "hold", "release")]


def test_an_expired_lock_is_destroyed_and_unlocked_while_an_extended_and_a_held_one_are_kept_until_released(
        lab_factory, tmp_path):
    lab = lab_factory(policy={"lock_hours": 8 * SECOND, "lock_hours_max": 1, "warn_hours": 1, "grace_hours": 0,
                              "hold_hours_max": 2})
    lab.add("node1", "node2", "node3")
    kept, held = locked(lab, 2)  # the machine type's default: 8 s
    [short] = locked(lab, 1, lock_hours=SECOND)  # this lock asks for less
    listed = {n["name"]: n for n in lab.http.get("/nodes/").json()}
    assert expiry(lab, short) < expiry(lab, kept) and listed[kept]["expires_at"] == lab.node(kept)["expires_at"]
    default_end = max(expiry(lab, kept), expiry(lab, held))

    out = lablease(tmp_path, "extend", kept, "--hours", "0.5", "--server", lab.url, "--owner", OWNER)
    assert out.returncode == 0 and f"{kept}: expires" in out.stdout, out.stderr
    assert expiry(lab, kept) >= default_end + timedelta(minutes=29)
    before = expiry(lab, kept)
    # The node page's form: its confirmation page (nothing changes), whose button posts what the page's script
    # would send (the fields, confirm=yes).
    page = lab.http.get(f"/ui/nodes/{kept}/extend", params={"locked_by": OWNER, "hours": "0.1"})
    assert page.status_code == 200 and expiry(lab, kept) == before and "confirm=yes" in page.text
    form = lab.http.post(f"/ui/nodes/{kept}/extend", json={"locked_by": OWNER, "hours": "0.1", "confirm": "yes"})
    assert form.status_code == 303 and expiry(lab, kept) >= before + timedelta(minutes=5), form.text
    form = lab.http.post(f"/ui/nodes/{kept}/extend", json={"locked_by": "mallory@lab", "hours": "0.1",
                                                           "confirm": "yes"})
    assert form.status_code == 403 and "only the lock&#39;s owner may" in form.text
    out = lablease(tmp_path, "hold", held, "--hours", "1", "--reason", "debugging an osd crash", "--server", lab.url,
                   "--owner", OWNER)
    assert out.returncode == 0 and "held until" in out.stdout, out.stderr
    refused = lablease(tmp_path, "extend", held, "--hours", "2", "--server", lab.url, "--owner", OWNER)
    assert refused.returncode == 1 and "lock_hours_max" in refused.stderr
    refused = lab.http.post(f"/lab/nodes/{held}/release/", json={"locked_by": "mallory@lab"})
    assert refused.status_code == 403 and f"locked by {OWNER}, not mallory@lab" in refused.json()["message"]

    wait_until(lambda: utcnow() > default_end, what="the default expiry to pass", timeout=30, interval=0.2)
    acts = {(a["action"], a["node"]): a for a in reconcile(lab)}
    assert acts[("expire", short)]["done"] and "libcloud.providers.dev.policy" in acts[("expire", short)]["reason"]
    assert not any(a == "expire" and node != short for a, node in acts)
    node = lab.node(short)
    assert (node["locked"], node["state"], node["expires_at"]) == (False, "idle", None)
    # No pass ran within its 1 s, so it was not warned; the extended one, in its warning window, is now.
    assert moves(lab, short)[-2:] == [("state", "expiry", "destroying"), ("state", "expiry", "idle")]
    assert acts[("warn", kept)]["done"] and ("expiring", "expiry", None) in moves(lab, kept)
    assert sorted(s["name"] for s in lab.cloud.resources()["servers"]) == ["node1", "node2"]
    assert lab.bind.addresses("node3") == set()
    metrics = lab.http.get("/metrics").text
    assert 'lablease_locks_held{machine_type="dev"} 1.0' in metrics
    assert 'lablease_locks_expiring{machine_type="dev"} 1.0' in metrics

    shown = lab.node(held)
    assert (shown["state"], shown["hold_reason"]) == ("ready", "debugging an osd crash") and shown["hold_until"]
    assert "held" in lablease(tmp_path, "list", "--server", lab.url).stdout
    assert "debugging an osd crash" in lablease(tmp_path, "status", held, "--server", lab.url).stdout
    page = lab.http.get(f"/ui/nodes/{kept}").text
    assert "Expires" in page and "/extend" in page

    out = lablease(tmp_path, "release", held, "--server", lab.url, "--owner", OWNER)
    assert out.returncode == 0, out.stderr
    assert [a["node"] for a in reconcile(lab) if a["action"] == "expire" and a["done"]] == [held]
    assert [s["name"] for s in lab.cloud.resources()["servers"]] == ["node1"]
    assert lab.unlock_many([kept]).status_code == 200
    lab.assert_nothing_left([kept, held, short])


def test_a_lock_over_the_owners_quota_is_refused_before_anything_is_claimed_and_teuthology_lock_shows_why(
        lab_factory, tmp_path):
    venv = teuthology_venv()
    lab = lab_factory({"lock_hours": 1}, quotas={"default": {"machine_types": {"dev": 2}}},
                      min_ready={"ubuntu-22.04": 1})
    lab.add("node1", "node2", "node3")
    warm = wait_until(lambda: [n["name"] for n in lab.http.get("/nodes/").json()
                               if n["state"] == "ready" and not n["locked"]], what="a warm node", timeout=30)
    home = tmp_path / "home"
    (home / ".cache").mkdir(parents=True)
    (home / ".teuthology.yaml").write_text(yaml.safe_dump({"lock_server": lab.url, "lab_domain": DOMAIN}))
    _, teuthology_lock = commands(home, venv)
    first = teuthology_lock("--lock-many", "1", "-m", "dev", "--owner", "tester@lab", "--desc", "job 1")
    assert first.returncode == 0 and list(yaml.safe_load(first.stdout)["targets"]) == warm, first.stderr
    got = lab.node(warm[0])  # teuthology sends no expiry: its lock gets the type's default, 1 h
    assert timedelta(hours=1) <= expiry(lab, warm[0]) - datetime.fromisoformat(got["locked_since"]) < timedelta(
        hours=1, minutes=10)
    refill = wait_until(lambda: [n["name"] for n in lab.http.get("/nodes/").json()
                                 if n["state"] == "ready" and not n["locked"]], what="the pool's refill", timeout=30)
    servers = sorted(s["id"] for s in lab.cloud.resources()["servers"])
    trail = len(lab.http.get(f"/nodes/{refill[0]}/events/").json())

    refused = teuthology_lock("--lock-many", "2", "-m", "dev", "--owner", "tester@lab", "--desc", "job 2")
    reason = ("over quota: tester@lab may hold at most 2 dev node(s) (libcloud.quotas.default.machine_types.dev) "
              "and holds 1, so 2 more would make 3")
    assert refused.returncode == 1 and reason in refused.stderr, refused.stderr
    assert "Insufficient nodes available" in refused.stderr  # its scheduler's 503: wait and retry

    assert sorted(s["id"] for s in lab.cloud.resources()["servers"]) == servers
    assert len(lab.http.get(f"/nodes/{refill[0]}/events/").json()) == trail  # the warm node was not claimed
    nodes = {n["name"]: n for n in lab.http.get("/nodes/").json()}
    assert [n for n, v in nodes.items() if v["locked"]] == warm
    out = lablease(tmp_path, "lock-many", "2", "-m", "dev", "--server", lab.url, "--owner", "tester@lab")
    assert out.returncode == 3 and reason in out.stderr
    page = lab.http.get("/ui/usage")  # the dashboard shows each limited owner's use of its quota
    assert page.status_code == 200 and "Quota use now" in page.text, page.text[-2000:]
    row = re.search(r"tester@lab</a></th>\s*<td class=\"num\">(.*?)</td>\s*<td>(.*?)</td>", page.text)
    assert row and row.groups() == ("1 / —", "dev: 1 / 2"), page.text[-2000:]
    assert lab.unlock_many(warm, owner="tester@lab").status_code == 200


def once_expired(lab: Lab, name: str) -> bool:
    """The node's lock was expired once: one move to destroying and one to idle by the expiry rule, after at
    most one warning (none when no pass looked between its answer and its expiry, or while it was held)."""
    acts = [m for m in moves(lab, name) if m[1] == "expiry"]
    warnings = [m for m in acts if m[0] == "expiring"]
    return len(warnings) <= 1 and [m for m in acts if m[0] == "state"] == [
        ("state", "expiry", "destroying"), ("state", "expiry", "idle")] and acts[-1] == ("state", "expiry", "idle")


def test_expiry_and_holds_survive_a_restart_and_two_processes_on_postgresql_act_on_each_lock_once(
        lab_factory, postgres_url):
    policy = {"lock_hours": 3 * SECOND, "lock_hours_max": 1, "warn_hours": 1, "hold_hours_max": 1}
    # Locked and held with no pass running (the timer off), then both processes stop: all they knew is gone.
    first = lab_factory(policy, database_url=postgres_url)
    other = lab_factory(policy, database_url=postgres_url)
    first.add("node1", "node2")
    expiring, held = locked(first, 2)
    answer = other.http.post(f"/lab/nodes/{held}/hold/", json={"locked_by": OWNER, "hours": 1, "reason": "gdb"})
    assert answer.status_code == 200 and answer.json()["hold_reason"] == "gdb", answer.text
    first.server.stop()
    other.server.stop()
    first = lab_factory(policy, database_url=postgres_url, interval=0.3)  # two processes, passes every 0.3 s
    other = lab_factory(policy, database_url=postgres_url, interval=0.3)

    wait_until(lambda: not first.node(expiring)["locked"], what=f"{expiring} to expire", timeout=30, interval=0.2)
    assert once_expired(first, expiring)
    wait_until(lambda: utcnow() > expiry(first, held) + timedelta(seconds=1), what="the held lock's expiry to pass",
               timeout=30, interval=0.2)
    assert (first.node(held)["state"], first.node(held)["hold_reason"]) == ("ready", "gdb")

    answer = first.http.post(f"/lab/nodes/{held}/release/", json={"locked_by": OWNER})
    assert answer.status_code == 200 and answer.json()["hold_until"] is None, answer.text
    wait_until(lambda: not other.node(held)["locked"], what=f"{held} to expire once released", timeout=30,
               interval=0.2)
    assert once_expired(other, held)
    first.assert_nothing_left([expiring, held])


def test_a_warm_node_older_than_max_ready_age_is_destroyed_and_replaced_by_a_fresh_one(lab_factory):
    lab = lab_factory(min_ready={"ubuntu-22.04": 1}, max_ready_age=2)
    lab.add("node1", "node2")

    def warm() -> list[dict]:
        return [n for n in lab.http.get("/nodes/").json() if n["state"] == "ready" and not n["locked"]]

    [first] = wait_until(warm, what="a warm node", timeout=30)
    replaced = wait_until(lambda: [e for e in lab.http.get(f"/nodes/{first['name']}/events/").json()
                                   if "older than max_ready_age" in str(e["new"])], what="the warm node replaced",
                          timeout=30, interval=0.2)
    assert replaced[0]["who"] == "warm-pool" and replaced[0]["new"]["state"] == "destroying"
    fresh = wait_until(lambda: [n for n in warm() if n["cloud_server_id"] != first["cloud_server_id"]],
                       what="a fresh warm node", timeout=30, interval=0.2)
    assert fresh[0]["cloud_server_id"] in {s["id"] for s in lab.cloud.resources()["servers"]}
    assert first["cloud_server_id"] not in {s["id"] for s in lab.cloud.resources()["servers"]}
