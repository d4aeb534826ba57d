"""devcloud's in-memory cloud: resources, one lock around all of them, and a timeline of due events.

Handlers change state only while holding ``Cloud.lock``; delayed transitions (boot, volume
attach, sshd start) are scheduled events that the ticker thread runs when they are due.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from lablease.devcloud.config import DevcloudConfig


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def iso(ts: datetime) -> str:
    """Nova's timestamp format: 2024-01-02T03:04:05Z."""
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Project:
    id: str
    name: str
    domain_id: str = "default"
    domain_name: str = "Default"


@dataclass
class Token:
    id: str = field(repr=False)
    user_id: str
    user_name: str
    project: Project | None  # None: an unscoped (or domain-scoped) token, refused by every service
    issued: datetime
    expires: datetime
    user_domain: tuple[str, str] = ("default", "Default")  # (id, name)
    domain_scope: tuple[str, str] | None = None  # a domain-scoped token's domain (id, name)

    def expired(self) -> bool:
        return datetime.now(timezone.utc) >= self.expires


@dataclass
class Attachment:
    id: str  # Nova uses the volume id as the attachment id
    server_id: str
    volume_id: str
    device: str
    attachment_id: str = field(default_factory=new_id)  # Cinder's own attachment record id


@dataclass
class Server:
    id: str
    name: str
    project_id: str
    user_id: str
    flavor_id: str
    image_id: str
    key_name: str | None
    metadata: dict[str, str]
    user_data: str | None
    security_groups: list[str]
    addresses: list[tuple[str, str]]  # (network name, address)
    created: datetime
    updated: datetime
    status: str = "BUILD"
    task_state: str | None = "spawning"
    fault: dict[str, Any] | None = None
    root: Path | None = None  # what the server's "/" is for readiness markers
    ssh_up: bool = False
    ssh_due: bool = False  # ssh.delay after ACTIVE has passed: sshd runs while the server has a reachable address
    availability_zone: str = "nova"
    config_drive: bool = False
    block_devices: list[tuple[str, bool]] = field(default_factory=list)  # (volume id, delete_on_termination)
    console: list[str] = field(default_factory=list)  # its boot log, as os-getConsoleOutput shows it


@dataclass
class Volume:
    id: str
    name: str | None
    description: str | None
    size: int
    project_id: str
    user_id: str
    created: datetime
    metadata: dict[str, str]
    volume_type: str | None = "lvmdriver-1"
    availability_zone: str = "nova"
    status: str = "creating"
    attachments: list[Attachment] = field(default_factory=list)
    image_id: str | None = None  # made from this image (a boot volume): bootable, with volume_image_metadata


@dataclass
class Keypair:
    name: str
    user_id: str
    public_key: str
    fingerprint: str
    created: datetime
    type: str = "ssh"


@dataclass
class SecurityGroup:
    id: str
    name: str
    description: str
    project_id: str
    rules: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Network:
    id: str
    subnet_id: str
    name: str
    cidr: str
    public: bool
    project_id: str
    reachable: bool = True  # servers' addresses here answer SSH
    external: bool = False  # a floating IP pool


@dataclass
class FloatingIp:
    id: str
    address: str
    network_id: str
    project_id: str
    description: str
    created: datetime
    updated: datetime
    tags: list[str] = field(default_factory=list)
    port_id: str | None = None
    server_id: str | None = None
    fixed_address: str | None = None
    status: str = "DOWN"  # ACTIVE while associated, unless an associate_error fault left it DOWN
    revision: int = 0


class AddressPool:
    """Hands out unique addresses of one range, skipping the network's .0 and .1 and its broadcast."""

    def __init__(self, cidr: str):
        self.net = ipaddress.ip_network(cidr)
        self.first = int(self.net.network_address) + 2
        self.last = int(self.net.broadcast_address) - 1
        self.cursor = self.first
        self.in_use: set[str] = set()

    def allocate(self) -> str | None:
        for _ in range(self.last - self.first + 1):
            addr = str(ipaddress.ip_address(self.cursor))
            self.cursor = self.first if self.cursor >= self.last else self.cursor + 1
            if addr not in self.in_use:
                self.in_use.add(addr)
                return addr
        return None

    def release(self, addr: str) -> None:
        self.in_use.discard(addr)


