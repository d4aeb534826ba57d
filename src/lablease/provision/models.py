"""What the engine takes and gives back: requests, node facts, outcomes, progress events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from lablease.provision.errors import ProvisionError

# Server and volume metadata keys that mark what lablease created (leak detection).
TAG_LAB = "lablease-lab"
TAG_NODE = "lablease-node"
TAG_ATTEMPT = "lablease-attempt"


@dataclass(frozen=True)
class CreateRequest:
    """One node to create: its name (short or in the lab domain), OS, and the job's resource hints."""

    name: str
    os_type: str
    os_version: str
    hints: Any = None  # teuthology's `openstack:` value: a dict, a list of dicts, or None


@dataclass
class NodeInfo:
    """A node that is running, attached, named in DNS and answering over SSH."""

    name: str                  # short name, also the server name and the DNS name
    fqdn: str
    server_id: str
    address: str               # the address on ssh_interface, registered in DNS
    public_ips: list[str]
    private_ips: list[str]
    host_key: str              # "<type> <base64>", captured at first contact
    volume_ids: list[str]
    image: str
    size: str
    attempts: int
    seconds: float


@dataclass
class Outcome:
    """Per-node result of create_many / destroy_many."""

    name: str
    ok: bool
    node: NodeInfo | None = None
    error: ProvisionError | None = None


@dataclass(frozen=True)
class ProgressEvent:
    """A stage of one node started, finished, failed or is being retried (for progress bars and metrics).

    ``status`` "made" reports a resource the attempt created (``made``: server_id, volume_id or
    dns) the moment it exists, so a caller can persist it before anything else can fail.
    """

    node: str
    stage: str
    status: str  # "start" | "done" | "failed" | "retry" | "made"
    attempt: int = 1
    message: str = ""
    attempt_id: str = ""
    made: dict[str, str] = field(default_factory=dict)
    console: str = ""  # a failed boot or SSH wait: the end of the server's console log (provision.console)


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass
class OwnedServer:
    id: str
    name: str
    node: str
    attempt: str
    state: str


@dataclass
class OwnedVolume:
    id: str
    name: str
    node: str
    attempt: str
    state: str
    attached_to: list[str] = field(default_factory=list)


@dataclass
class OwnedFloatingIP:
    id: str
    address: str
    node: str
    attempt: str
    port_id: str | None
    description: str  # what it was judged by: a leak is released only while it still says this


@dataclass
class OwnedResources:
    """Everything in the cloud that carries this lab's tag (for the reconciler)."""

    servers: list[OwnedServer]
    volumes: list[OwnedVolume]
    floating_ips: list[OwnedFloatingIP] = field(default_factory=list)
