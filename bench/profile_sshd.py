"""What one devcloud sshd costs in CPU: starting it, a bare TCP connect, and a readiness login.

py-spy sees only Python; the per-server sshd (C) was the largest CPU group of the 200-node run.
This starts sshd exactly as devcloud does (``SshdManager``), then measures the CPU of sshd and its
children (sessions, AuthorizedKeysCommand, the shell) for each kind of work, many times over, so a
change to devcloud's sshd settings or to the engine's probe shows up as milliseconds per node.

    .venv/bin/python bench/profile_sshd.py [--servers 20] [--logins 20]
"""

from __future__ import annotations

import argparse
import getpass
import os
import resource
import socket
import statistics
import tempfile
import time
from pathlib import Path

import proc_usage

from lablease.devcloud.sshd import SshdManager
from lablease.provision.devlab import DEVCLOUD_READY_COMMAND, generate_lab_key
from lablease.provision.readiness import SSHProbe, load_private_key, public_key_line


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _wait_port(address: str, port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((address, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.01)
    raise TimeoutError(f"{address}:{port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=20, help="sshd processes to start and stop")
    parser.add_argument("--logins", type=int, default=20, help="readiness logins (and bare connects) to one sshd")
    parser.add_argument("--port", type=int, default=2299)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="profile-sshd-"))
    key = load_private_key(generate_lab_key(work / "lab_key"))
    manager = SshdManager("/usr/sbin/sshd", args.port)
    users = [getpass.getuser()]
    root = work / "root"
    (root).mkdir()
    (root / ".teuth_provisioned").touch()

    # 1. start + stop: everything a server's sshd costs before anyone connects
    before_children, before_self = _children_cpu(), _self_cpu()
    for i in range(args.servers):
        address = f"127.77.0.{i + 2}"
        manager.start(f"s{i}", address, work / f"s{i}", [public_key_line(key)], users, root)
        _wait_port(address, args.port)  # sshd is up (this connect costs one sshd child too; subtracted below)
    started_self = _self_cpu()
    manager.stop_all()
    start_children = (_children_cpu() - before_children) / args.servers
    start_self = (started_self - before_self) / args.servers
    stop_self = (_self_cpu() - started_self) / args.servers

    manager.start("probe", "127.77.1.2", work / "probe", [public_key_line(key)], users, root)
    _wait_port("127.77.1.2", args.port)
    pid = manager._procs["probe"].pid
    probe = SSHProbe(user=users[0], key=key, port=args.port, command=DEVCLOUD_READY_COMMAND)

    def sshd_cpu() -> float:
        return proc_usage.group_cpu({"sshd": pid})["sshd"]

    # 2. bare TCP connects (what a port probe costs the node)
    cpu = sshd_cpu()
    for _ in range(args.logins):
        socket.create_connection(("127.77.1.2", args.port), timeout=5).close()
    time.sleep(0.5)  # the children see EOF and exit
    connect_cost = (sshd_cpu() - cpu) / args.logins

    # 3. readiness logins, as the engine makes them (marker already there: one loop iteration)
    cpu, me, walls = sshd_cpu(), _self_cpu(), []
    for _ in range(args.logins):
        t = time.perf_counter()
        probe.wait("127.77.1.2", timeout=10)
        walls.append(time.perf_counter() - t)
    time.sleep(0.5)
    login_cost = (sshd_cpu() - cpu) / args.logins
    client_cost = (_self_cpu() - me) / args.logins
    manager.stop_all()

    print(f"per sshd start+stop: children (sshd, ssh-keygen) {start_children * 1000:.1f} ms, "
          f"devcloud side: start {start_self * 1000:.1f} ms (key, files, spawn), stop {stop_self * 1000:.1f} ms "
          f"(kill, wait, session scan)  [includes one bare connect]")
    print(f"per bare TCP connect: sshd {connect_cost * 1000:.1f} ms")
    print(f"per readiness wait (port probe + login + ready loop): sshd {login_cost * 1000:.1f} ms, "
          f"client (paramiko) {client_cost * 1000:.1f} ms, wall median {statistics.median(walls) * 1000:.0f} ms")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