class Cloud:
    """All resources of one devcloud process, guarded by one lock."""

    def __init__(self, config: DevcloudConfig, workdir: Path):
        self.config = config
        self.workdir = workdir
        self.lock = threading.RLock()
        self.faults = config.faults  # replaced at run time through the admin API
        self.rng = random.Random(config.faults.seed)
        self.projects: dict[str, Project] = {}
        for item in config.projects:
            name = item if isinstance(item, str) else item.name
            domain = config.domain("Default" if isinstance(item, str) else item.domain)
            key = f"project.{name}" if domain.id == "default" else f"project.{domain.id}.{name}"
            self.projects[name] = Project(id=uuid.uuid5(uuid.NAMESPACE_DNS, key).hex, name=name,
                                          domain_id=domain.id, domain_name=domain.name)
        self.tokens: dict[str, Token] = {}
        self.servers: dict[str, Server] = {}
        self.volumes: dict[str, Volume] = {}
        self.keypairs: dict[tuple[str, str], Keypair] = {}  # (user id, name)
        self.security_groups: dict[str, SecurityGroup] = {}
        self.networks: dict[str, Network] = {}
        self.pools: dict[str, AddressPool] = {}
        self.floating_ips: dict[str, FloatingIp] = {}
        self.request_counts: dict[str, int] = {}
        self.rate_windows: dict[int, list[float]] = {}
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._seed_resources()

    def _seed_resources(self) -> None:
        for project in self.projects.values():
            for name in self.config.security_groups:
                sg = SecurityGroup(id=new_id(), name=name, description=f"{name} security group",
                                   project_id=project.id)
                self.security_groups[sg.id] = sg
        for net in self.config.networks:
            nid = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"network.{net.name}"))
            sid = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"subnet.{net.name}"))
            self.networks[nid] = Network(id=nid, subnet_id=sid, name=net.name, cidr=net.cidr,
                                         public=net.public, project_id="", reachable=net.reachable,
                                         external=net.external)
            self.pools[nid] = AddressPool(net.cidr)

    # --- timeline -------------------------------------------------------------------------
    def schedule(self, delay: float, action: Callable[[], None]) -> None:
        """Run ``action`` (without the lock held) ``delay`` seconds from now on the ticker thread."""
        with self.lock:
            heapq.heappush(self._events, (time.monotonic() + delay, next(self._seq), action))

    def due_events(self) -> list[Callable[[], None]]:
        now = time.monotonic()
        due = []
        with self.lock:
            while self._events and self._events[0][0] <= now:
                due.append(heapq.heappop(self._events)[2])
        return due

    # --- lookups ----------------------------------------------------------------------------
    def flavor(self, ref: str):
        ref = ref.rstrip("/").rsplit("/", 1)[-1]
        return next((f for f in self.config.flavors if f.id == ref), None)

    def image(self, ref: str):
        ref = ref.rstrip("/").rsplit("/", 1)[-1]
        return next((i for i in self.config.images if i.id == ref), None)

    def reachable_addresses(self, server: Server) -> list[str]:
        """Where the server answers SSH: its addresses on reachable networks and its ACTIVE floating IPs."""
        reachable = {n.name for n in self.networks.values() if n.reachable}
        fixed = [addr for net, addr in server.addresses if net in reachable]
        return fixed + [f.address for f in self.floating_ips.values()
                        if f.server_id == server.id and f.status == "ACTIVE"]

    def chance(self, probability: float) -> bool:
        """One seeded coin toss; deterministic for a given seed and request order."""
        return probability > 0 and self.rng.random() < probability

    def resources(self) -> dict[str, Any]:
        """Everything that exists, for leak checks."""
        with self.lock:
            return {
                "servers": [{"id": s.id, "name": s.name, "status": s.status,
                             "addresses": [a for _, a in s.addresses], "metadata": dict(s.metadata)}
                            for s in self.servers.values()],
                "volumes": [{"id": v.id, "name": v.name, "status": v.status,
                             "attached_to": [a.server_id for a in v.attachments], "metadata": dict(v.metadata)}
                            for v in self.volumes.values()],
                "keypairs": [{"name": k.name} for k in self.keypairs.values()],
                "security_groups": [{"id": g.id, "name": g.name} for g in self.security_groups.values()],
                "networks": [{"id": n.id, "name": n.name} for n in self.networks.values()],
                "floating_ips": [{"id": f.id, "address": f.address, "server_id": f.server_id,
                                  "description": f.description, "status": f.status}
                                 for f in self.floating_ips.values()],
                "tokens": len(self.tokens),
            }
