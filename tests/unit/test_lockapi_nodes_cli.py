"""`lablease nodes add` undoes a partial add, and says plainly what it could not undo.

The lock server is replaced by a client stub here (the narrow boundary): a server that accepts
some creates and then refuses deletes cannot be arranged with the real one.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lablease.cli import app
from lablease.client import nodes as nodes_cli
from lablease.client.lockclient import LockClientError


class StubClient:
    def __init__(self, fail_create: str | None = None, fail_delete: set[str] = frozenset(),
                 interrupt_at: str | None = None):
        self.fail_create, self.fail_delete, self.interrupt_at = fail_create, set(fail_delete), interrupt_at
        self.existing: list[str] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def list(self, **_):
        return [{"name": n, "locked": False} for n in self.existing]

    def create(self, name, **_):
        if name == self.interrupt_at:
            raise KeyboardInterrupt
        if name == self.fail_create:
            raise LockClientError(f"POST /nodes/: 400 refused {name}", status=400)
        self.existing.append(name)

    def delete(self, name):
        if name in self.fail_delete:
            raise LockClientError(f"DELETE /nodes/{name}/: 503 try later", status=503)
        self.existing.remove(name)


def _add(monkeypatch, stub: StubClient, *names: str):
    monkeypatch.setattr(nodes_cli, "admin_client", lambda *_: (stub, None))
    return CliRunner().invoke(app, ["nodes", "add", *names])


def test_nodes_add_removes_what_it_created_when_a_later_create_fails(monkeypatch):
    stub = StubClient(fail_create="n3")
    done = _add(monkeypatch, stub, "n1", "n2", "n3")
    assert done.exit_code == 1 and "removed the 2 node(s)" in done.output  # the server refused: 1
    assert stub.existing == []


def test_nodes_add_names_the_nodes_it_could_not_remove_instead_of_claiming_it_removed_them(monkeypatch):
    stub = StubClient(fail_create="n3", fail_delete={"n2"})
    done = _add(monkeypatch, stub, "n1", "n2", "n3")
    assert done.exit_code == 1
    assert "remove them by hand: n2" in done.output and "removed the 2" not in done.output
    assert stub.existing == ["n2"]


@pytest.mark.parametrize("at", ["n2", "n3"])
def test_nodes_add_interrupted_midway_removes_what_it_created(monkeypatch, at):
    stub = StubClient(interrupt_at=at)
    done = _add(monkeypatch, stub, "n1", "n2", "n3")
    assert done.exit_code == 130 and "interrupted" in done.output
    assert stub.existing == []


def test_nodes_remove_failing_midway_says_which_nodes_are_gone_and_which_are_not(monkeypatch):
    stub = StubClient(fail_delete={"n2"})
    stub.existing = ["n1", "n2", "n3"]
    monkeypatch.setattr(nodes_cli, "admin_client", lambda *_: (stub, None))
    done = CliRunner().invoke(app, ["nodes", "remove", "n1", "n2", "n3"])
    assert done.exit_code == 3  # the server's 503
    assert "removed before it: n1" in done.output and "not removed: n2, n3" in done.output
    assert stub.existing == ["n2", "n3"]


@pytest.mark.parametrize("command", ["add", "remove"])
def test_nodes_add_and_remove_refuse_a_name_with_a_user_as_no_inventory_name_has_one(monkeypatch, command):
    stub = StubClient()
    stub.existing = ["node1"]
    monkeypatch.setattr(nodes_cli, "admin_client", lambda *_: (stub, None))
    done = CliRunner().invoke(app, ["nodes", command, "node2", "ubuntu@node1"])
    assert done.exit_code == 2 and "node names carry no user: give node1, not ubuntu@node1" in done.output
    assert stub.existing == ["node1"]
