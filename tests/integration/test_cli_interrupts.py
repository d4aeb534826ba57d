"""Ctrl-C and SIGTERM on the real `lablease provision create` process, against devcloud, the DNS service and BIND.

The nodes' sshd never comes up within the test (devcloud starts it 300 s after boot), so the create
is in its SSH wait, with a server, a volume and a DNS record made, when the signal arrives. It must
exit 130/143 within seconds (not after ready_timeout) and leave nothing in devcloud or in BIND.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import yaml

from lablease.provision.devlab import devcloud_lab_config, generate_lab_key

pytestmark = pytest.mark.integration

CLOUD = {"boot_delay": 0.3, "volume_delay": 0.1, "ssh": {"enabled": True, "delay": 300, "runcmd_delay": 0.1}}
READY_TIMEOUT = 120  # what an interrupted create must not wait out
QUICK = 10.0         # seconds from the signal to the exit, rollback included


@pytest.fixture
def start_create(devcloud_factory, dns_service, tmp_path):
    """Start `lablease provision create NAMES` as its own process; yields (start, cloud, bind)."""
    cloud = devcloud_factory(CLOUD)
    key = generate_lab_key(tmp_path / "lab_key")
    config = devcloud_lab_config(cloud, key, nsupdate_url=dns_service.update_url, ready_timeout=READY_TIMEOUT,
                                 boot_timeout=READY_TIMEOUT, max_parallel=1)
    path = tmp_path / "teuthology.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)))
    procs: list[subprocess.Popen] = []

    def start(*names: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lablease", "provision", "create", *names, "-m", "dev", "-c", str(path),
             "--hints", '{"volumes": {"count": 1, "size": 1}}'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
        procs.append(proc)
        return proc

    yield start, cloud, dns_service.bind
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _in_ssh_wait(proc: subprocess.Popen, bind, name: str, timeout: float = 30.0) -> None:
    """Return once ``name`` is in BIND: the DNS record comes right before the SSH wait."""
    end = time.monotonic() + timeout
    while not bind.addresses(name):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "the create never reached its SSH wait"
        time.sleep(0.1)
    time.sleep(0.3)  # well inside the wait


def _signal_and_wait(proc: subprocess.Popen, *signals: signal.Signals, gap: float = 0.05) -> tuple[float, str]:
    """Send ``signals`` ``gap`` apart; the seconds from the first to the exit, and stderr."""
    start = time.monotonic()
    for i, sig in enumerate(signals):
        if i:
            time.sleep(gap)
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=READY_TIMEOUT * 3)
    return time.monotonic() - start, err


def _nothing_left(cloud, bind, names) -> None:
    res = cloud.resources()
    assert res["servers"] == [] and res["volumes"] == [], res
    assert {n: bind.addresses(n) for n in names} == {n: set() for n in names}


def test_ctrl_c_during_the_ssh_wait_rolls_back_at_once_and_exits_130(start_create):
    start, cloud, bind = start_create
    proc = start("node1")
    _in_ssh_wait(proc, bind, "node1")
    seconds, err = _signal_and_wait(proc, signal.SIGINT)
    assert proc.returncode == 130, err[-3000:]
    assert seconds < QUICK and "interrupted: rolling back, please wait" in err
    _nothing_left(cloud, bind, ["node1"])
    assert cloud.request_counts()["POST /compute/v2.1/servers"] == 1  # no second attempt


def test_a_second_ctrl_c_during_the_rollback_is_refused_and_nothing_leaks(start_create):
    start, cloud, bind = start_create
    proc = start("node1")
    _in_ssh_wait(proc, bind, "node1")
    seconds, err = _signal_and_wait(proc, signal.SIGINT, signal.SIGINT)
    assert proc.returncode == 130, err[-3000:]
    assert seconds < QUICK and "still rolling back, please wait" in err
    _nothing_left(cloud, bind, ["node1"])


def test_sigterm_rolls_back_like_ctrl_c_starts_no_other_node_and_exits_143(start_create):
    start, cloud, bind = start_create
    proc = start("node1", "node2")  # max_parallel 1: node2 waits for node1
    _in_ssh_wait(proc, bind, "node1")
    seconds, err = _signal_and_wait(proc, signal.SIGTERM)
    assert proc.returncode == 143, err[-3000:]
    assert seconds < QUICK
    _nothing_left(cloud, bind, ["node1", "node2"])
    assert cloud.request_counts()["POST /compute/v2.1/servers"] == 1
