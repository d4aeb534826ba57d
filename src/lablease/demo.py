"""`make demo`: lablease's main job end to end on one machine, with the real parts on loopback.

A lab admin adds three cloud nodes to the lab service's inventory; a user locks them with
`lablease lock-many` (the lab service creates them in devcloud through libcloud in parallel:
server, volume, DNS name in BIND, SSH readiness) and sees each node's stage live; the nodes are
shown as a table and as teuthology `targets:`; the demo logs in to one over SSH with the host key
the service captured; the user unlocks them (the service destroys everything) and the demo shows
that nothing is left in the cloud or in DNS. The servers are started by `demo_stack`.
"""

from __future__ import annotations

import base64
import getpass
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import paramiko
from rich.console import Console
from rich.table import Table

from lablease.demo_stack import MACHINE_TYPE, VOLUMES, Stack, running_stack
from lablease.client.lockclient import LockClient
from lablease.client.render import targets_yaml
from lablease.logs import setup_logging

COUNT = 3
console = Console(soft_wrap=True)
if not console.is_terminal:  # logs and CI: the node table is wider than 80 columns, do not wrap its cells
    console.width = 160


class DemoError(RuntimeError):
    """A step of the demo did not give what it should have; the message says which."""


def lablease(stack: Stack, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    """Run the real `lablease` command as a user would, against the lab service."""
    argv = [sys.executable, "-m", "lablease", *args, "--server", stack.lock.url]
    console.print(f"[dim]$ lablease {' '.join(args)}[/]")
    sys.stdout.flush()
    return subprocess.run(argv, text=True, capture_output=capture, timeout=300,
                          env={**os.environ, "COLUMNS": str(console.width)})


def add_nodes(stack: Stack) -> None:
    """The admin's pool: COUNT records of the cloud machine type, as the seed tells lab admins to add them."""
    done = lablease(stack, "nodes", "add", "--machine-type", MACHINE_TYPE, "--vm", "--count", str(COUNT))
    if done.returncode != 0:
        raise DemoError(f"lablease nodes add exited {done.returncode}")


def lock_nodes(stack: Stack, user: str) -> list[dict[str, Any]]:
    """`lablease lock-many`: the service provisions the nodes; the command shows each node's stage live."""
    started = time.monotonic()
    done = lablease(stack, "lock-many", str(COUNT), "-m", MACHINE_TYPE, "--os-type", "ubuntu", "--os-version",
                    "22.04", "--desc", "lablease demo", "--owner", user)
    if done.returncode != 0:
        with LockClient(stack.lock.url) as client:
            errors = [f"{n['name']}: {n['last_error']}" for n in client.list() if n.get("last_error")]
        raise DemoError(f"provisioning failed: lablease lock-many exited {done.returncode}; "
                        + ("; ".join(errors) or "see its message above"))
    with LockClient(stack.lock.url) as client:
        nodes = sorted(client.list(locked=True, locked_by=user), key=lambda n: n["name"])
    console.print(f"[bold]lab service[/]: lock_many locked {', '.join(n['name'] for n in nodes)} for {user}, "
                  f"all SSH-ready, in {time.monotonic() - started:.1f} s")
    return nodes


def show_nodes(stack: Stack, nodes: list[dict[str, Any]]) -> None:
    """The user's view (`lablease list`), checked against BIND and devcloud; then teuthology's targets."""
    lablease(stack, "list", "-m", MACHINE_TYPE)
    volumes = stack.cloud.resources()["volumes"]
    table = Table(title=f"{len(nodes)} nodes ready, checked against BIND and devcloud")
    for column in ("node", "address", "DNS (BIND)", "state", f"volume ({VOLUMES['size']} GB)"):
        table.add_column(column, no_wrap=True)
    for node in nodes:
        short = node["name"].split(".")[0]
        answer = sorted(stack.bind.addresses(short))
        if answer != node["addresses"]:
            raise DemoError(f"BIND answers {answer or 'nothing'} for {node['name']}, expected {node['addresses']}")
        vols = [f"{v['name']} {v['status']}" for v in volumes if v["name"].startswith(f"{short}_")]
        table.add_row(short, node["addresses"][0], answer[0], node["state"], ", ".join(vols))
    console.print(table)
    console.print(f"all {len(nodes)} nodes resolved in DNS to their own address")
    console.print(f"[bold]teuthology targets[/] (a job's `targets:`, as `lablease lock-many --targets --user "
                  f"{stack.ssh_user}` prints them):")
    console.print(targets_yaml(nodes, stack.ssh_user).rstrip(), markup=False, highlight=False)


def prove_ssh(stack: Stack, node: dict[str, Any]) -> None:
    """Log in to the address BIND gives for the node, with the lab key, trusting only the host key the service saw."""
    [address] = stack.bind.addresses(node["name"].split(".")[0])
    port = stack.cloud.ssh_port
    client = paramiko.SSHClient()
    kind, blob = node["ssh_pub_key"].split()[:2]
    client.get_host_keys().add(f"[{address}]:{port}", kind, paramiko.PKey.from_type_string(kind, base64.b64decode(blob)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())  # any other host key is refused
    command = 'hostname; id -un; echo "$SSH_CONNECTION"; test -e "${DEVCLOUD_ROOT:-}/.teuth_provisioned" && echo marker'
    client.connect(address, port=port, username=stack.ssh_user, key_filename=str(stack.key_file), look_for_keys=False,
                   allow_agent=False, timeout=10)
    try:
        _, out, _ = client.exec_command(command, timeout=10)
        lines = out.read().decode().split()
        status = out.channel.recv_exit_status()
    finally:
        client.close()
    if status != 0 or len(lines) != 7:
        raise DemoError(f"SSH command on {node['name']} exited {status} with {' '.join(lines)!r}")
    hostname, login, _, _, server_ip, server_port, _ = lines
    console.print(f"[bold]ssh[/] to {node['name']} with the lab key, host key pinned to the one captured at boot:")
    console.print(f"  hostname: {hostname} (devcloud's nodes are sshd processes on this machine)")
    console.print(f"  logged in as {login}, connection to {server_ip} port {server_port} (the node's own address)")
    console.print("  readiness marker /.teuth_provisioned present (cloud-init's runcmd, done by devcloud)")


def unlock_nodes(stack: Stack, names: list[str], user: str) -> None:
    """`lablease unlock`: the service destroys volumes, servers and DNS records, then frees the records."""
    started = time.monotonic()
    done = lablease(stack, "unlock", *names, "--owner", user)
    if done.returncode != 0:
        raise DemoError(f"lablease unlock exited {done.returncode}")
    console.print(f"[bold]lab service[/]: destroyed and unlocked {len(names)} nodes in "
                  f"{time.monotonic() - started:.1f} s (volumes, servers and DNS records deleted)")


def check_nothing_left(stack: Stack, names: list[str]) -> None:
    """devcloud holds no server and no volume, BIND no record, the lock server no lock: or fail."""
    res = stack.cloud.resources()
    records = {n: sorted(stack.bind.addresses(n.split(".")[0])) for n in names}
    with LockClient(stack.lock.url) as client:
        locked = [n["name"] for n in client.list(locked=True)]
    if res["servers"] or res["volumes"] or any(records.values()) or locked:
        raise DemoError(f"left behind: servers {res['servers']}, volumes {res['volumes']}, DNS {records}, "
                        f"locked {locked}")
    console.print(f"[bold green]nothing left behind[/]: devcloud holds 0 servers and 0 volumes, BIND has no record "
                  f"of {', '.join(n.split('.')[0] for n in names)}, no node is locked")
    counts = stack.cloud.request_counts()
    table = Table(title=f"devcloud's request counts for {len(names)} nodes (create + destroy, one volume each)")
    for column, justify in (("request", "left"), ("count", "right"), ("per node", "right")):
        table.add_column(column, justify=justify)
    for key, n in counts.items():
        table.add_row(key, str(n), f"{n / len(names):.1f}")
    total = sum(counts.values())
    table.add_row("[bold]all requests[/]", str(total), f"{total / len(names):.1f}")
    console.print(table)


def run(stack: Stack) -> None:
    """Add, lock (provision), show, log in, unlock (destroy), check: the main job, step by step."""
    user = f"{getpass.getuser()}@{socket.gethostname()}"
    add_nodes(stack)
    nodes = lock_nodes(stack, user)
    names = [n["name"] for n in nodes]
    console.print(f"[bold]dashboard[/]: {stack.lock.url}/ui/ shows these nodes (docs/dashboard.md) until the demo "
                  "unlocks them")
    try:
        show_nodes(stack, nodes)
        prove_ssh(stack, nodes[0])
    except BaseException:
        # Report the first failure, not a cleanup problem; the cloud dies with the demo anyway.
        done = lablease(stack, "unlock", *names, "--owner", user, "-q", capture=True)
        console.print("cleanup: unlocked and destroyed the nodes" + ("" if done.returncode == 0 else
                                                                      f", except: {done.stderr.strip()}"))
        raise
    unlock_nodes(stack, names, user)
    check_nothing_left(stack, names)


def main(cloud_config: dict[str, Any] | None = None) -> int:
    """Run the demo; ``cloud_config`` replaces devcloud's demo settings (the tests inject faults with it)."""
    setup_logging("WARNING")
    started = time.monotonic()
    console.print("[bold]lablease demo[/]: devcloud (OpenStack on loopback, real sshd per server), BIND, "
                  "the DNS service and the lab service, each on a free loopback port")
    try:
        with tempfile.TemporaryDirectory(prefix="lablease-demo-") as tmp:
            with running_stack(Path(tmp), cloud_config) as stack:
                console.print(f"  devcloud {stack.cloud.url}, BIND 127.0.0.1:{stack.bind.port}, "
                              f"DNS service {stack.dns.url}, lab service {stack.lock.url}")
                run(stack)
    except KeyboardInterrupt:
        console.print("[red]demo interrupted[/]: all servers stopped")
        return 130
    except Exception as exc:  # every failure ends the same way: one clear line, servers stopped, non-zero exit
        hint = " (scripts/system-packages.sh says what is missing)" if isinstance(exc, FileNotFoundError) else ""
        console.print(f"[red]demo failed[/] ({type(exc).__name__}): {exc}{hint}")
        console.print("all servers stopped")
        return 1
    console.print(f"[bold green]demo done[/] in {time.monotonic() - started:.1f} s: all servers stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
