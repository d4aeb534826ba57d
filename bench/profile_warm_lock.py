"""Profile: where a lock answered from the warm pool spends its time (issue 11: a missed goal gets a profile).

Sets up as bench_warm_pool.py (devcloud with a real sshd per server, BIND, the DNS service, the lab service
with ``min_ready`` 5), then:

1. times, from this process against one warm node, the pieces of an SSH check: TCP connect, key exchange
   only, login (exchange + public-key auth), a full readiness wait (login + the ready command), and the
   warm pool's check (``SSHProbe.host_key_matches``);
2. locks and unlocks one warm node ``--locks`` times over HTTP, with ``--spy`` under ``py-spy record``
   of the ``lablease serve`` process (raw folded stacks, idle threads included: the check mostly waits).

    .venv/bin/python bench/profile_warm_lock.py [--reps 20] [--locks 20] [--spy /tmp/warm-lock.txt]

Read the raw output by summing the samples of the stacks that pass through ``WarmPool.check``.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import httpx
import paramiko

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_warm_pool import _lock, _wait_warm, start_lab  # noqa: E402

from lablease.provision.devlab import DEVCLOUD_READY_COMMAND  # noqa: E402
from lablease.provision.readiness import SSHProbe, load_private_key  # noqa: E402

POOL = 5


def _summary(seconds: list[float]) -> str:
    return (f"p50 {statistics.median(seconds) * 1000:6.1f} ms  min {min(seconds) * 1000:6.1f}  "
            f"max {max(seconds) * 1000:6.1f}")


def _timed(run: Callable[[], object], reps: int) -> list[float]:
    run()  # a first one outside the figures (imports, first connection)
    out = []
    for _ in range(reps):
        started = time.perf_counter()
        run()
        out.append(time.perf_counter() - started)
    return out


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20, help="timings of each SSH piece")
    parser.add_argument("--locks", type=int, default=20, help="warm locks of one node over HTTP")
    parser.add_argument("--spy", help="py-spy record the lab service into this file while it answers the locks")
    args = parser.parse_args()
    cloud_config = {"boot_delay": 1.0, "volume_delay": 0.2,
                    "ssh": {"enabled": True, "delay": 0.5, "runcmd_delay": 0.2},
                    "quotas": {"instances": 100, "volumes": 100, "cores": 1000, "ram": 10_000_000}}
    with tempfile.TemporaryDirectory(prefix="lablease-profile-") as tmp, contextlib.ExitStack() as stop:
        cloud, server, key_file = start_lab(Path(tmp), stop, cloud_config, POOL)
        http = httpx.Client(base_url=server.url, timeout=600)
        _wait_warm(http, POOL)
        node = next(n for n in http.get("/nodes/", params={"machine_type": "warm"}).json() if n["state"] == "ready")
        host, port, pinned = node["addresses"][0], cloud.ssh_port, node["ssh_pub_key"]
        probe = SSHProbe(user=getpass.getuser(), key=load_private_key(key_file), port=port,
                         command=DEVCLOUD_READY_COMMAND)

        def tcp() -> None:
            socket.create_connection((host, port), timeout=5).close()

        def key_exchange() -> None:
            transport = paramiko.Transport(socket.create_connection((host, port), timeout=5))
            try:
                transport.start_client(timeout=5)
                transport.get_remote_server_key()
            finally:
                transport.close()

        def login() -> None:
            client, _ = probe._connect(host, 5.0, probe._port_open(host, 5.0))
            client.close()

        def check() -> None:
            assert probe.host_key_matches(host, pinned, 5.0)

        print(f"node {node['name']} at {host}:{port}; {_uptime()}")
        for name, run in (("tcp connect", tcp), ("key exchange only", key_exchange),
                          ("login (exchange + auth)", login),
                          ("readiness wait (login + command)", lambda: probe.wait(host, 5.0, "warm")),
                          ("host_key_matches (the check)", check)):
            print(f"{name:<34} {_summary(_timed(run, args.reps))}")

        spy = None
        if args.spy:
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                                    str(server.process.proc.pid), "--rate", "250", "--format", "raw", "--idle",
                                    "--threads", "-o", args.spy], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.5)  # py-spy attaches
        seconds = []
        for _ in range(args.locks):
            _wait_warm(http, POOL)
            took, names = _lock(http, "warm", 1)
            seconds.append(took)
            http.post("/nodes/unlock_many/", json={"names": names, "locked_by": "bench"}).raise_for_status()
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        print(f"{'warm lock of 1 over HTTP':<34} {_summary(seconds)}")
        print(_uptime())


if __name__ == "__main__":
    main()
