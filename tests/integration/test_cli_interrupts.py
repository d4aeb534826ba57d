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
from pathlib import Path

import pytest
import yaml

from lablease.provision.devlab import devcloud_lab_config, generate_lab_key
from lablease.testing.waiting import wait_until

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
        # Progress goes to stderr as it happens ("node1: ssh start"): into a file the test reads while it runs.
        with open(tmp_path / f"stderr-{len(procs)}.log", "w+") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "lablease", "provision", "create", *names, "-m", "dev", "-c", str(path),
                 "--hints", '{"volumes": {"count": 1, "size": 1}}'],
                stdout=subprocess.PIPE, stderr=err, text=True,
                env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
        proc.stderr_path = Path(err.name)  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    yield start, cloud, dns_service.bind
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _in_ssh_wait(proc: subprocess.Popen, bind, name: str, timeout: float = 30.0) -> None:
    """Return once the create says ``name`` is in its SSH wait, with its DNS record in BIND."""
    def said_so() -> bool:
        assert proc.poll() is None, _stderr(proc)[-3000:]
        return f"{name}: ssh start" in _stderr(proc)

    wait_until(said_so, what=f"`lablease provision create` to start the SSH wait of {name}", timeout=timeout)
    assert bind.addresses(name), "the DNS record comes before the SSH wait"


def _stderr(proc: subprocess.Popen) -> str:
    return proc.stderr_path.read_text()  # type: ignore[attr-defined]


def _signal_and_wait(proc: subprocess.Popen, *signals: signal.Signals) -> tuple[float, str]:
    """Send ``signals``, each once the create has shown it took the one before; the seconds from the first to the
    exit, and stderr."""
    start = time.monotonic()
    for i, sig in enumerate(signals):
        if i:  # the rollback has begun: only then is a second signal one "during the rollback"
            wait_until(lambda: "interrupted: rolling back" in _stderr(proc),
                       what="the create to say it is rolling back", timeout=QUICK, interval=0.01)
        proc.send_signal(sig)
    proc.communicate(timeout=READY_TIMEOUT * 3)
    return time.monotonic() - start, _stderr(proc)


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
