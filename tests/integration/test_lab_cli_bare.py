"""The lab user commands against a real `lablease serve` (subprocess) with bare nodes only.

Bare nodes use the plain paddles endpoints: no provisioning, and no progress stream needed.
The commands run in-process (CliRunner, real HTTP) and once through `python -m lablease`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from lablease.cli import app
from lablease.hostnames import numbered_names
from lablease.client import support as cli_support
from lablease.client.lockclient import LockClient
from lablease.netutil import free_port
from lablease.testing.lockserver import start_lock_server

pytestmark = pytest.mark.integration

DOMAIN = "front.example.com"
OWNER = "tester@lab"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A lock server with four bare nodes, smithi001 … smithi004."""
    srv = start_lock_server(tmp_path_factory.mktemp("lockserver"), lab_domain=DOMAIN)
    with LockClient(srv.url) as client:
        for name in numbered_names("smithi", 4):
            client.create(f"{name}.{DOMAIN}", machine_type="smithi", up=True, os_type="ubuntu", os_version="22.04")
    yield srv
    srv.stop()


@pytest.fixture
def home(server, tmp_path, monkeypatch):
    """~/.teuthology.yaml points at the server, as a lab user's does."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(cli_support.SERVER_ENV, raising=False)
    monkeypatch.setattr(cli_support, "CONFIG_FILES", ("~/.teuthology.yaml",))
    (tmp_path / ".teuthology.yaml").write_text(yaml.safe_dump({"lock_server": server.url + "/",
                                                               "lab_domain": DOMAIN}))
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_lock_many_list_summary_status_and_unlock_of_bare_nodes(home):
    done = run("lock-many", "2", "-m", "smithi", "--owner", OWNER, "--desc", "job 1", "--json")
    assert done.exit_code == 0, done.output
    names = sorted(n["name"] for n in json.loads(done.stdout))
    assert len(names) == 2 and all(n.endswith(DOMAIN) for n in names)

    listed = json.loads(run("list", "--owner", OWNER, "--locked", "--json").stdout)
    assert sorted(n["name"] for n in listed) == names
    table = run("list", "-m", "smithi").stdout
    assert "job 1" in table and OWNER in table and re.search(r"\b\d+ s\b", table)

    rows = json.loads(run("summary", "--json").stdout)
    assert sum(r["locked"] for r in rows) == 2 and sum(r["count"] for r in rows) == 4

    status = run("status", names[0].split(".")[0])
    assert status.exit_code == 0, status.output
    assert "lock" in status.stdout and "locked: False → True" in status.stdout

    done = run("unlock", *names, "--owner", OWNER, "--desc", "job 1")
    assert done.exit_code == 0, done.output
    assert json.loads(run("list", "--locked", "--json").stdout) == []


def test_lock_one_by_short_name_then_another_owner_is_refused_with_exit_1(home):
    done = run("lock", "smithi003", "--owner", OWNER, "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["locked_by"] == OWNER
    other = run("lock", "smithi003", "--owner", "someone@else")
    assert other.exit_code == 1 and "already-locked" in other.stderr
    wrong = run("unlock", "smithi003", "--owner", "someone@else")
    assert wrong.exit_code == 1
    assert run("unlock", "smithi003", "--owner", OWNER, "-q").exit_code == 0


def test_asking_for_more_nodes_than_are_free_exits_3_and_points_at_the_list_of_that_type(home):
    done = run("lock-many", "9", "-m", "smithi", "--owner", OWNER)
    assert done.exit_code == 3 and "only 4 nodes available" in done.stderr
    assert "see: lablease list -m 'smithi'" in done.stderr


def test_a_machine_type_in_the_wrong_case_is_named_with_the_types_the_server_has(home, server):
    """Machine types match exactly, as in paddles: `-m Smithi` finds no smithi node, and the user is told why."""
    done = run("lock-many", "1", "-m", "Smithi", "--owner", OWNER, "--json")
    assert done.exit_code == 3
    error = json.loads(done.stdout)["error"]
    assert error.startswith("only 0 nodes available: no node has machine type 'Smithi'")
    assert "case-sensitive" in error and "this server has: smithi" in error
    with LockClient(server.url) as client:
        assert not any(n["locked"] for n in client.list())


def test_a_server_that_is_not_running_exits_4(home):
    done = run("list", "--server", f"http://127.0.0.1:{free_port()}")
    assert done.exit_code == 4 and "cannot reach" in done.stderr


def test_the_installed_command_lists_and_summarises_without_a_tty(home, server):
    env = {**os.environ, "HOME": str(home), cli_support.SERVER_ENV: server.url}
    for args in (["list"], ["summary"]):
        done = subprocess.run([sys.executable, "-m", "lablease", *args], capture_output=True, text=True,
                              timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        assert "smithi" in done.stdout and "\x1b[" not in done.stdout
