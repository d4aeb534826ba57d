"""The lab's teuthology.yaml as lablease reads it: lab keys, `libcloud.providers`, global hints.

The file is the lab's shared teuthology.yaml, so unknown top-level keys belong to teuthology and
are kept; inside a provider every key is known, so a typo is an error with a fix.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lablease.config.ec2 import DEFAULT_EC2_SIZES, EC2Options, check_ec2_driver_args
from lablease.config.errors import ConfigError
from lablease.config.loader import load_yaml_file, validate_section
from lablease.config.patterns import check_regex
from lablease.config.policy import LockPolicy, Quotas, check_quota_types
from lablease.hostnames import check_lab_domain

# Where teuthology looks for its config, in order.
DEFAULT_CONFIG_PATHS = ("~/.teuthology.yaml", "/etc/teuthology.yaml")

DEFAULT_READY_COMMAND = "test -e /.teuth_provisioned"
SUPPORTED_DRIVERS = ("openstack", "ec2")
# libcloud's api_version values that pick its OpenStack 2.x driver (Neutron networks and floating IPs)
NEUTRON_APIS = ("2.0", "2.1", "2.2")

MACHINE_TYPE_NAME_LEN = 32  # the nodes table's machine_type column (store.models.MACHINE_TYPE_LEN)

_USERDATA_KEY = re.compile(r"^[A-Za-z0-9_.]+-[A-Za-z0-9_.]+$")


def _as_patterns(value: Any) -> list[str]:
    """teuthology accepts a regex or a list of them; lablease keeps a list."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("must be a regular expression or a list of them")
    for pattern in value:
        check_regex(pattern)
    return value


class MachineHints(BaseModel):
    """Resources of one node; None means "no opinion" and loses to any other value."""

    model_config = ConfigDict(extra="forbid")
    disk: int | None = Field(default=None, ge=0, description="root disk, GB")
    ram: int | None = Field(default=None, ge=0, description="memory, MB")
    cpus: int | None = Field(default=None, ge=0)


