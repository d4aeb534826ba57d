"""The ready loop that runs on a node: it stops by itself, and the command cannot break out of it."""

from __future__ import annotations

import subprocess
import time

import pytest

from lablease.provision.readiness import SSHProbe


def run_loop(command: str, timeout: float, shell: str = "sh") -> tuple[int, float]:
    script = SSHProbe(user="u", key=None, command=command, remote_interval=0.05).remote_loop(timeout)
    start = time.monotonic()
    done = subprocess.run([shell, "-c", script], capture_output=True, timeout=30)
    return done.returncode, time.monotonic() - start


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_ready_loop_exits_0_as_soon_as_the_command_succeeds(shell, tmp_path):
    marker = tmp_path / "ready"
    marker.touch()
    status, seconds = run_loop(f"test -e {marker}", timeout=30, shell=shell)
    assert status == 0 and seconds < 5


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_ready_loop_gives_up_by_itself_with_124_when_the_node_never_gets_ready(shell, tmp_path):
    status, seconds = run_loop(f"test -e {tmp_path / 'never'}", timeout=1, shell=shell)
    assert status == 124
    assert seconds < 10  # bounded by its own deadline, not by whoever opened the session


def test_ready_command_with_a_comment_or_separator_cannot_end_the_loop_early(tmp_path):
    status, _ = run_loop(f"test -e {tmp_path / 'never'} # ; exit 0", timeout=1)
    assert status == 124
    status, _ = run_loop(f"false; test -e {tmp_path / 'never'}", timeout=1)
    assert status == 124
