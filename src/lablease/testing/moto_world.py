"""Inside the harness process: moto's EC2 backend, the harness's 127.x network in it, and what it holds.

Runs in the harness subprocess only (it imports moto, whose image list is read from MOTO_AMIS_PATH
at import time). The node lifecycle (pending -> running, sshd) is ``moto_nodes``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

from lablease.testing.moto_request import ClientTokens
from lablease.testing.moto_settings import MotoSettings, require_loopback

log = logging.getLogger(__name__)
RESETTABLE = {"public_ips", "pending_seconds", "volume_creating_seconds", "faults", "seed", "max_instances"}


@dataclass
class Network:
    vpc_id: str
    subnet_id: str
    cidr: str
    public_cidr: str


def ec2_backend(region: str) -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    return ec2_backends[DEFAULT_ACCOUNT_ID][region]


def make_network(backend: Any, settings: MotoSettings) -> Network:
    """Replace moto's default VPC (172.31.0.0/16) with one in 127/8 whose only subnet is ``settings.cidr``.

    With moto's default VPC gone, a RunInstances naming any other subnet is answered
    InvalidSubnetID.NotFound, so no instance can get an address outside 127.0.0.0/8.
    """
    for vpc in list(backend.vpcs.values()):
        if vpc.is_default:
            for subnet in backend.describe_subnets(filters={"vpc-id": vpc.id}):
                backend.delete_subnet(subnet.id)
            backend.delete_vpc(vpc.id)
    vpc = backend.create_vpc(cidr_block=settings.vpc_cidr, is_default=True)
    subnet = backend.create_subnet(vpc_id=vpc.id, cidr_block=settings.cidr,
                                   availability_zone=f"{settings.region}a")
    backend.modify_subnet_attribute(subnet.id, "map_public_ip_on_launch", False)
    log.info("network vpc=%s subnet=%s cidr=%s", vpc.id, subnet.id, settings.cidr)
    return Network(vpc.id, subnet.id, str(settings.cidr), settings.public_cidr)


class World:
    """The backend plus what the harness adds to it: delays, public addresses, volume states."""

    def __init__(self, backend: Any, settings: MotoSettings, network: Network):
        self.backend = backend
        self.base_settings = settings
        self.settings = settings
        self.network = network
        self.lock = threading.Lock()
        self.moto_lock = threading.RLock()  # held around every call into moto's app, and reset
        self.tokens = ClientTokens()
        self.pending_seconds = settings.pending_seconds
        self.volume_creating_seconds = settings.volume_creating_seconds
        # volume id -> monotonic time it becomes available (the delay when it was created)
        self.creating_until: dict[str, float] = {}
        self._public = self._public_pool()

    def _public_pool(self) -> Iterator[ipaddress.IPv4Address]:
        pool = ipaddress.ip_network(self.network.public_cidr).hosts()
        next(pool)  # .1 stays free, as EC2 keeps a subnet's first addresses
        return pool  # type: ignore[return-value]

    def reset(self, overrides: dict[str, Any] | None = None) -> Network:
        """Forget everything moto holds (every account and region) and start again as at start-up,
        with ``overrides`` of the settings that need no restart (RESETTABLE)."""
        from moto.ec2.models import ec2_backends

        unknown = set(overrides or {}) - RESETTABLE
        if unknown:
            raise ValueError(f"reset takes {sorted(RESETTABLE)}, not {sorted(unknown)}")
        self.settings = dataclasses.replace(self.base_settings, **(overrides or {}))

        with self.moto_lock:
            ec2_backends.reset()
            self.backend = ec2_backend(self.settings.region)
            self.network = make_network(self.backend, self.settings)
        self.tokens.clear()
        with self.lock:
            self.creating_until.clear()
            self._public = self._public_pool()
            self.pending_seconds = self.settings.pending_seconds
            self.volume_creating_seconds = self.settings.volume_creating_seconds
        return self.network

    # --- lookups the request corrections need -------------------------------------------------
    def attached_to(self, volume_id: str) -> str | None:
        volume = self.backend.volumes.get(volume_id)
        attachment = getattr(volume, "attachment", None)
        return attachment.instance.id if attachment is not None else None

    def volume_creating(self, volume_id: str) -> bool:
        with self.lock:
            until = self.creating_until.get(volume_id)
            if until is not None and time.monotonic() >= until:
                del self.creating_until[volume_id]
                until = None
        return until is not None

    def finish_creating(self) -> None:
        """Every volume still creating is available now."""
        with self.lock:
            self.creating_until.clear()

    def instance(self, instance_id: str) -> Any:
        return self.backend.get_instance(instance_id)

    # --- what a successful create leaves behind ----------------------------------------------
    def volume_created(self, volume_id: str) -> None:
        if self.volume_creating_seconds > 0:
            with self.lock:
                self.creating_until[volume_id] = time.monotonic() + self.volume_creating_seconds

    def next_public_address(self) -> str:
        """The next address of the harness's public 127.x block (moto's generators are pointed here)."""
        with self.lock:
            try:
                return require_loopback(str(next(self._public)), "public address")
            except StopIteration:
                raise RuntimeError(f"moto harness: the public block {self.network.public_cidr} is used up") from None

    def install_address_pool(self) -> None:
        """Point moto's public-address generators at the harness's 127.x block.

        The one change the harness makes to moto in-process: moto draws instance and Elastic IP public
        addresses from 54.x/random ranges, and the hard rule allows none outside 127.0.0.0/8. With
        ``public_ips: none`` no instance asks for one (``moto_request.no_public_address``).
        """
        from moto.ec2.models import elastic_ip_addresses, elastic_network_interfaces

        elastic_network_interfaces.random_public_ip = self.next_public_address  # type: ignore[attr-defined]
        elastic_ip_addresses.random_ip = self.next_public_address  # type: ignore[attr-defined]

    # --- listings for the admin API -------------------------------------------------------------
    def instances(self) -> list[dict[str, Any]]:
        out = []
        for reservation in list(self.backend.reservations.values()):
            for inst in reservation.instances:
                nic = inst.nics.get(0)
                out.append({
                    "id": inst.id, "state": inst._state.name, "private_ip": inst.private_ip,
                    "public_ip": nic.public_ip if nic is not None else None,
                    "subnet_id": inst.subnet_id, "image_id": inst.image_id, "instance_type": inst.instance_type,
                    "key_name": inst.key_name, "tags": {t["key"]: t["value"] for t in inst.get_tags()},
                    "volumes": sorted(v.volume_id for v in inst.block_device_mapping.values() if v.volume_id),
                })
        return out

    def volumes(self) -> list[dict[str, Any]]:
        out = []
        for vol in list(self.backend.volumes.values()):
            attachment = vol.attachment
            out.append({
                "id": vol.id, "status": "creating" if self.volume_creating(vol.id) else vol.status,
                "size": vol.size, "zone": getattr(vol.zone, "name", str(vol.zone)),
                "tags": {t["key"]: t["value"] for t in vol.get_tags()},
                "attached_to": attachment.instance.id if attachment else None,
                "device": attachment.device if attachment else None,
            })
        return out
