"""Wiring of the engine to a devcloud and a DNS service, for integration tests, benchmarks and demos.

Nothing here is used by the engine itself; it only builds the lab config a real lab would write.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import paramiko

from lablease.config.lab import LabConfig

# devcloud carries out cloud-config `touch` runcmds inside a per-server root that its sshd
# exports as DEVCLOUD_ROOT; on a real node the variable is empty and this is the plain marker test.
DEVCLOUD_READY_COMMAND = 'test -e "${DEVCLOUD_ROOT:-}/.teuth_provisioned"'


def generate_lab_key(path: str | Path) -> Path:
    """Write a fresh ECDSA private key (no passphrase) to ``path``, as a lab's key pair."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    paramiko.ECDSAKey.generate().write_private_key_file(str(path))
    return path


def devcloud_lab_config(cloud, key_file: str | Path, *, nsupdate_url: str | None = None,
                        lab_domain: str = "lab.example", machine_type: str = "dev", **provider: Any) -> LabConfig:
    """A validated LabConfig whose provider ``machine_type`` is ``cloud`` (a DevcloudHandle)."""
    return LabConfig.model_validate(devcloud_lab_data(cloud, key_file, nsupdate_url=nsupdate_url,
                                                      lab_domain=lab_domain, machine_type=machine_type, **provider))


def devcloud_lab_data(cloud, key_file: str | Path, *, nsupdate_url: str | None = None,
                      lab_domain: str = "lab.example", machine_type: str = "dev", **provider: Any) -> dict[str, Any]:
    """The teuthology.yaml keys (lab_domain, nsupdate_url, libcloud) of a lab whose provider is ``cloud``.

    Nodes log in as the account devcloud runs as (its sshd accepts only that one).
    """
    settings: dict[str, Any] = {
        "driver": "openstack",
        "driver_args": cloud.driver_args(),
        "ssh_key_file": str(key_file),
        "ssh_user": getpass.getuser(),
        "ssh_port": cloud.ssh_port,
        "ready_command": DEVCLOUD_READY_COMMAND,
        "boot_timeout": 60,
        "ready_timeout": 60,
        "volume_timeout": 30,
        "delete_timeout": 30,
        "api_retry_time": 30,
    }
    settings.update(provider)
    data: dict[str, Any] = {"lab_domain": lab_domain, "libcloud": {"providers": {machine_type: settings}}}
    if nsupdate_url:
        data["nsupdate_url"] = nsupdate_url
    return data


def ec2_lab_data(ec2, key_file: str | Path, *, nsupdate_url: str | None = None, lab_domain: str = "lab.example",
                 machine_type: str = "aws", **provider: Any) -> dict[str, Any]:
    """The teuthology.yaml keys of a lab whose provider ``machine_type`` is an EC2 endpoint on loopback (``ec2``:
    a ``lablease.testing.moto_ec2.MotoEc2Handle``): its instances are reached on their private 127.x address."""
    settings = devcloud_lab_data(ec2, key_file, lab_domain=lab_domain, machine_type=machine_type)
    entry = settings["libcloud"]["providers"][machine_type]
    entry.update({"driver": "ec2", "ssh_interface": "private_ips", "ec2": {"subnet": ec2.network["subnet_id"]}})
    entry.update(provider)
    if nsupdate_url:
        settings["nsupdate_url"] = nsupdate_url
    return settings
