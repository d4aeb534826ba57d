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


def test_an_encrypted_lab_key_loads_with_its_passphrase(tmp_path):
    import paramiko
    from lablease.provision.readiness import load_private_key
    key = paramiko.ECDSAKey.generate()
    key.write_private_key_file(str(tmp_path / "k"), password="s3cret")
    assert load_private_key(tmp_path / "k", "s3cret").get_base64() == key.get_base64()


def test_the_dns_client_never_shows_a_password_of_its_url():
    from lablease.dns.client import DNSClient, DNSClientError
    client = DNSClient("http://user:hunter2@127.0.0.1:9/update", retries=1, timeout=0.5)
    try:
        client.update("node1", ["10.0.0.1"])
    except DNSClientError as exc:
        assert "hunter2" not in str(exc) and "***" in str(exc)
    else:
        raise AssertionError("nothing listens on port 9")
    assert "hunter2" not in repr(client)
    client.close()