class VolumeHints(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int | None = Field(default=None, ge=0, le=26)
    size: int | None = Field(default=None, ge=0, description="GB each")


class Hints(BaseModel):
    """`openstack: {machine: ..., volumes: ...}` as a job or teuthology.yaml carries it.

    Other keys of teuthology's `openstack:` section (its own OpenStack backend) are kept.
    """

    model_config = ConfigDict(extra="allow")
    machine: MachineHints = Field(default_factory=MachineHints)
    volumes: VolumeHints = Field(default_factory=VolumeHints)


class ProviderConfig(BaseModel):
    """One `libcloud.providers.<machine_type>` entry: teuthology's keys plus lablease's own."""

    model_config = ConfigDict(extra="forbid")

    # teuthology's keys
    driver: str
    # repr=False: these hold the cloud password and the key passphrase, and a model's repr ends up
    # in log lines, tracebacks and pytest failure output.
    driver_args: dict[str, Any] = Field(default_factory=dict, repr=False)
    ssh_interface: Literal["public_ips", "private_ips"] = "public_ips"
    exclude_image: list[str] = Field(default_factory=list)
    allow_sizes: list[str] = Field(default_factory=lambda: [".*"])
    exclude_sizes: list[str] = Field(default_factory=lambda: ["win-.*"])
    allow_networks: list[str] = Field(default_factory=lambda: [".*"])
    security_groups: list[str] | None = None
    userdata: dict[str, dict[str, Any]] = Field(default_factory=dict)

    # lablease's keys
    ec2: EC2Options | None = None  # driver ec2 only: AMIs, subnet, key pair, volume type (config/ec2.py)
    max_parallel: int = Field(default=10, ge=1, le=200)
    launch_retries: int = Field(default=3, ge=1, le=20)
    price_per_hour: float | None = Field(default=None, ge=0)  # one node-hour's price: lablease usage's cost
    boot_timeout: float = Field(default=600.0, gt=0)
    ready_timeout: float = Field(default=600.0, gt=0)
    ssh_user: str = "ubuntu"
    ssh_port: int = Field(default=22, ge=1, le=65535)
    ssh_key_file: str | None = None
    ssh_key_passphrase: str | None = Field(default=None, repr=False)
    authorized_keys: list[str] = Field(default_factory=list)
    ready_command: str = DEFAULT_READY_COMMAND
    rate: float = Field(default=0.0, ge=0, description="minimum seconds between API calls")
    tags: dict[str, str] = Field(default_factory=dict)
    listing_ttl: float = Field(default=300.0, ge=0)
    api_timeout: float = Field(default=60.0, gt=0)
    api_retry_time: float = Field(default=120.0, gt=0)
    volume_timeout: float = Field(default=300.0, gt=0)
    delete_timeout: float = Field(default=300.0, gt=0)
    # the lab service: what a lock that names no OS gets
    default_os_type: str = "ubuntu"
    default_os_version: str = "22.04"
    # warm pool: per "<os_type>-<os_version>", how many nodes to keep provisioned, unlocked and ready
    min_ready: dict[str, int] = Field(default_factory=dict)
    # after a failed refill the pool waits refill_backoff seconds, doubling per failure up to refill_backoff_max
    refill_backoff: float = Field(default=2.0, gt=0, le=3600)
    refill_backoff_max: float = Field(default=300.0, gt=0, le=86400)
    # seconds between SSH checks of every warm node (0: only when one is lent)
    warm_check_interval: float = Field(default=300.0, ge=0, le=86400)
    # seconds a warm node may wait to be lent before it is replaced by a fresh one (0: no limit)
    max_ready_age: float = Field(default=0.0, ge=0, le=366 * 86400)
    # lock expiry and holds of this machine type (config/policy.py); none: locks last until unlocked
    policy: LockPolicy | None = None

    # OpenStack clouds that are not OVH (docs/openstack-clouds.md); unset, each keeps today's behaviour
    # the external network (name or id) floating IPs come from; set, every node gets one, named in DNS
    floating_ip_pool: str | None = None
    # boot from a new volume made from the image: for flavors with disk 0 (auto), for every flavor, or never
    boot_from_volume: Literal["auto", "always", "never"] = "auto"
    availability_zone: str | None = None
    # the networks (each by exact name or id) servers are attached to, instead of allow_networks' patterns
    networks: list[str] = Field(default_factory=list)
    # a Nova key pair holding the lab's public key, instead of putting the lab's key in the user data
    key_name: str | None = None
    config_drive: bool = False

    @field_validator("floating_ip_pool", "availability_zone", "key_name")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank; leave the key out instead")
        return value

    @field_validator("networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        value = [value] if isinstance(value, str) else value
        if isinstance(value, list) and any(not isinstance(v, str) or not v.strip() for v in value):
            raise ValueError("must be a list of network names or ids")
        return value

    @field_validator("exclude_image", "allow_sizes", "exclude_sizes", "allow_networks", mode="before")
    @classmethod
    def _patterns(cls, value: Any) -> list[str]:
        return _as_patterns(value)

    @field_validator("security_groups", mode="before")
    @classmethod
    def _groups(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("driver")
    @classmethod
    def _driver(cls, value: str) -> str:
        if value.lower() not in SUPPORTED_DRIVERS:
            raise ValueError(f"unsupported driver; lablease supports: {', '.join(SUPPORTED_DRIVERS)}")
        return value.lower()

    @field_validator("userdata")
    @classmethod
    def _userdata_keys(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for key in value:
            if not _USERDATA_KEY.match(key):
                raise ValueError("keys must be <os_type>-<os_version>, e.g. ubuntu-22.04")
        return value

    @field_validator("min_ready")
    @classmethod
    def _min_ready(cls, value: dict[str, int]) -> dict[str, int]:
        for key, count in value.items():
            if not _USERDATA_KEY.match(key):
                raise ValueError("keys must be <os_type>-<os_version>, e.g. ubuntu-22.04")
            if count < 0:
                raise ValueError(f"{key}: must not be negative")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.startswith("lablease-"):
                raise ValueError("tag names starting with 'lablease-' are reserved for lablease's own tags")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> "ProviderConfig":
        # The OpenStack driver takes username and password positionally, as teuthology passes them.
        if self.driver == "openstack":
            missing = [k for k in ("username", "password", "ex_force_auth_url") if not self.driver_args.get(k)]
            if missing:
                raise ValueError(f"driver_args needs {', '.join(missing)} for the openstack driver")
            if self.ec2 is not None:
                raise ValueError("the ec2 key is for providers whose driver is ec2; remove it")
        if self.driver == "ec2":
            check_ec2_driver_args(self.driver_args)
            if self.ec2 is None:
                self.ec2 = EC2Options()
            if "allow_sizes" not in self.model_fields_set:
                self.allow_sizes = list(DEFAULT_EC2_SIZES)
        if self.floating_ip_pool is not None and str(self.driver_args.get("api_version", "1.1")) not in NEUTRON_APIS:
            raise ValueError("floating_ip_pool needs libcloud's OpenStack 2.x driver, which speaks to Neutron: set "
                             "driver_args.api_version to '2.0'")
        if self.networks and self.allow_networks != [".*"]:
            raise ValueError("give networks (names or ids) or allow_networks (patterns), not both")
        if self.floating_ip_pool is not None and self.floating_ip_pool in self.networks:
            raise ValueError(f"networks names the floating IP pool {self.floating_ip_pool!r}: servers are attached "
                             "to the private network(s); the pool's addresses are associated to them afterwards")
        return self

    def public_key_lines(self) -> list[str]:
        """The extra authorized keys, one per line, blank entries dropped."""
        return [k.strip() for k in self.authorized_keys if k.strip()]


class MachineTypeConfig(BaseModel):
    """One `libcloud.machine_types.<type>` entry: a machine type served by several providers, in priority order.

    Each name is a key of `libcloud.providers`; a lock takes what the first can give and the rest from the
    next (docs/lab-service.md, "Several clouds behind one machine type")."""

    model_config = ConfigDict(extra="forbid")
    providers: list[str] = Field(min_length=1)


class LibcloudSection(BaseModel):
    model_config = ConfigDict(extra="allow")
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    # lablease's key: machine types served by several of the providers above (none: every type is one provider)
    machine_types: dict[str, MachineTypeConfig] = Field(default_factory=dict)
    quotas: Quotas = Field(default_factory=Quotas)  # nodes an owner may hold (config/policy.py)

    @model_validator(mode="after")
    def _routes(self) -> "LibcloudSection":
        for name, entry in self.machine_types.items():
            _check_route(name, entry.providers, self.providers, self.machine_types)
        return self


class LabConfig(BaseModel):
    """The keys of teuthology.yaml lablease reads; everything else is kept untouched."""

    model_config = ConfigDict(extra="allow")
    lab_domain: str = "front.sepia.ceph.com"
    lock_server: str | None = None
    nsupdate_url: str | None = None
    libcloud: LibcloudSection = Field(default_factory=LibcloudSection)
    openstack: Hints = Field(default_factory=Hints)

    @field_validator("lab_domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        # Lowered here, once: names are compared with it as DNS compares them, in any case.
        return check_lab_domain(value)

    @field_validator("nsupdate_url", "lock_server")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    def providers_of(self, machine_type: str) -> list[str]:
        """The providers serving ``machine_type`` in priority order: itself for a provider's own type, the
        list of `libcloud.machine_types` for a multi-provider type, [] for a type no provider serves."""
        entry = self.libcloud.machine_types.get(machine_type)
        if entry is not None:
            return list(entry.providers)
        return [machine_type] if machine_type in self.libcloud.providers else []

    def provider(self, machine_type: str, *, file: str | None = None) -> ProviderConfig:
        """The provider for ``machine_type``, or a ConfigError listing the known ones."""
        try:
            return self.libcloud.providers[machine_type]
        except KeyError:
            known = ", ".join(sorted(self.libcloud.providers)) or "none"
            raise ConfigError(
                f"no provider for machine type {machine_type!r}", file=file, key="libcloud.providers",
                fix=f"known machine types: {known}",
            ) from None


def _check_route(name: str, listed: list[str], providers: dict[str, ProviderConfig],
                 types: dict[str, MachineTypeConfig]) -> None:
    """A multi-provider type names providers only, each once, and is not itself a provider."""
    if name in providers:
        raise ValueError(f"machine_types.{name}: {name!r} is also a key of libcloud.providers; a machine type is "
                         "either one provider or a list of them, not both (rename one)")
    if "|" in name or not name.strip():
        raise ValueError(f"machine_types.{name}: a machine type name must be non-empty and must not contain '|'")
    if len(name) > MACHINE_TYPE_NAME_LEN:
        raise ValueError(f"machine_types.{name}: at most {MACHINE_TYPE_NAME_LEN} characters (the lock API's limit)")
    for provider in listed:
        if provider in types:
            raise ValueError(f"machine_types.{name}.providers: {provider!r} is itself a multi-provider type; list the "
                             "providers of libcloud.providers only (no nesting, so no cycles)")
        if provider not in providers:
            known = ", ".join(sorted(providers)) or "none"
            raise ValueError(f"machine_types.{name}.providers: unknown provider {provider!r} (known: {known})")
    twice = sorted({p for p in listed if listed.count(p) > 1})
    if twice:
        raise ValueError(f"machine_types.{name}.providers: {', '.join(twice)} listed more than once")


def default_config_path() -> Path:
    """Where teuthology looks: ~/.teuthology.yaml, then /etc/teuthology.yaml."""
    for candidate in DEFAULT_CONFIG_PATHS:
        path = Path(os.path.expanduser(candidate))
        if path.exists():
            return path
    return Path(os.path.expanduser(DEFAULT_CONFIG_PATHS[0]))


def parse_lab_config(data: dict[str, Any], *, file: str | None = None) -> LabConfig:
    """Validate an already loaded mapping; errors name ``file`` and the key path."""
    config = validate_section(LabConfig, data, file=file)
    for name, provider in config.libcloud.providers.items():
        _check_key_file(provider, file=file, key=f"libcloud.providers.{name}.ssh_key_file")
    check_quota_types(config.libcloud.quotas, config.libcloud.providers, file=file)
    return config


def load_lab_config(path: str | Path | None = None) -> LabConfig:
    """Load and validate the lab config from ``path`` (default: where teuthology looks)."""
    p = Path(path).expanduser() if path else default_config_path()
    return parse_lab_config(load_yaml_file(p), file=str(p))


def _check_key_file(provider: ProviderConfig, *, file: str | None, key: str) -> None:
    if provider.ssh_key_file is None:
        return
    path = Path(provider.ssh_key_file).expanduser()
    if not path.is_file():
        raise ConfigError("the lab's SSH private key file does not exist", file=file, key=key,
                          fix="generate one with ssh-keygen -t ed25519 -f PATH -N '' or fix the path")
