"""The `ec2:` keys of a provider whose driver is ec2, and what its driver_args must hold.

Everything else an EC2 provider needs is a key every provider has: ``ssh_interface`` says whether
nodes are reached on their public or private address, ``security_groups`` names groups (by name
or id), ``allow_sizes``/``exclude_sizes`` choose instance types. docs/ec2.md explains each key.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Canonical's account: it publishes the official Ubuntu AMIs in every region.
CANONICAL = "099720109477"
DEFAULT_AMI_NAME_PATTERNS = {
    "ubuntu-20.04": "ubuntu/images/*/ubuntu-focal-20.04-amd64-server-*",
    "ubuntu-22.04": "ubuntu/images/*/ubuntu-jammy-22.04-amd64-server-*",
    "ubuntu-24.04": "ubuntu/images/*/ubuntu-noble-24.04-amd64-server-*",
}
# Current-generation x86_64 families: an ARM (Graviton) type cannot boot the x86_64 AMIs above.
DEFAULT_EC2_SIZES = [r"(t3|t3a|m5|m6i|c5|c6i|r5|r6i)\."]
# What libcloud's EC2NodeDriver takes (its constructor, its base driver's, its connection's); other
# keys are ignored by libcloud without a word.
EC2_DRIVER_ARGS = frozenset({"key", "secret", "secure", "host", "port", "region", "token", "signature_version",
                             "api_version", "timeout", "retry_delay", "backoff", "proxy_url"})
_OS_KEY = re.compile(r"^[A-Za-z0-9_.]+-[A-Za-z0-9_.]+$")
_OWNER = re.compile(r"^(\d{12}|self|amazon|aws-marketplace)$")


class EC2Options(BaseModel):
    """`libcloud.providers.<type>.ec2`: how AMIs, the subnet and the key pair are chosen."""

    model_config = ConfigDict(extra="forbid")

    ami_owners: list[str] = Field(default_factory=lambda: [CANONICAL], min_length=1)
    ami_name_patterns: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_AMI_NAME_PATTERNS))
    subnet: str | None = None
    assign_public_ip: bool | None = None
    key_pair: str | None = None
    volume_type: Literal["standard", "gp2", "gp3", "io1", "io2", "st1", "sc1"] = "gp3"

    @field_validator("ami_owners")
    @classmethod
    def _owners(cls, value: list[str]) -> list[str]:
        for owner in value:
            if not _OWNER.match(owner):
                raise ValueError(f"{owner!r} is no AMI owner; give a 12-digit account id, or self, amazon or "
                                 f"aws-marketplace (Canonical, for Ubuntu, is {CANONICAL})")
        return value

    @field_validator("ami_name_patterns")
    @classmethod
    def _patterns(cls, value: dict[str, str]) -> dict[str, str]:
        for key, pattern in value.items():
            if not _OS_KEY.match(key):
                raise ValueError(f"{key!r}: keys must be <os_type>-<os_version>, e.g. ubuntu-22.04")
            if not pattern.strip():
                raise ValueError(f"{key}: the AMI name pattern is empty; give one such as "
                                 f"{DEFAULT_AMI_NAME_PATTERNS['ubuntu-22.04']!r} (EC2 wildcards * and ?)")
        return value

    @field_validator("subnet", "key_pair")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty; leave the key out instead")
        return value


def check_ec2_driver_args(driver_args: dict[str, Any]) -> None:
    """ValueError naming what is wrong with an EC2 provider's driver_args and how to fix it."""
    missing = [k for k in ("key", "secret") if not driver_args.get(k)]
    if missing:
        raise ValueError(f"driver_args needs {' and '.join(missing)} for the ec2 driver (the access key id and "
                         "the secret access key of an IAM user; docs/ec2.md lists the permissions it needs)")
    region = driver_args.get("region", "us-east-1")
    from libcloud.compute.drivers.ec2 import VALID_EC2_REGIONS

    if region not in VALID_EC2_REGIONS:
        raise ValueError(f"driver_args.region {region!r} is not an EC2 region libcloud knows; use one such as "
                         "us-east-1 or eu-west-1")
    version = driver_args.get("signature_version")
    if version is not None and str(version) not in ("2", "4"):
        raise ValueError("driver_args.signature_version must be 4 (or 2 for old endpoints); leave it out for 4")
    unknown = sorted(str(k) for k in driver_args if k not in EC2_DRIVER_ARGS)
    if unknown:
        raise ValueError(f"driver_args has keys libcloud's EC2 driver does not take: {', '.join(unknown)}; "
                         f"it takes {', '.join(sorted(EC2_DRIVER_ARGS))}")
