"""An admin's `lablease unlock --force`, and Ctrl-C of `lablease lock-many`, through the real CLI against
`lablease serve` subprocesses, devcloud (SSH on), the DNS service and BIND (fixtures of test_lab_reconciler)."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time

import pytest

from lablease.testing.waiting import wait_until
from tests.integration.test_lab_reconciler import kill, lab_factory  # noqa: F401 - the fixture
from tests.integration.test_lab_service import OWNER, Lab

pytestmark = pytest.mark.integration

TOKEN = "s3cret-admin-token"


def _cli(lab: Lab, home, *args: str, token: str | None = None) -> subprocess.CompletedProcess:  # noqa: ANN001
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    if token is not None:
        env["LABLEASE_ADMIN_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "lablease", *args, "--server", lab.url], capture_output=True,
                          text=True, timeout=180, env=env)


def test_unlock_force_destroys_and_frees_an_abandoned_a_ready_and_a_destroy_failed_node_naming_who(
        lab_factory, tmp_path):
    first = lab_factory(admin_token=TOKEN)
    first.http.headers["Authorization"] = f"Bearer {TOKEN}"  # adding nodes is the admin's too
    stuck, ready, failed = first.add("node1", "node2", "node3")
    first.cloud.set_faults({"latency": [{"match": "GET /compute/*", "seconds": 1}]})  # a long boot to die in
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(first.lock_many, 1)
        wait_until(lambda: len(first.cloud.resources()["servers"]) == 1, what="the first server", timeout=20)
        kill(first)
    first.cloud.clear_faults()
    lab = lab_factory(admin_token=TOKEN)  # no timer pass (reconcile_interval 0): only the admin can clean it
    assert lab.node(stuck)["state"] == "provisioning"

    refused = _cli(lab, tmp_path, "unlock", "node1", "--owner", OWNER)
    assert refused.returncode == 1
    assert "its lock was abandoned by" in refused.stderr and "(process gone)" in refused.stderr, refused.stderr
    assert "lablease unlock --force node1" in refused.stderr and "wait for its lock" not in refused.stderr

    assert lab.lock_many(1).status_code == 200 and lab.node(ready)["state"] == "ready"
    assert lab.lock_many(1).status_code == 200
    lab.cloud.set_faults({"delete_error": {"probability": 1.0, "match_name": "node3"}})
    assert lab.unlock_many([failed]).status_code == 503 and lab.node(failed)["state"] == "destroy-failed"
    lab.cloud.clear_faults()

    without = _cli(lab, tmp_path, "unlock", "--force", "node1")
    assert without.returncode == 1 and "admin token" in without.stderr, without.stderr
    wrong = _cli(lab, tmp_path, "unlock", "--force", "node1", token="not-it")
    assert wrong.returncode == 1 and "does not match" in wrong.stderr and TOKEN not in wrong.stderr
    assert lab.node(stuck)["state"] == "provisioning"

    forced = _cli(lab, tmp_path, "unlock", "--force", "node1", "node2", "node3", "--owner", "root@admin",
                  token=TOKEN)
    assert forced.returncode == 0, forced.stderr
    assert "force-unlocked 3 node(s)" in forced.stdout
    lab.assert_nothing_left([stuck, ready, failed])
    for name in (stuck, ready, failed):
        events = lab.http.get(f"/nodes/{name}/events/").json()
        assert any(e["action"] == "force-unlock" and e["who"] == "root@admin (force-unlock)" for e in events), events


def test_ctrl_c_of_lock_many_stops_its_provisioning_at_once_rolls_back_and_logs_no_500(lab_factory, tmp_path):
    lab = lab_factory()
    names = lab.add("node1", "node2")
    # Each look at the cloud takes 2 s: the boot lasts several looks, so a create that went on to the end
    # would still be at work (and its servers up) well after the rollback of a stopped one.
    lab.cloud.set_faults({"latency": [{"match": "GET /compute/*", "seconds": 2}]})
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "lablease", "lock-many", "2", "-m", "dev", "--owner", OWNER,
                             "--server", lab.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_until(lambda: len(lab.cloud.resources()["servers"]) == 2, what="2 servers booting", timeout=30)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    sent = time.monotonic()
    wait_until(lambda: lab.cloud.resources()["servers"] == [] and lab.cloud.resources()["volumes"] == [],
               what="no server or volume left", timeout=15)
    lab.cloud.clear_faults()
    wait_until(lambda: all(lab.node(n)["state"] == "idle" and not lab.node(n)["locked"] for n in names),
               what="every node idle and free", timeout=15)
    assert time.monotonic() - sent < 15
    for name in names:  # stopped in its boot: no node ever got to SSH, let alone ready
        stages = [e["new"].get("stage") for e in lab.http.get(f"/nodes/{name}/events/").json()
                  if e["action"] == "stage" and e["new"]]
        assert "ready" not in stages, stages
    log = lab.server.process.log_tail(200_000)
    lines = [line for line in log.splitlines() if "path=/nodes/lock_many/" in line]
    assert lines and all("status=499" in line and "went away" in line for line in lines), lines
    assert "Traceback" not in log and "status=500" not in log
