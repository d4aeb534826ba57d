"""`make demo`: lablease's main job end to end on one machine, with the real parts on loopback.

A user locks three cloud nodes in the lock server; the provisioning engine creates them in
devcloud through libcloud in parallel (server, volume, DNS name in BIND, SSH readiness), records
their state in the lock server, logs in to one over SSH, destroys them all and unlocks them, and
shows that nothing is left in the cloud or in DNS. The servers are started by `demo_stack`.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import paramiko
from rich.console import Console
from rich.table import Table

from lablease.demo_stack import LAB_DOMAIN, MACHINE_TYPE, Stack, running_stack
from lablease.dns.client import DNSClient
from lablease.hostnames import canonicalize_hostname, numbered_names
from lablease.lockapi.client import LockClient
from lablease.logs import setup_logging
from lablease.provision.devlab import devcloud_lab_config, generate_lab_key
from lablease.provision.engine import Provisioner
from lablease.provision.models import CreateRequest, NodeInfo, ProgressCallback, ProgressEvent
from lablease.provision.progress import rich_progress

COUNT = 3
VOLUME = {"count": 1, "size": 1}  # one 1 GB volume per node (teuthology's `openstack:` job hints)
console = Console(soft_wrap=True)
if not console.is_terminal:  # logs and CI: the node table is wider than 80 columns, do not wrap its cells
    console.width = 160


class DemoError(RuntimeError):
    """A step of the demo did not give what it should have; the message says which."""


class Relay:
    """The engine takes one progress callback for its life; this forwards to the current display."""

    def __init__(self) -> None:
        self.target: ProgressCallback | None = None

    def __call__(self, event: ProgressEvent) -> None:
        if self.target is not None:
            self.target(event)


def fingerprint(host_key: str) -> str:
    """OpenSSH's SHA256 fingerprint of a "<type> <base64>" host key, as `ssh-keygen -l` shows it."""
    blob = host_key.split()[1]
    return "SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(blob)).digest()).decode().rstrip("=")


def lock_nodes(client: LockClient, user: str) -> list[str]:
    """Add COUNT cloud nodes to the inventory (as `lablease nodes add --vm` does) and lock them as a user would."""
    for name in numbered_names(MACHINE_TYPE, COUNT):
        client.create(canonicalize_hostname(name, LAB_DOMAIN), machine_type=MACHINE_TYPE, is_vm=True, up=True)
    locked = client.lock_many(COUNT, MACHINE_TYPE, user, "lablease demo")
    names = sorted(n["name"] for n in locked)
    console.print(f"[bold]lock server[/]: added {COUNT} nodes of machine type {MACHINE_TYPE}; "
                  f"lock_many locked {', '.join(names)} for {user}")
    return names


def provision(stack: Stack, prov: Provisioner, relay: Relay, names: list[str], user: str) -> list[NodeInfo]:
    """Create the nodes in parallel with a progress line each; record every node's state in the lock server."""
    console.print(f"[bold]provisioning[/] {COUNT} nodes in parallel (server, {VOLUME['size']} GB volume, "
                  "DNS name, SSH readiness):")
    for name in names:
        stack.store.set_provisioning(name, state="provisioning", who=user)
    with rich_progress(names) as on_progress:
        relay.target = on_progress
        outcomes = prov.create_many([CreateRequest(n, "ubuntu", "22.04", {"volumes": VOLUME}) for n in names],
                                    all_or_nothing=True)
        relay.target = None
    for o in outcomes:
        if o.ok:
            stack.store.set_provisioning(o.name, state="ready", cloud_server_id=o.node.server_id,
                                         addresses=[o.node.address], who=user)
        else:
            stack.store.set_provisioning(o.name, state="error", last_error=str(o.error), who=user)
    failed = [str(o.error) for o in outcomes if not o.ok]
    if failed:
        raise DemoError("provisioning failed (the engine removed what it had created): " + "; ".join(failed))
    return [o.node for o in outcomes]


def show_nodes(stack: Stack, client: LockClient, nodes: list[NodeInfo], user: str) -> None:
    """Where each node is, what BIND answers for its name, its host key, its volume, its lock server record."""
    volumes = {v["id"]: v for v in stack.cloud.resources()["volumes"]}
    table = Table(title=f"{len(nodes)} nodes ready")
    for column in ("node", "address", "DNS (BIND)", "lock server"):
        table.add_column(column, no_wrap=True)
    for column in ("SSH host key fingerprint", f"volume ({VOLUME['size']} GB)"):
        table.add_column(column, overflow="fold")  # a narrow terminal folds these, never cuts them
    for node in nodes:
        answer = sorted(stack.bind.addresses(node.fqdn))
        if answer != [node.address]:
            raise DemoError(f"BIND answers {answer or 'nothing'} for {node.fqdn}, expected {node.address}")
        record = client.get(node.fqdn)
        if record["locked_by"] != user or record["state"] != "ready":
            raise DemoError(f"lock server has {node.fqdn} {record['state']}, locked by {record['locked_by']}")
        vols = [f"{volumes[v]['name']} {volumes[v]['status']}" for v in node.volume_ids]
        table.add_row(node.name, node.address, answer[0], record["state"], fingerprint(node.host_key),
                      ", ".join(vols))
    console.print(table)
    console.print(f"all {len(nodes)} nodes resolved in DNS to their own address, each locked by {user}")


