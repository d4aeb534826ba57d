"""The lab's user commands (lock-many, lock, unlock, list, summary, status) as a lab user runs them.

The lab service is replaced at its HTTP boundary by a small in-process fake (an httpx
MockTransport): the real server cannot be made to answer 503 or drop off on demand.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import io
import json
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from lablease.cli import app
from lablease.client import support as cli_support
from lablease.client import render as cli_support_render
from lablease.client.render import LiveProgress, duration
from lablease.client.lockclient import LockClient, server_sent_events

DOMAIN = "front.example.com"
KEY_BLOB = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519 a host key").decode()
HOST_KEY = f"ssh-ed25519 {KEY_BLOB}"
FINGERPRINT = "SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(KEY_BLOB)).digest()).decode().rstrip("=")
Handler = Callable[[httpx.Request], httpx.Response]


def node(short: str, **fields: Any) -> dict[str, Any]:
    """A node as the lab service answers it (paddles keys plus lablease's)."""
    return {"name": f"{short}.{DOMAIN}", "description": None, "up": True, "machine_type": "cloud", "is_vm": True,
            "vm_host": None, "os_type": "ubuntu", "os_version": "22.04", "arch": "x86_64", "locked": False,
            "locked_since": None, "locked_by": None, "mac_address": None, "ssh_pub_key": None, "state": "idle",
            "cloud_server_id": None, "addresses": [], "last_error": None, "created_at": None, "updated_at": None,
            "provider": None, **fields}


def sse(*events: dict[str, Any]) -> list[bytes]:
    """A text/event-stream body: a keep-alive comment, then each event as the lab service sends it."""
    chunks = [b": keep-alive\n\n"]
    for e in events:
        chunks.append(f"event: progress\ndata: {json.dumps(e)}\n\n".encode())
    return chunks


def progress(name: str, stage: str, status: str, elapsed: float, **extra: Any) -> dict[str, Any]:
    return {"node": f"{name}.{DOMAIN}", "machine_type": "cloud", "stage": stage, "status": status,
            "request": "r", "attempt": 1, "message": "", "elapsed": elapsed, "at": 0.0, "made": {}, **extra}


class FakeLab:
    """The lab service's HTTP boundary: an answer per ``METHOD /path/``, and every request seen."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[httpx.Request] = []

    def on(self, route: str, status: int = 200, body: Any = None) -> None:
        self.routes[route] = lambda request: httpx.Response(status, json=body)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get(f"{request.method} {request.url.path}")
        if route is None:
            return httpx.Response(404, json={"message": "not found"})
        return route(request)

    def sent(self, route: str) -> httpx.Request:
        return next(r for r in self.requests if f"{r.method} {r.url.path}" == route)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """HOME in tmp_path, no LABLEASE_SERVER, and no /etc/teuthology.yaml of this machine."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(cli_support.SERVER_ENV, raising=False)
    monkeypatch.setattr(cli_support, "CONFIG_FILES", ("~/.teuthology.yaml", str(tmp_path / "etc-teuthology.yaml")))
    return tmp_path


@pytest.fixture
def lab(home, monkeypatch) -> FakeLab:
    """A fake lab service behind every client the CLI makes; ~/.teuthology.yaml points at it."""
    (home / ".teuthology.yaml").write_text(yaml.safe_dump({"lock_server": "http://lab.test:8080/",
                                                           "lab_domain": DOMAIN}))
    fake = FakeLab()
    transport = httpx.MockTransport(fake.handle)
    monkeypatch.setattr(cli_support, "new_client", lambda url: LockClient(url, transport=transport))
    return fake


def run(*args: str):
    return CliRunner().invoke(app, list(args))


OWNER = f"{getpass.getuser()}@{socket.gethostname()}"


# --- where the server is ---------------------------------------------------------------------

def test_the_server_and_lab_domain_come_from_teuthology_yaml_in_home(lab):
    lab.on(f"GET /nodes/node1.{DOMAIN}/", body=node("node1"))
    lab.on(f"GET /nodes/node1.{DOMAIN}/events/", body=[])
    done = run("status", "node1")
    assert done.exit_code == 0, done.output
    assert str(lab.requests[0].url) == f"http://lab.test:8080/nodes/node1.{DOMAIN}/"


def test_lablease_server_in_the_environment_wins_over_teuthology_yaml(lab, monkeypatch):
    monkeypatch.setenv("LABLEASE_SERVER", "http://other.test:9/")
    lab.on("GET /nodes/", body=[])
    assert run("list").exit_code == 0
    assert lab.requests[0].url.host == "other.test"


def test_etc_teuthology_yaml_is_read_when_home_has_none(home, monkeypatch):
    (home / "etc-teuthology.yaml").write_text("lock_server: http://etc.test:8080\n")
    seen: list[str] = []
    monkeypatch.setattr(cli_support, "new_client", lambda url: seen.append(url) or LockClient(
        url, transport=httpx.MockTransport(lambda r: httpx.Response(200, json=[]))))
    assert run("list").exit_code == 0
    assert seen == ["http://etc.test:8080"]


def test_without_a_configured_server_it_is_a_usage_error_that_says_how_to_set_one(home):
    done = run("list")
    assert done.exit_code == 2
    assert "--server" in done.stderr and "LABLEASE_SERVER" in done.stderr and "lock_server" in done.stderr


def test_a_broken_teuthology_yaml_is_a_usage_error_naming_the_file(home):
    (home / ".teuthology.yaml").write_text("lock_server: [unclosed\n")
    done = run("list")
    assert done.exit_code == 2 and ".teuthology.yaml" in done.stderr


# --- exit codes ------------------------------------------------------------------------------

def test_lock_many_exits_3_and_names_the_reason_when_the_server_answers_503(lab):
    lab.on("POST /nodes/lock_many/", 503, {"message": "only 1 nodes available"})
    done = run("lock-many", "2", "-m", "cloud")
    assert done.exit_code == 3
    assert "only 1 nodes available" in done.stderr


def test_a_shortage_counts_what_the_type_has_and_says_when_the_request_can_never_be_filled(lab):
    lab.on("POST /nodes/lock_many/", 503, {"message": "only 6 nodes available"})
    lab.on("GET /nodes/machine_types/", body=["cloud"])
    lab.on("GET /nodes/", body=[node(f"cloud00{i}") for i in range(1, 7)])
    done = run("lock-many", "9", "-m", "cloud")
    assert done.exit_code == 3
    assert "cloud has 6 in all: 6 free, 0 locked, 0 down; asking for 9 can never succeed" in done.stderr
    assert "locked, down or being destroyed" not in done.stderr


def test_a_shortage_of_busy_nodes_counts_the_locked_the_destroyed_and_the_down(lab):
    lab.on("POST /nodes/lock_many/", 503, {"message": "only 1 nodes available"})
    lab.on("GET /nodes/machine_types/", body=["cloud"])
    lab.on("GET /nodes/", body=[node("c1"), node("c2", locked=True, state="ready"),
                                node("c3", locked=True, state="destroying"), node("c4", up=False)])
    done = run("lock-many", "2", "-m", "cloud")
    assert done.exit_code == 3
    assert ("cloud has 4 in all: 1 free, 2 locked (1 being destroyed or failed to be), 1 down; "
            "see: lablease list -m 'cloud'") in done.stderr


def test_lock_exits_1_with_the_servers_message_when_the_node_is_locked_already(lab):
    lab.on(f"PUT /nodes/node1.{DOMAIN}/lock/", 403, {"message": "Cannot lock an already-locked node"})
    done = run("lock", "node1")
    assert done.exit_code == 1 and "Cannot lock an already-locked node" in done.stderr


def test_a_server_that_cannot_be_reached_exits_4_and_names_its_address(lab, monkeypatch):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)
    monkeypatch.setattr(cli_support, "new_client",
                        lambda url: LockClient(url, transport=httpx.MockTransport(refuse)))
    done = run("summary")
    assert done.exit_code == 4 and "http://lab.test:8080" in done.stderr


