"""The interface a cloud adapter implements: plain listings, one call per cloud operation, error triage.

The engine owns lifecycle, waiting, retries, rollback and parallelism; an adapter only
translates single calls to one libcloud driver family and says what an exception means.
Adapter methods are called from many threads at once and must be safe for that.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from lablease.provision.errorkinds import ErrorKind


@dataclass(frozen=True)
class ErrorInfo:
    """What ``classify`` says of an exception: one of TRANSIENT, RATE_LIMIT, QUOTA, AUTH, NOT_FOUND, FATAL."""

    kind: ErrorKind
    message: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Image:
    """``os``: the "<os_type>-<os_version>" this image is for, when the adapter knows it (EC2's AMIs are chosen
    per OS by name pattern); empty when the image is chosen by its name, as teuthology does."""

    id: str
    name: str
    raw: Any = field(default=None, compare=False, repr=False)
    os: str = ""


@dataclass(frozen=True)
class Size:
    id: str
    name: str
    ram: int    # MB
    disk: int   # GB
    vcpus: int
    raw: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    raw: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class SecurityGroup:
    id: str
    name: str
    raw: Any = field(default=None, compare=False, repr=False)


@dataclass
class Server:
    """A server as the engine sees it; ``state`` is one of pending, running, error, deleted, other."""

    id: str
    name: str
    state: str
    public_ips: list[str] = field(default_factory=list)
    private_ips: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    fault: str | None = None
    raw: Any = field(default=None, compare=False, repr=False)


@dataclass
class Volume:
    """A volume; ``state`` is one of creating, available, in-use, error, deleting, other."""

    id: str
    name: str
    state: str
    size: int
    attached_to: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    raw: Any = field(default=None, compare=False, repr=False)


@dataclass
class FloatingIP:
    """A Neutron floating IP; ``port_id`` None means it is associated with nothing (free). ``description``
    carries lablease's tags (``floating.describe``): Neutron floating IPs have no metadata."""

    id: str
    address: str
    network_id: str
    port_id: str | None = None
    description: str = ""
    revision: int | None = None  # Neutron's revision_number: a conditional update names the one it read
    raw: Any = field(default=None, compare=False, repr=False)


@dataclass
class ServerSpec:
    """What a server is created with. ``boot_volume_size`` (GB): boot from a new volume made from the image,
    deleted with the server (block device mapping); None boots from the image on the flavor's disk."""

    name: str
    image: Image
    size: Size
    networks: list[Network]
    security_groups: list[SecurityGroup]
    userdata: str
    metadata: dict[str, str]
    root_disk: int = 0  # GB the root disk needs (clouds whose sizes fix it, as OpenStack's flavors do, ignore it)
    boot_volume_size: int | None = None
    availability_zone: str | None = None
    key_name: str | None = None
    config_drive: bool = False


class CloudAdapter(ABC):
    """One cloud account; every method is one logical cloud operation and may raise driver errors."""

    @abstractmethod
    def authenticate(self) -> None:
        """Make sure a valid token exists (shared by threads and, through the token cache, processes)."""

    @abstractmethod
    def list_images(self) -> list[Image]: ...

    @abstractmethod
    def list_sizes(self) -> list[Size]: ...

    @abstractmethod
    def list_networks(self) -> list[Network]: ...

    def account(self) -> str:
        """Who the adapter is signed in as and where, for ``config check --connect`` (never a secret)."""
        return type(self).__name__

    def ping(self) -> None:
        """One cheap request that proves the cloud answers now (after an outage; a cached token proves nothing)."""
        self.list_sizes()

    def compute_limits(self) -> dict[str, int] | None:
        """The project's absolute compute limits (Nova's names: maxTotalInstances, maxTotalCores,
        maxTotalRAMSize, …); None when the cloud does not say (``config check --connect`` compares nothing)."""
        return None

    def console_output(self, server_id: str) -> str | None:
        """The server's console log (its last lines) as the cloud keeps it; None when this cloud shows none."""
        return None

    @abstractmethod
    def list_security_groups(self) -> list[SecurityGroup]: ...

    @abstractmethod
    def create_server(self, spec: ServerSpec) -> Server: ...

    @abstractmethod
    def get_server(self, server_id: str) -> Server | None:
        """The server, or None when the cloud no longer knows it."""

    @abstractmethod
    def list_servers(self) -> list[Server]: ...

    @abstractmethod
    def delete_server(self, server_id: str) -> None: ...

    @abstractmethod
    def create_volume(self, name: str, size: int, metadata: dict[str, str]) -> Volume: ...

    @abstractmethod
    def get_volume(self, volume_id: str) -> Volume | None: ...

    @abstractmethod
    def list_volumes(self) -> list[Volume]: ...

    @abstractmethod
    def attach_volume(self, server_id: str, volume_id: str) -> None: ...

    @abstractmethod
    def detach_volume(self, volume: Volume) -> None: ...

    @abstractmethod
    def delete_volume(self, volume_id: str) -> None: ...

    # -- floating IPs (only clouds with a floating_ip_pool use them) ------------------------------

    def list_floating_ips(self, network_id: str | None = None) -> list[FloatingIP]:
        """Every floating IP of the project (of ``network_id``'s pool when given), every page."""
        raise NotImplementedError(f"{type(self).__name__} has no floating IPs")

    def server_port(self, server_id: str) -> str | None:
        """The id of the server's first port (what a floating IP is associated with), None while it has none."""
        raise NotImplementedError(f"{type(self).__name__} has no floating IPs")

    def create_floating_ip(self, network_id: str, port_id: str, description: str) -> FloatingIP:
        """Allocate a floating IP from ``network_id``'s pool, associated with ``port_id`` (one request)."""
        raise NotImplementedError(f"{type(self).__name__} has no floating IPs")

    def associate_floating_ip(self, fip_id: str, port_id: str, description: str,
                              revision: int | None = None) -> FloatingIP | None:
        """Associate a free floating IP with ``port_id`` and re-describe it (one request), only if it is still at
        ``revision`` when given; None when another client changed or released it since it was listed."""
        raise NotImplementedError(f"{type(self).__name__} has no floating IPs")

    def delete_floating_ip(self, fip_id: str) -> None:
        """Release it (disassociating it first if it is associated); gone already is no error."""
        raise NotImplementedError(f"{type(self).__name__} has no floating IPs")

    @abstractmethod
    def classify(self, exc: BaseException) -> ErrorInfo:
        """Say what an exception raised by this adapter means for retrying."""
