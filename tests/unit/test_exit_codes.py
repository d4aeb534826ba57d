"""Every lock-server command exits as the README says: 0 ok, 1 refused, 2 usage, 3 unavailable,
4 unreachable, 130 interrupted (401 and 403 are refusals too, whatever the command).

The server is a fake at the HTTP boundary (an httpx MockTransport): it answers the command's
preliminary reads, then refuses the request under test with the status given.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from lablease.cli import app
from lablease.client import nodes as nodes_cli
from lablease.client import support as cli_support
from lablease.client.lockclient import LockClient

DOMAIN = "lab.example.com"
NODE = {"name": f"n1.{DOMAIN}", "locked": False, "machine_type": "cloud"}

# command line -> the reads that succeed before the request under test ("METHOD /path/" -> body)
COMMANDS: dict[str, tuple[list[str], dict[str, Any]]] = {
    "lock-many": (["lock-many", "1", "-m", "cloud"], {"GET /nodes/machine_types/": ["cloud"]}),
    "lock": (["lock", "n1"], {}),
    "unlock": (["unlock", "n1"], {}),
    "unlock --force": (["unlock", "--force", "n1", "--token", "t"], {}),
    "list": (["list"], {}),
    "summary": (["summary"], {}),
    "status": (["status", "n1"], {}),
    "reconcile": (["reconcile", "--token", "t"], {}),
    "nodes add": (["nodes", "add", "n1", "--token", "t"], {"GET /nodes/": []}),
    "nodes remove": (["nodes", "remove", "n1", "--token", "t"], {"GET /nodes/": [NODE]}),
    "nodes list": (["nodes", "list"], {}),
}
REFUSALS = {400: 1, 401: 1, 403: 1, 404: 1, 503: 3}


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Point every client the CLI makes at ``answer``; returns a setter of the fake's behaviour."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(cli_support.SERVER_ENV, raising=False)
    monkeypatch.delenv(nodes_cli.TOKEN_ENV, raising=False)
    monkeypatch.setattr(cli_support, "CONFIG_FILES", ("~/.teuthology.yaml",))
    (tmp_path / ".teuthology.yaml").write_text(yaml.safe_dump({"lock_server": "http://lab.test:8080",
                                                               "lab_domain": DOMAIN}))
    state: dict[str, Any] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        route = f"{request.method} {request.url.path}"
        if route in state["ok"]:
            return httpx.Response(200, json=state["ok"][route])
        if state["status"] is None:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(state["status"], json={"message": f"refused with {state['status']}"})

    transport = httpx.MockTransport(answer)
    monkeypatch.setattr(cli_support, "new_client", lambda url: LockClient(url, transport=transport))
    monkeypatch.setattr(nodes_cli, "LockClient",
                        lambda url, admin_token=None: LockClient(url, admin_token=admin_token, transport=transport))

    def set_up(ok: dict[str, Any], status: int | None) -> None:
        state.update(ok=ok, status=status)
    return set_up


@pytest.mark.parametrize("status", sorted(REFUSALS))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_refusal_exits_1_and_a_503_exits_3_for_every_command(server, command, status):
    args, ok = COMMANDS[command]
    server(ok, status)
    done = CliRunner().invoke(app, args)
    assert done.exit_code == REFUSALS[status], done.output
    assert f"refused with {status}" in done.output


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_server_that_cannot_be_reached_exits_4_for_every_command(server, command):
    args, _ = COMMANDS[command]
    server({}, None)
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 4, done.output
    assert "lab.test:8080" in done.output


@pytest.mark.parametrize("args, ok, text", [
    (["nodes", "add", "n1"], {"GET /nodes/": [NODE]}, "already in the inventory"),
    (["nodes", "remove", "n2"], {"GET /nodes/": [NODE]}, "not in the inventory"),
    (["nodes", "remove", "n1"], {"GET /nodes/": [{**NODE, "locked": True}]}, "unlock them first"),
])
def test_nodes_add_and_remove_refuse_what_the_inventory_forbids_with_exit_1(server, args, ok, text):
    server(ok, 500)
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 1 and text in done.output


def test_a_bad_node_name_is_still_a_usage_error_for_nodes_add(server):
    server({"GET /nodes/": []}, 500)
    assert CliRunner().invoke(app, ["nodes", "add", "ubuntu@n1"]).exit_code == 2