def test_ctrl_c_during_a_lock_exits_130_and_says_how_to_find_what_the_server_may_still_lock(lab):
    def interrupt(request: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt
    lab.routes["POST /nodes/lock_many/"] = interrupt
    done = run("lock-many", "1", "-m", "cloud", "-q", "--owner", "me@here")
    assert done.exit_code == 130 and "lablease list --owner me@here" in done.stderr


def test_a_count_below_one_is_a_usage_error(lab):
    assert run("lock-many", "0", "-m", "cloud").exit_code == 2


# --- lock-many -------------------------------------------------------------------------------

def test_lock_many_json_prints_the_node_list_and_nothing_else_on_stdout(lab):
    nodes = [node("cloud001", locked=True, locked_by=OWNER, state="ready", ssh_pub_key=HOST_KEY)]
    lab.on("POST /nodes/lock_many/", body=nodes)
    done = run("lock-many", "1", "-m", "cloud", "--os-type", "ubuntu", "--arch", "x86_64", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == nodes
    body = json.loads(lab.sent("POST /nodes/lock_many/").content)
    assert body["count"] == 1 and body["machine_type"] == "cloud" and body["locked_by"] == OWNER
    assert body["description"] is None and body["os_type"] == "ubuntu" and body["arch"] == "x86_64"
    assert "os_version" not in body


def test_an_error_with_json_is_a_json_object_with_the_exit_code_on_stdout(lab):
    lab.on("GET /nodes/machine_types/", 200, ["cloud"])  # a shortage would be explained; this is not one
    lab.on("POST /nodes/lock_many/", 503, {"message": "provisioning failed; rolled back"})
    done = run("lock-many", "1", "-m", "cloud", "--json")
    assert done.exit_code == 3
    assert json.loads(done.stdout) == {"error": "provisioning failed; rolled back", "exit_code": 3, "status": 503}


def test_lock_many_without_a_tty_prints_each_progress_event_as_a_line_then_the_nodes(lab):
    streamed = threading.Event()
    events = [progress("cloud001", "create", "start", 0.1), progress("cloud001", "create", "made", 0.2),
              progress("cloud001", "ssh", "retry", 9.0, attempt=2, message="connection refused"),
              progress("cloud001", "ready", "done", 12.5)]

    def stream(request: httpx.Request) -> httpx.Response:
        def body():
            yield from sse(*events)
            streamed.set()
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    def lock_many(request: httpx.Request) -> httpx.Response:
        assert streamed.wait(5), "lock_many was sent before the progress stream was read"
        return httpx.Response(200, json=[node("cloud001", locked=True, locked_by=OWNER, state="ready",
                                              addresses=["10.0.0.5"], ssh_pub_key=HOST_KEY)])
    lab.routes["GET /lab/progress/"] = stream
    lab.routes["POST /nodes/lock_many/"] = lock_many
    done = run("lock-many", "1", "-m", "cloud")
    assert done.exit_code == 0, done.output
    request_id = json.loads(lab.sent("POST /nodes/lock_many/").content)["request_id"]
    assert lab.sent("GET /lab/progress/").url.params["request"] == request_id
    assert f"cloud001.{DOMAIN}: create start (0.1 s)" in done.stderr
    assert f"cloud001.{DOMAIN}: ssh retry (9.0 s) attempt 2: connection refused" in done.stderr
    assert "made" not in done.stderr and "\x1b[" not in done.output  # no live view, no colours
    table = done.stdout
    assert f"cloud001.{DOMAIN}" in table and "10.0.0.5" in table and FINGERPRINT in table
    assert "ubuntu 22.04" in table and f"locked 1 node(s) for {OWNER}" in table


def test_lock_many_returns_when_its_answer_comes_although_the_server_keeps_the_stream_open(lab):
    release = threading.Event()

    def stream(request: httpx.Request) -> httpx.Response:
        def body():
            yield from sse(progress("cloud001", "ready", "done", 1.0))
            release.wait(30)  # a live server never ends the stream by itself
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())
    lab.routes["GET /lab/progress/"] = stream
    lab.on("POST /nodes/lock_many/", body=[node("cloud001", locked=True)])
    started = time.monotonic()
    try:
        done = run("lock-many", "1", "-m", "cloud")
    finally:
        release.set()
    assert done.exit_code == 0 and time.monotonic() - started < 5
    assert f"cloud001.{DOMAIN}: ready done (1.0 s)" in done.stderr


def test_lock_many_goes_on_without_progress_when_the_server_has_no_progress_stream(lab):
    lab.on("POST /nodes/lock_many/", body=[node("cloud001", locked=True)])  # /lab/progress/ answers 404
    done = run("lock-many", "1", "-m", "cloud")
    assert done.exit_code == 0 and f"cloud001.{DOMAIN}" in done.stdout


def test_lock_many_quiet_prints_only_the_node_names(lab):
    lab.on("POST /nodes/lock_many/", body=[node("b"), node("a")])
    done = run("lock-many", "2", "-m", "cloud", "-q")
    assert done.output.splitlines() == [f"b.{DOMAIN}", f"a.{DOMAIN}"]
    assert not any(r.url.path == "/lab/progress/" for r in lab.requests)


# --- lock and unlock -------------------------------------------------------------------------

def test_lock_completes_a_short_name_drops_a_user_and_shows_the_full_record(lab):
    name = f"node1.{DOMAIN}"
    lab.on(f"PUT /nodes/{name}/lock/", body={"name": name, "locked": True, "locked_by": "me@x",
                                             "machine_type": "cloud", "is_vm": True})
    lab.on(f"GET /nodes/{name}/", body=node("node1", locked=True, addresses=["10.0.0.7"]))
    done = run("lock", "ubuntu@node1", "--desc", "job 7", "--owner", "me@x", "--os-version", "24.04")
    assert done.exit_code == 0, done.output
    body = json.loads(lab.sent(f"PUT /nodes/{name}/lock/").content)
    assert body["locked"] is True and body["locked_by"] == "me@x" and body["description"] == "job 7"
    assert body["os_version"] == "24.04" and body["request_id"]
    assert "10.0.0.7" in done.stdout


def test_unlock_posts_unlock_many_with_full_names_owner_and_description(lab):
    names = [f"n1.{DOMAIN}", f"n2.{DOMAIN}"]
    lab.on("POST /nodes/unlock_many/", body=[{"name": n, "locked": False} for n in names])
    done = run("unlock", "n1", f"n2.{DOMAIN}", "--owner", "me@x", "--desc", "job 7")
    assert done.exit_code == 0, done.output
    assert json.loads(lab.sent("POST /nodes/unlock_many/").content) == {
        "names": names, "locked_by": "me@x", "description": "job 7"}
    assert f"unlocked 2 node(s): {names[0]}, {names[1]}" in done.stdout


def test_unlock_of_an_unknown_node_exits_1(lab):
    lab.on("POST /nodes/unlock_many/", 400, {"message": "Could not find all nodes!"})
    done = run("unlock", "nope")
    assert done.exit_code == 1 and "Could not find all nodes!" in done.stderr


# --- list, summary, status -------------------------------------------------------------------

def _ago(**delta: float) -> str:
    return (datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(**delta)).strftime("%Y-%m-%d %H:%M:%S.%f")


def test_list_shows_how_long_each_node_is_locked_and_filters_by_state_on_the_client(lab):
    lab.on("GET /nodes/", body=[
        node("a", locked=True, locked_by="me@x", state="ready", locked_since=_ago(hours=2, minutes=5, seconds=3),
             description="job 7", addresses=["10.0.0.5"]),
        node("b", locked=True, locked_by="me@x", state="provisioning", locked_since=_ago(seconds=30))])
    done = run("list", "-m", "cloud", "--owner", "me@x", "--locked", "--state", "ready")
    assert done.exit_code == 0, done.output
    assert dict(lab.requests[0].url.params) == {"machine_type": "cloud", "locked_by": "me@x", "locked": "1"}
    row = next(line for line in done.stdout.splitlines() if f"a.{DOMAIN}" in line)
    for cell in ("cloud", "ready", "me@x", "2 h 5 min", "job 7", "ubuntu 22.04", "10.0.0.5"):
        assert cell in row
    assert f"b.{DOMAIN}" not in done.stdout


def test_list_names_the_provider_that_made_a_node_of_a_multi_provider_type(lab):
    lab.on("GET /nodes/", body=[
        node("a", machine_type="mixed", provider="aws", state="ready", locked=True, addresses=["127.0.0.5"]),
        node("b", machine_type="mixed", state="idle"),
        node("c", machine_type="ovh", provider="ovh", state="ready", locked=True)])
    done = run("list")
    assert done.exit_code == 0, done.output
    rows = {line.split()[0].split(".")[0]: line for line in done.stdout.splitlines() if f".{DOMAIN}" in line}
    assert "mixed via aws" in rows["a"]
    assert "mixed" in rows["b"] and "via" not in rows["b"]
    assert "ovh" in rows["c"] and "via" not in rows["c"]


def test_list_json_is_the_servers_node_list(lab):
    nodes = [node("a"), node("b", state="ready")]
    lab.on("GET /nodes/", body=nodes)
    done = run("list", "--json", "--unlocked")
    assert json.loads(done.stdout) == nodes and lab.requests[0].url.params["locked"] == "0"


def test_summary_counts_nodes_by_machine_type_and_state(lab):
    lab.on("GET /nodes/", body=[node("a", state="ready", locked=True), node("b", state="ready", locked=True),
                                node("c"), node("d", machine_type="smithi", state=None, up=False)])
    done = run("summary", "--json")
    assert json.loads(done.stdout) == [
        {"machine_type": "cloud", "state": "idle", "count": 1, "up": 1, "locked": 0},
        {"machine_type": "cloud", "state": "ready", "count": 2, "up": 2, "locked": 2},
        {"machine_type": "smithi", "state": "(none)", "count": 1, "up": 0, "locked": 0}]
    lines = [line.split() for line in run("summary").stdout.splitlines()]
    assert ["cloud", "ready", "2", "2", "2"] in lines and ["total", "4", "3", "2"] in lines


def test_status_shows_the_record_and_its_events_with_old_and_new_values_and_errors(lab):
    name = f"node1.{DOMAIN}"
    lab.on(f"GET /nodes/{name}/", body=node("node1", state="ready", locked=True, locked_by="me@x",
                                            ssh_pub_key=HOST_KEY))
    lab.on(f"GET /nodes/{name}/events/", body=[
        {"id": 1, "node": name, "action": "state", "who": "me@x", "at": "2026-11-25 12:58:02.472657",
         "old": {"state": "idle"}, "new": {"state": "provisioning"}},
        {"id": 2, "node": name, "action": "stage", "who": None, "at": "2026-11-25 12:58:09.000001",
         "old": None, "new": {"stage": "ssh", "status": "retry", "attempt": 2, "error": "connection refused"}}])
    done = run("status", "node1")
    assert done.exit_code == 0, done.output
    out = done.stdout
    assert "me@x" in out and "ready" in out and FINGERPRINT in out
    assert "2026-11-25 12:58:02" in out and "state: idle → provisioning" in out
    assert "stage=ssh status=retry attempt=2" in out and "connection refused" in out


def test_status_json_has_the_node_and_its_events_and_a_paddles_server_gives_no_events(lab):
    lab.on(f"GET /nodes/node1.{DOMAIN}/", body=node("node1"))  # events: 404, as paddles answers
    done = run("status", "node1", "--json")
    assert done.exit_code == 0 and json.loads(done.stdout) == {"node": node("node1"), "events": []}


def test_status_of_an_unknown_node_exits_1(lab):
    lab.on(f"GET /nodes/ghost.{DOMAIN}/", 404, {"message": "node not found"})
    done = run("status", "ghost")
    assert done.exit_code == 1 and "node not found" in done.stderr


# --- the pieces ------------------------------------------------------------------------------

def test_the_event_stream_parser_skips_comments_other_events_and_broken_json():
    lines = [": keep-alive", "", "event: progress", 'data: {"a":', 'data: 1}', "", "event: other", "data: {}", "",
             "event: progress", "data: not json", "", "event: progress", "data: {\"b\": 2}", ""]
    assert list(server_sent_events(lines)) == [{"a": 1}, {"b": 2}]


@pytest.mark.parametrize("seconds, text", [(42, "42 s"), (300, "5 min"), (7500, "2 h 5 min"),
                                           (3 * 86400 + 7200, "3 d 2 h")])
def test_durations_read_at_a_glance(seconds, text):
    assert duration(seconds) == text


def test_the_live_view_shows_a_line_per_node_with_its_stage_and_seconds():
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    view = LiveProgress(console, "locking 2 cloud node(s)")
    for event in (progress("b", "create", "start", 3.0), progress("a", "ssh", "retry", 8.0, attempt=2),
                  progress("a", "ready", "done", 12.0)):
        view(event)
    console.print(view)
    lines = console.file.getvalue().splitlines()
    assert "locking 2 cloud node(s)" in lines[0]
    assert f"a.{DOMAIN}" in lines[1] and "ready done" in lines[1] and "12 s" in lines[1]
    assert f"b.{DOMAIN}" in lines[2] and "create start" in lines[2] and "3 s" in lines[2]


def test_unlock_help_says_owner_is_who_unlocks_and_must_own_the_lock(home):
    done = run("unlock", "--help")
    text = " ".join(done.output.replace("│", " ").split())
    assert "Who unlocks (must be the lock's owner" in text and "Who locks" not in text
    assert "Who locks" in " ".join(run("lock-many", "--help").output.replace("│", " ").split())


def test_plain_progress_ends_each_stage_with_a_done_line_and_its_time_and_labels_the_volume_steps():
    out = io.StringIO()
    show = cli_support_render.PlainProgress(Console(file=out, width=200))
    for event in [progress("c1", "image", "start", 0.0), progress("c1", "create", "start", 0.25),
                  progress("c1", "create", "made", 0.5),
                  progress("c1", "volume", "start", 0.75, message="create 1 x 10 GB"),
                  progress("c1", "boot", "start", 1.5), progress("c1", "volume", "start", 4.0, message="attach 1"),
                  progress("c1", "ssh", "start", 4.5), progress("c1", "ssh", "retry", 6.0, attempt=1),
                  progress("c1", "image", "start", 6.5, attempt=2), progress("c1", "ready", "done", 9.0, attempt=2)]:
        show(event)
    lines = out.getvalue().splitlines()
    done = [line.split(": ", 1)[1] for line in lines if " done in " in line]
    assert done == ["image done in 0.2 s", "create done in 0.5 s", "volume (create 1 x 10 GB) done in 0.8 s",
                    "boot done in 2.5 s", "volume (attach 1) done in 0.5 s", "image done in 2.5 s"]
    assert f"c1.{DOMAIN}: volume start (0.8 s): create 1 x 10 GB" in lines  # a start line still says it began
    assert lines[-1] == f"c1.{DOMAIN}: ready done (9.0 s) attempt 2"


def test_the_live_view_of_a_ready_node_lists_the_time_of_each_stage():
    console = Console(file=io.StringIO(), force_terminal=True, width=160)
    view = LiveProgress(console, "locking 1 cloud node(s)")
    for event in (progress("a", "create", "start", 1.0), progress("a", "boot", "start", 3.0),
                  progress("a", "ssh", "start", 7.0), progress("a", "ready", "done", 8.0)):
        view(event)
    console.print(view)
    assert "create 2.0 s, boot 4.0 s, ssh 1.0 s" in console.file.getvalue()


def test_lock_many_targets_prints_teuthologys_targets_block_and_nothing_else_on_stdout(lab):
    nodes = [node(n, locked=True, locked_by=OWNER, state="ready", ssh_pub_key=f"{HOST_KEY} {n}")
             for n in ("cloud002", "cloud001")]
    lab.on("POST /nodes/lock_many/", body=nodes)
    done = run("lock-many", "2", "-m", "cloud", "--targets")
    assert done.exit_code == 0, done.output
    assert yaml.safe_load(done.stdout) == {"targets": {f"ubuntu@cloud001.{DOMAIN}": f"{HOST_KEY} cloud001",
                                                       f"ubuntu@cloud002.{DOMAIN}": f"{HOST_KEY} cloud002"}}
    assert done.stdout.splitlines()[1] == f"  ubuntu@cloud001.{DOMAIN}: {HOST_KEY} cloud001"  # one line a node
    bare = run("lock-many", "2", "-m", "cloud", "--targets", "--user", "", "-q")
    assert list(yaml.safe_load(bare.stdout)["targets"]) == [f"cloud001.{DOMAIN}", f"cloud002.{DOMAIN}"]


def test_lock_many_targets_with_json_is_a_usage_error(lab):
    assert run("lock-many", "1", "-m", "cloud", "--targets", "--json").exit_code == 2
