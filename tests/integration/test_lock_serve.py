"""`lablease serve` and `lablease nodes` as a newcomer and a lab admin run them (subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
import yaml

from lablease.netutil import free_port
from lablease.testing.lockserver import start_lock_server
from lablease.testing.processes import ServerProcess

pytestmark = pytest.mark.integration


def lablease(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lablease", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def test_serve_without_config_starts_an_empty_open_inventory_in_a_sqlite_file_under_xdg_data_home(tmp_path):
    port = free_port()
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)}
    proc = ServerProcess([sys.executable, "-m", "lablease", "serve", "--port", str(port)],
                         log_path=tmp_path / "serve.log", env=env).start()
    try:
        proc.wait_for_port("127.0.0.1", port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            assert http.get("/nodes/").json() == []
            assert http.post("/nodes/", json={"name": "n1"}).status_code == 200  # no admin token
            assert http.get("/nodes/n1/").json()["name"] == "n1"  # no lab domain added
    finally:
        proc.stop()
    assert (tmp_path / "xdg" / "lablease" / "lablease.db").exists()


def test_a_bad_config_value_is_named_by_key_and_the_token_is_never_echoed(tmp_path):
    cfg = tmp_path / "teuthology.yaml"
    cfg.write_text(yaml.safe_dump({"lab_domain": "x.example.com", "libcloud": {"providers": {}},
                                   "lablease": {"admin_token": "s3cret-token", "port": "eighty"}}))
    done = lablease("serve", "--config", str(cfg))
    assert done.returncode != 0
    assert "lablease.port" in done.stderr and str(cfg) in done.stderr
    assert "s3cret-token" not in done.stderr + done.stdout


def test_an_unreadable_admin_token_file_is_a_clear_error(tmp_path):
    cfg = tmp_path / "teuthology.yaml"
    cfg.write_text(yaml.safe_dump({"lablease": {"admin_token_file": str(tmp_path / "missing")}}))
    done = lablease("serve", "--config", str(cfg))
    assert done.returncode != 0 and "admin_token_file" in done.stderr


def test_admin_token_from_a_file_protects_create(tmp_path):
    (tmp_path / "token").write_text("from-file-token\n")
    server = start_lock_server(tmp_path / "srv", extra={"admin_token_file": str(tmp_path / "token")})
    try:
        with httpx.Client(base_url=server.url) as http:
            assert http.post("/nodes/", json={"name": "n1"}).status_code == 401
            ok = http.post("/nodes/", json={"name": "n1"}, headers={"Authorization": "Bearer from-file-token"})
            assert ok.status_code == 200
    finally:
        server.stop()
    assert "from-file-token" not in server.process.log_tail(100_000)


def test_nodes_add_list_remove_manage_the_inventory_through_the_api(tmp_path):
    server = start_lock_server(tmp_path / "srv", admin_token="tok", lab_domain="front.example.com")
    user_cfg = tmp_path / "teuthology.yaml"
    user_cfg.write_text(yaml.safe_dump({"lock_server": server.url, "lab_domain": "front.example.com"}))
    env = {"LABLEASE_ADMIN_TOKEN": "tok"}
    try:
        done = lablease("nodes", "add", "-c", str(user_cfg), "--machine-type", "ovh", "--vm", "--count", "3", env=env)
        assert done.returncode == 0, done.stderr
        names = [f"ovh00{i}.front.example.com" for i in (1, 2, 3)]
        with httpx.Client(base_url=server.url) as http:
            nodes = http.get("/nodes/").json()
            assert [n["name"] for n in nodes] == names
            assert all(n["is_vm"] and n["up"] and n["machine_type"] == "ovh" for n in nodes)
            # adding an overlapping range changes nothing
            again = lablease("nodes", "add", "-c", str(user_cfg), "-m", "ovh", "--count", "4", env=env)
            assert again.returncode != 0 and "ovh001.front.example.com" in again.stderr
            assert len(http.get("/nodes/").json()) == 3
            # without the token nothing is created
            denied = lablease("nodes", "add", "-c", str(user_cfg), "n9", env={"LABLEASE_ADMIN_TOKEN": ""})
            assert denied.returncode != 0 and "401" in denied.stderr
            http.put(f"/nodes/{names[0]}/lock/", json={"locked": True, "locked_by": "a", "description": "d"})
            refused = lablease("nodes", "remove", "-c", str(user_cfg), "ovh001", "ovh002", env=env)
            assert refused.returncode != 0 and "locked" in refused.stderr
            assert len(http.get("/nodes/").json()) == 3
            listed = lablease("nodes", "list", "-c", str(user_cfg), "--locked")
            assert listed.returncode == 0 and "ovh001.front.example.com" in listed.stdout
            assert "ovh002" not in listed.stdout
            gone = lablease("nodes", "remove", "-c", str(user_cfg), "--force", "ovh001", "ovh002", env=env)
            assert gone.returncode == 0, gone.stderr
            assert [n["name"] for n in http.get("/nodes/").json()] == [names[2]]
    finally:
        server.stop()


def test_an_unknown_log_level_is_a_config_error_naming_the_key_not_a_traceback(tmp_path):
    cfg = tmp_path / "teuthology.yaml"
    cfg.write_text(yaml.safe_dump({"lablease": {"log_level": "verbose", "data_dir": str(tmp_path / "data")}}))
    done = lablease("serve", "--config", str(cfg))
    assert done.returncode != 0
    assert "lablease.log_level" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("flag,value", [("--port", "70000"), ("--port", "0"), ("--workers", "0")])
def test_serve_refuses_an_out_of_range_port_or_worker_count_before_starting(tmp_path, flag, value):
    done = subprocess.run([sys.executable, "-m", "lablease", "serve", flag, value], capture_output=True, text=True,
                          timeout=20, env={**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert done.returncode == 2 and flag in done.stderr
    assert not (tmp_path / "xdg").exists()  # nothing was created


@pytest.mark.parametrize("command", ["add", "remove"])
def test_nodes_add_and_remove_refuse_a_name_without_a_host_part_with_a_usage_error(tmp_path, command):
    cfg = tmp_path / "teuthology.yaml"
    cfg.write_text(yaml.safe_dump({"lab_domain": "lab.example"}))
    done = lablease("nodes", command, "-c", str(cfg), "--server", "http://127.0.0.1:9", ".")
    assert done.returncode == 2 and "no host name" in done.stderr and "Traceback" not in done.stderr


def test_serve_with_an_unreachable_database_says_so_in_one_line_without_the_password(tmp_path):
    cfg = tmp_path / "teuthology.yaml"
    url = f"postgresql+psycopg://lab:db-pass-word@127.0.0.1:{free_port()}/inventory"
    cfg.write_text(yaml.safe_dump({"lablease": {"database_url": url}}))
    done = lablease("serve", "--config", str(cfg))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "lablease.database_url" in done.stderr and "cannot open or migrate the database" in done.stderr
    assert "db-pass-word" not in done.stderr + done.stdout


def test_a_plain_lock_server_prunes_events_older_than_its_retention_at_start_up(tmp_path):
    from datetime import timedelta

    from sqlalchemy import update

    from lablease.store import NodeStore
    from lablease.store.models import node_events
    from lablease.store.records import utcnow
    from lablease.testing.lockserver import start_lock_server
    from lablease.testing.waiting import wait_until

    url = f"sqlite:///{tmp_path / 'inv.db'}"
    store = NodeStore.open(url)
    store.create("old1")
    with store.engines.write.begin() as conn:
        conn.execute(update(node_events).values(at=utcnow() - timedelta(days=31)))
    store.create("new1")
    server = start_lock_server(tmp_path / "srv", database_url=url, extra={"events_retention_days": 30})
    try:
        wait_until(lambda: store.events("old1") == [], what="old1's 31-day-old events pruned", timeout=20,
                   interval=0.1)
        assert [e.action for e in store.events("new1")] == ["create"]
        assert {n.name for n in store.list()} == {"old1", "new1"}
    finally:
        server.stop()
        store.close()
