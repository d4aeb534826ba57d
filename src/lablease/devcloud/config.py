"""devcloud's configuration: a pydantic model whose defaults are the documented default cloud."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lablease.config import load_yaml_file, validate_section


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserConfig(_Strict):
    name: str
    password: str = Field(repr=False)
    projects: list[str] = ["demo"]
    domain: str = "Default"


class FlavorConfig(_Strict):
    id: str
    name: str
    vcpus: int = Field(ge=1)
    ram: int = Field(ge=1, description="MiB")
    disk: int = Field(ge=0, description="GB")


class ImageConfig(_Strict):
    id: str
    name: str
    os_distro: str | None = None
    os_version: str | None = None
    min_disk: int = 0
    min_ram: int = 0


class NetworkConfig(_Strict):
    """One network. Servers get an address on it, unless it is ``external`` (a floating IP pool)."""

    name: str
    cidr: str = "127.100.0.0/16"
    public: bool = True  # address type "floating" when true, "fixed" when false
    reachable: bool = True  # whether a server's address here answers SSH (false: a private network)
    external: bool = False  # a floating IP pool (Neutron router:external): no server boots on it; its range
    #                         hands out floating IPs, which answer SSH while associated

    @field_validator("cidr")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        net = ipaddress.ip_network(value, strict=False)
        if net.version != 4 or not net.subnet_of(ipaddress.ip_network("127.0.0.0/8")):
            raise ValueError("must be an IPv4 range inside 127.0.0.0/8 (devcloud never leaves loopback)")
        if net.num_addresses < 4:
            raise ValueError("must hold at least 4 addresses")
        return str(net)


class QuotaConfig(_Strict):
    instances: int = 10
    cores: int = 20
    ram: int = 51200
    volumes: int = 10
    gigabytes: int = 1000
    key_pairs: int = 100
    floating_ips: int = 10  # Neutron's floatingip quota per project: one more allocation answers 409 OverQuota


class DomainConfig(_Strict):
    """A Keystone v3 domain; users and projects live in one (the ``Default`` domain, id ``default``)."""

    id: str
    name: str


class ProjectConfig(_Strict):
    name: str
    domain: str = "Default"  # a domain's name or id


class SshConfig(_Strict):
    enabled: bool = False
    port: int = Field(2222, ge=1, le=65535)
    delay: float = Field(1.0, ge=0, description="seconds after ACTIVE until sshd listens")
    runcmd_delay: float = Field(0.5, ge=0, description="seconds after sshd starts until runcmd is done")
    sshd_path: str = "/usr/sbin/sshd"


class RateLimitFault(_Strict):
    match: str = "*"  # fnmatch pattern against "METHOD /path/{template}"
    requests: int = Field(ge=0)
    per_seconds: float = Field(60, gt=0)
    status: Literal[413, 429] = 413
    retry_after: int = Field(1, ge=0)


class ErrorFault(_Strict):
    match: str = "*"
    probability: float = Field(ge=0, le=1)


class LatencyFault(_Strict):
    match: str = "*"
    seconds: float = Field(ge=0)


class LostAnswerFault(_Strict):
    """The cloud acts on the request and the client never hears of it: the answer is held ``seconds`` (timeout),
    cut (reset), or the request is carried out only ``seconds`` after it came (late: after the client gave up)."""

    match: str = "*"  # fnmatch pattern against "METHOD /path/{template}"
    probability: float = Field(ge=0, le=1)
    mode: Literal["timeout", "reset", "late"] = "timeout"
    seconds: float = Field(2.0, ge=0, description="how long a 'timeout' answer is held back, or a 'late' request")


class ResourceFault(_Strict):
    probability: float = Field(0.0, ge=0, le=1)
    match_name: str = "*"  # fnmatch pattern against the resource's name
    message: str | None = None


class BootFault(_Strict):
    """Servers whose name matches boot badly: ``error`` goes to ERROR, ``no_ssh`` runs but never starts sshd;
    either way ``console`` ends the server's console log (os-getConsoleOutput)."""

    match_name: str = "-"  # fnmatch pattern against the server's name; the default matches no lablease name
    console: str = "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"
    mode: Literal["error", "no_ssh"] = "error"


class FaultConfig(_Strict):
    seed: int = 0
    rate_limits: list[RateLimitFault] = []
    errors: list[ErrorFault] = []
    latency: list[LatencyFault] = []
    lost_answers: list[LostAnswerFault] = []
    server_error: ResourceFault = ResourceFault()
    volume_error: ResourceFault = ResourceFault()
    attach_error: ResourceFault = ResourceFault()
    delete_error: ResourceFault = ResourceFault()
    # match_name: the floating IP's description (allocate) or the server's name (associate)
    floating_ip_error: ResourceFault = ResourceFault()  # allocation answers 409 IpAddressGenerationFailure
    associate_error: ResourceFault = ResourceFault()  # association answers 200; the IP stays DOWN, never reachable
    boot_error: BootFault = BootFault()


