"""The moto EC2 harness's settings, its default images, and the loopback-only rule for every address.

Shared by the parent side (``moto_ec2``: starts the harness, hands tests a handle) and the harness
process (``moto_serve``). Settings travel to the process as one JSON file.
"""

from __future__ import annotations

import ipaddress
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
OWNER_CANONICAL = "099720109477"  # the owner ids the real images carry, so AMI selection by owner is as on AWS
OWNER_CENTOS = "125523088429"
OWNER_REDHAT = "309956199498"


class NotLoopback(RuntimeError):
    """An address outside 127.0.0.0/8 came up where the harness or a test would connect or listen."""


def require_loopback(address: str, what: str = "address") -> str:
    """``address`` when it lies in 127.0.0.0/8; otherwise raise NotLoopback before anyone connects to it.

    The hard rule of the EC2 tests: nothing may ever send a packet outside 127.0.0.0/8.
    """
    try:
        ok = ipaddress.ip_address(address) in LOOPBACK
    except ValueError:
        ok = False
    if not ok:
        raise NotLoopback(f"refusing {what} {address!r}: the moto EC2 harness and its tests only ever use 127.0.0.0/8")
    return address


def _ami(ami_id: str, name: str, owner: str, created: str, description: str) -> dict[str, Any]:
    return {"ami_id": ami_id, "name": name, "owner_id": owner, "creation_date": created, "state": "available",
            "public": True, "description": description, "architecture": "x86_64", "virtualization_type": "hvm",
            "hypervisor": "xen", "root_device_type": "ebs", "root_device_name": "/dev/sda1",
            "image_type": "machine", "image_location": f"{owner}/{name}", "sriov": "simple"}


# The images the harness registers (moto's MOTO_AMIS_PATH replaces its own 44 Amazon images, so a
# listing holds these alone). Two jammy builds make "newest first" selection testable.
DEFAULT_AMIS: list[dict[str, Any]] = [
    _ami("ami-0a1b2c3d4e5f60001", "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240101", OWNER_CANONICAL,
         "2024-01-01T00:00:00.000Z", "Canonical, Ubuntu, 22.04 LTS, amd64 jammy image build on 2024-01-01"),
    _ami("ami-0a1b2c3d4e5f60002", "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240601", OWNER_CANONICAL,
         "2024-06-01T00:00:00.000Z", "Canonical, Ubuntu, 22.04 LTS, amd64 jammy image build on 2024-06-01"),
    _ami("ami-0a1b2c3d4e5f60003", "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20240701",
         OWNER_CANONICAL, "2024-07-01T00:00:00.000Z", "Canonical, Ubuntu, 24.04 LTS, amd64 noble image"),
    _ami("ami-0a1b2c3d4e5f60004", "ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-20240101", OWNER_CANONICAL,
         "2024-01-01T00:00:00.000Z", "Canonical, Ubuntu, 20.04 LTS, amd64 focal image"),
    _ami("ami-0a1b2c3d4e5f60005", "CentOS Stream 9 x86_64 20240610", OWNER_CENTOS,
         "2024-06-10T00:00:00.000Z", "CentOS Stream 9 x86_64 20240610"),
    _ami("ami-0a1b2c3d4e5f60006", "RHEL-9.4.0_HVM-20240605-x86_64-82-Hourly2-GP3", OWNER_REDHAT,
         "2024-06-05T00:00:00.000Z", "Provided by Red Hat, Inc."),
]


def random_cidr() -> str:
    """A random /24 in 127.2-100.x.0 for one harness's subnet.

    Parallel test workers each run a harness whose sshd processes listen on instance addresses; a
    random /24 keeps them apart (devcloud draws from 127.101-254, so the two never meet).
    """
    rnd = random.SystemRandom()
    return f"127.{rnd.randint(2, 100)}.{rnd.randint(0, 255)}.0/24"


@dataclass
class MotoSettings:
    """How one harness behaves. All of it may be given to ``start_moto_ec2`` / ``moto_ec2_factory``.

    region: the one region the harness serves (requests signed for another are refused, AuthFailure).
    cidr: the subnet instances live in (a /24 in 127/8); None picks a random one.
    public_ips: "none" (instances have no public address) or "loopback" (a 127.x address from the
        /24 just above ``cidr``'s, on which the instance's sshd listens too).
    pending_seconds / volume_creating_seconds: how long a new instance answers ``pending`` and a new
        volume ``creating`` (changeable later through the admin API).
    ssh: start one real sshd per running instance (port ``ssh_port`` on its addresses).
    amis: the images registered (moto's format: ami_id, name, owner_id, creation_date, ...).
    faults: initial fault rules (see moto_faults.FaultRule), seed: their random sequence.
    max_instances: the account's limit on instances it runs at once (pending or running); a
        RunInstances beyond it is ``InstanceLimitExceeded``, as on EC2. None: no limit.
    """

    region: str = "us-east-1"
    cidr: str | None = None
    public_ips: str = "none"
    pending_seconds: float = 0.5
    volume_creating_seconds: float = 0.2
    ssh: bool = True
    ssh_port: int = 2222
    sshd_path: str = "/usr/sbin/sshd"
    amis: list[dict[str, Any]] = field(default_factory=lambda: [dict(a) for a in DEFAULT_AMIS])
    faults: list[dict[str, Any]] = field(default_factory=list)
    seed: int = 0
    max_instances: int | None = None

    def __post_init__(self) -> None:
        if self.cidr is None:
            self.cidr = random_cidr()
        net = ipaddress.ip_network(self.cidr)
        if not net.subnet_of(LOOPBACK):  # type: ignore[arg-type]
            raise NotLoopback(f"refusing subnet {self.cidr}: instances of the moto harness live in 127.0.0.0/8 only")
        if net.prefixlen < 16 or net.prefixlen > 28:
            raise ValueError(f"subnet {self.cidr}: EC2 subnets are /16 to /28")
        if self.max_instances is not None and self.max_instances < 0:
            raise ValueError("max_instances must be >= 0")
        if self.public_ips not in ("none", "loopback"):
            raise ValueError(f"public_ips must be 'none' or 'loopback', not {self.public_ips!r}")

    @property
    def vpc_cidr(self) -> str:
        """The VPC around the subnet: its /16 (EC2 VPCs are /16 to /28)."""
        return str(ipaddress.ip_network(self.cidr).supernet(new_prefix=16))  # type: ignore[arg-type]

    @property
    def public_cidr(self) -> str:
        """Where loopback public addresses come from: the /24 (or block of the subnet's size) after the subnet."""
        net = ipaddress.ip_network(self.cidr)  # type: ignore[arg-type]
        nxt = ipaddress.ip_network(f"{net.broadcast_address + 1}/{net.prefixlen}")
        if not nxt.subnet_of(LOOPBACK):  # 127.255.255.0/24 has no successor inside 127/8
            nxt = ipaddress.ip_network(f"{net.network_address - net.num_addresses}/{net.prefixlen}")
        return str(nxt)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_file(cls, path: Path) -> "MotoSettings":
        return cls(**json.loads(Path(path).read_text()))