def prove_ssh(stack: Stack, prov: Provisioner, node: NodeInfo, key_file: Path) -> None:
    """Log in to the address BIND gives for the node, with the lab key, trusting only the host key seen at boot."""
    [address] = stack.bind.addresses(node.fqdn)
    port, user = prov.provider.ssh_port, prov.provider.ssh_user
    client = paramiko.SSHClient()
    kind, blob = node.host_key.split()[:2]
    pinned = paramiko.PKey.from_type_string(kind, base64.b64decode(blob))
    client.get_host_keys().add(f"[{address}]:{port}", kind, pinned)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())  # any other host key is refused
    command = 'hostname; id -un; echo "$SSH_CONNECTION"; test -e "${DEVCLOUD_ROOT:-}/.teuth_provisioned" && echo marker'
    client.connect(address, port=port, username=user, key_filename=str(key_file), look_for_keys=False,
                   allow_agent=False, timeout=10)
    try:
        _, out, _ = client.exec_command(command, timeout=10)
        lines = out.read().decode().split()
        status = out.channel.recv_exit_status()
    finally:
        client.close()
    if status != 0 or len(lines) != 7:
        raise DemoError(f"SSH command on {node.fqdn} exited {status} with {' '.join(lines)!r}")
    hostname, login, _, _, server_ip, server_port, _ = lines
    console.print(f"[bold]ssh[/] to {node.fqdn} with the lab key, host key pinned to the one captured at boot:")
    console.print(f"  hostname: {hostname} (devcloud's nodes are sshd processes on this machine)")
    console.print(f"  logged in as {login}, connection to {server_ip} port {server_port} (the node's own address)")
    console.print("  readiness marker /.teuth_provisioned present (cloud-init's runcmd, done by devcloud)")


def destroy(stack: Stack, prov: Provisioner, client: LockClient, names: list[str], user: str) -> None:
    """Destroy the nodes in parallel (volumes, servers, DNS records), mark them idle, unlock them."""
    for name in names:
        stack.store.set_provisioning(name, state="destroying", who=user)
    started = time.monotonic()
    outcomes = prov.destroy_many(names)
    failed = [str(o.error) for o in outcomes if not o.ok]
    if failed:
        raise DemoError("destroy failed: " + "; ".join(failed))
    console.print(f"[bold]destroyed[/] {len(names)} nodes in parallel in {time.monotonic() - started:.1f} s "
                  "(volumes detached and deleted, servers deleted, DNS records deleted)")
    for name in names:
        stack.store.set_provisioning(name, state="idle", cloud_server_id=None, addresses=[], who=user)
    client.unlock_many(names, user)
    console.print(f"[bold]lock server[/]: unlocked {', '.join(names)}")


def check_nothing_left(stack: Stack, client: LockClient, names: list[str]) -> None:
    """devcloud holds no server and no volume, BIND no record, the lock server no lock: or fail."""
    res = stack.cloud.resources()
    records = {n: sorted(stack.bind.addresses(n)) for n in names}
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


def run(stack: Stack, workdir: Path) -> None:
    """Lock, provision, show, log in, destroy, unlock, check: the main job, step by step."""
    user = f"{getpass.getuser()}@{socket.gethostname()}"
    key_file = generate_lab_key(workdir / "lab_key")  # made at run time; the public key goes into user-data
    config = devcloud_lab_config(stack.cloud, key_file, nsupdate_url=stack.dns.update_url, lab_domain=LAB_DOMAIN,
                                 machine_type=MACHINE_TYPE)
    relay = Relay()
    with LockClient(stack.lock.url) as client, DNSClient(stack.dns.update_url) as dns:
        prov = Provisioner(config, MACHINE_TYPE, dns, token_cache_dir=workdir / "tokens", on_progress=relay,
                           poll_cap=1.0)
        names = lock_nodes(client, user)
        try:
            nodes = provision(stack, prov, relay, names, user)
            show_nodes(stack, client, nodes, user)
            prove_ssh(stack, prov, nodes[0], key_file)
        except BaseException:
            # Report the first failure, not a cleanup problem; the cloud dies with the demo anyway.
            left = "; ".join(str(o.error) for o in prov.destroy_many(names) if not o.ok)
            console.print(f"cleanup: destroyed the nodes{', except: ' + left if left else ''}")
            raise
        destroy(stack, prov, client, names, user)
        check_nothing_left(stack, client, names)


def main(cloud_config: dict[str, Any] | None = None) -> int:
    """Run the demo; ``cloud_config`` replaces devcloud's demo settings (the tests inject faults with it)."""
    setup_logging("WARNING")  # the engine's retries and failures, on stderr
    started = time.monotonic()
    console.print("[bold]lablease demo[/]: devcloud (OpenStack on loopback, real sshd per server), BIND, "
                  "the DNS service and the lock server, each on a free loopback port")
    try:
        with tempfile.TemporaryDirectory(prefix="lablease-demo-") as tmp:
            with running_stack(Path(tmp), cloud_config) as stack:
                console.print(f"  devcloud {stack.cloud.url}, BIND 127.0.0.1:{stack.bind.port}, "
                              f"DNS service {stack.dns.url}, lock server {stack.lock.url}")
                run(stack, Path(tmp))
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