def _default_flavors() -> list[FlavorConfig]:
    return [
        FlavorConfig(id="1", name="m1.tiny", vcpus=1, ram=512, disk=1),
        FlavorConfig(id="2", name="m1.small", vcpus=1, ram=2048, disk=20),
        FlavorConfig(id="3", name="m1.medium", vcpus=2, ram=4096, disk=40),
        FlavorConfig(id="4", name="m1.large", vcpus=4, ram=8192, disk=80),
        FlavorConfig(id="5", name="win-m1.large", vcpus=4, ram=8192, disk=80),
    ]


def _default_images() -> list[ImageConfig]:
    return [
        ImageConfig(id="2f1a1a38-0c7e-4a4c-9c9f-2204a0e22040", name="Ubuntu 22.04",
                    os_distro="ubuntu", os_version="22.04"),
        ImageConfig(id="6b1c5a3e-6d3a-4f38-9e0e-2004a0e22004", name="ubuntu-20.04-server",
                    os_distro="ubuntu", os_version="20.04"),
        ImageConfig(id="c9e6d1a2-90b3-4e51-8d7c-9c9c9c9c9c09", name="CentOS-9-Stream",
                    os_distro="centos", os_version="9"),
    ]


class DevcloudConfig(_Strict):
    """Everything devcloud serves; with no file, the documented default cloud."""

    users: list[UserConfig] = [UserConfig(name="demo", password="demo-password", projects=["demo"])]
    projects: list[str | ProjectConfig] = ["demo"]  # a name (in the Default domain) or {name, domain}
    domains: list[DomainConfig] = [DomainConfig(id="default", name="Default")]
    availability_zones: list[str] = ["nova"]  # Nova's zones; a server without one is in the first
    page_size: int | None = Field(None, ge=1, description="Nova's max_limit, Cinder's osapi_max_limit, Glance's "
                                                          "api_limit_max: the most items one listing answers")
    regions: list[str] = ["RegionOne"]
    token_lifetime: float = Field(3600, gt=0, description="seconds")
    boot_delay: float = Field(2.0, ge=0)
    volume_delay: float = Field(0.3, ge=0, description="seconds in 'creating', 'attaching', 'detaching'")
    flavors: list[FlavorConfig] = Field(default_factory=_default_flavors)
    images: list[ImageConfig] = Field(default_factory=_default_images)
    networks: list[NetworkConfig] = [NetworkConfig(name="public")]
    security_groups: list[str] = ["default"]
    quotas: QuotaConfig = QuotaConfig()
    ssh: SshConfig = SshConfig()
    faults: FaultConfig = FaultConfig()
    workdir: str | None = None  # per-server roots, sshd configs; a temp dir when unset
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _consistent(self) -> "DevcloudConfig":
        if not self.regions:
            raise ValueError("regions: at least one region is needed")
        if not any(not n.external for n in self.networks):
            raise ValueError("networks: at least one network that is not external is needed")
        if not self.availability_zones:
            raise ValueError("availability_zones: at least one zone is needed")
        domains = {d.name for d in self.domains} | {d.id for d in self.domains}
        names = [p if isinstance(p, str) else p.name for p in self.projects]
        if len(set(names)) != len(names):
            raise ValueError("projects: names must be unique")
        for project in self.projects:
            if isinstance(project, str) and not domains & {"default", "Default"}:
                raise ValueError(f"projects: project {project!r} names no domain and there is no Default domain")
            if not isinstance(project, str) and project.domain not in domains:
                raise ValueError(f"projects: domain {project.domain!r} of project {project.name!r} is not in domains")
        for user in self.users:
            if user.domain not in domains:
                raise ValueError(f"users: domain {user.domain!r} of user {user.name!r} is not in domains")
            for project in user.projects:
                if project not in names:
                    raise ValueError(f"users: project {project!r} of user {user.name!r} is not in projects")
        for kind, items in (("flavors", self.flavors), ("images", self.images), ("networks", self.networks),
                            ("domains", self.domains)):
            ids = [getattr(i, "id", getattr(i, "name", None)) for i in items]
            if len(set(ids)) != len(ids):
                raise ValueError(f"{kind}: ids must be unique")
        for net in self.networks:
            if net.external and not net.public:
                raise ValueError(f"networks: external network {net.name!r} must be public")
        return self

    def project_domain(self, name: str) -> str:
        """The name of the domain project ``name`` lives in."""
        for project in self.projects:
            if not isinstance(project, str) and project.name == name:
                return self.domain(project.domain).name
        return self.domain("Default").name

    def domain(self, ref: str) -> DomainConfig:
        """The domain with this name or id (a validated config names only existing ones)."""
        return next(d for d in self.domains if ref in (d.name, d.id))


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> DevcloudConfig:
    """Load the config file (or the default cloud) and apply overrides; errors name the key."""
    data: dict[str, Any] = load_yaml_file(path) if path else {}
    data.update(overrides or {})
    return validate_section(DevcloudConfig, data, file=str(path) if path else None)
