"""`make demo` runs `python -m lablease.demo`: the main job end to end, and every server stopped afterwards."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

NODES = ["devcloud001", "devcloud002", "devcloud003"]


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120)


def _assert_servers_stopped(out: str) -> None:
    """The demo prints where its servers listen; after it exits none of those ports may answer."""
    ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", out.split("\n", 2)[1])]
    assert len(ports) == 4, out
    for port in ports:
        with socket.socket() as sock:
            sock.settimeout(1)
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers after the demo"


def test_demo_locks_provisions_resolves_logs_in_destroys_and_leaves_nothing_behind():
    result = _run(["-m", "lablease.demo"])
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert f"lock_many locked {', '.join(n + '.lab.example' for n in NODES)}" in out
    for node in NODES:
        # the live view of `lablease lock-many` (on stderr, as progress goes)
        assert re.search(rf"{node}\.lab\.example: ready done", result.stderr), result.stderr
        # each stage's end with its time, the volume's two steps named
        for stage in ("create", r"volume \(create 1 x \d+ GB\)", "boot", r"volume \(attach 1\)", "ssh"):
            assert re.search(rf"{node}\.lab\.example: {stage} done in \d+\.\d s", result.stderr), result.stderr
        # One table row per node: its address, the same address answered by BIND, state, volume.
        row = re.search(rf"│ {node}\s+│ (127\.[\d.]+)\s+│ (127\.[\d.]+)\s+│ ready\s+│ {node}_0 in-use", out)
        assert row and row.group(1) == row.group(2), out
        assert re.search(rf"  \w+@{node}\.lab\.example: ssh-ed25519 \S+", out), out  # teuthology targets
    assert "3 nodes ready" in out and "all 3 nodes resolved in DNS to their own address" in out
    assert re.search(r"connection to 127\.[\d.]+ port \d+ \(the node's own address\)", out), out
    assert "readiness marker /.teuth_provisioned present" in out
    assert "nothing left behind: devcloud holds 0 servers and 0 volumes, BIND has no record" in out
    assert re.search(r"POST /compute/v2\.1/servers\s+│\s+3 │\s+1\.0 │", out), out
    assert "demo done" in out
    _assert_servers_stopped(out)


def test_demo_exits_1_naming_the_failure_and_stops_every_server_when_the_cloud_cannot_boot_nodes():
    faults = {"server_error": {"probability": 1.0, "message": "No valid host was found."}}
    code = (f"from lablease.demo import main; raise SystemExit(main({{'boot_delay': 0.3, "
            f"'ssh': {{'enabled': True, 'delay': 0.1}}, 'faults': {faults!r}}}))")
    result = _run(["-c", code])
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "demo failed (DemoError): provisioning failed" in out
    assert "No valid host was found. (after 3 attempts)" in out + result.stderr
    assert "all servers stopped" in out
    assert "demo done" not in out
    _assert_servers_stopped(out)
