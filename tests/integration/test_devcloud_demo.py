"""`make demo` runs `python -m lablease.demo`: it must finish cleanly and say what it did."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_creates_shows_and_deletes_a_node_with_a_volume_and_exits_0():
    result = subprocess.run([sys.executable, "-m", "lablease.demo"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for expected in ("created node demo-node-001", "node is running at 127.", "attached as /dev/vdb",
                     "destroyed the node", "nothing left behind", "demo done"):
        assert expected in out
