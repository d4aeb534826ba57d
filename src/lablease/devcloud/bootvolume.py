"""Server create's block devices (``block_device_mapping_v2``), availability zone and config drive, as Nova takes them.

A server boots from a volume when a mapping with ``boot_index`` 0 has ``destination_type: volume``: from a new volume
made from an image (``source_type: image``, ``volume_size``) or from an existing available volume
(``source_type: volume``). The volume is attached as ``/dev/vda`` and, with ``delete_on_termination``, deleted with
the server. A flavor with ``disk: 0`` boots only that way (Nova's 403 otherwise).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from lablease.devcloud.errors import CloudError
from lablease.devcloud.quotas import check_volume_quota
from lablease.devcloud.state import Attachment, Cloud, Server, Token, Volume, new_id, utcnow

log = logging.getLogger(__name__)

ZERO_DISK = "Only volume-backed servers are allowed for flavors with zero disk."
PREPPING_FAILED = "Failure prepping block device."
TRUE = {"True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes", "y", "t"}
FALSE = {"False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no", "n", "f"}


@dataclass
class BootDevice:
    source: str  # "image" (a new volume made from it) or "volume" (an existing one)
    uuid: str
    size: int
    delete_on_termination: bool


def boolean(value: Any, field: str) -> bool:
    """Nova's parameter_types.boolean: true/false and their usual spellings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in TRUE | FALSE:
        return value in TRUE
    raise CloudError(400, f"Invalid input for field/attribute {field}. Value: {value!r}. "
                          f"{value!r} is not of type 'boolean', 'string'", "nova")


def availability_zone(cloud: Cloud, value: Any) -> str:
    """The zone a server asked for (400 as Nova when it is not one), or the first zone."""
    if value is None:
        return cloud.config.availability_zones[0]
    if not isinstance(value, str) or value not in cloud.config.availability_zones:
        raise CloudError(400, "The requested availability zone is not available", "nova")
    return value


def boot_device(cloud: Cloud, token: Token, mappings: Any) -> BootDevice | None:
    """The boot volume the mappings ask for (None: the server boots from its image); Nova's 400s for bad ones."""
    if mappings is None:
        return None
    if not isinstance(mappings, list) or not all(isinstance(m, dict) for m in mappings):
        raise CloudError(400, "Invalid input for field/attribute block_device_mapping_v2. It must be a list of "
                              "objects", "nova")
    for m in mappings:
        source, dest = m.get("source_type"), m.get("destination_type", "volume" if m.get("source_type") == "volume"
                                                    else "local")
        if source not in ("image", "volume", "blank") or dest not in ("volume", "local"):
            raise CloudError(400, "Block Device Mapping is Invalid: source_type must be image, volume or blank and "
                                  "destination_type volume or local.", "nova")
    boot = None
    for m in mappings:
        source = m["source_type"]
        dest = m.get("destination_type", "volume" if source == "volume" else "local")
        if str(m.get("boot_index")) == "0":
            if dest == "volume" and source != "blank":  # else an image on local disk: the server's imageRef decides
                boot = _device(cloud, token, m, source)
        elif source != "blank" or dest != "local":
            raise CloudError(400, "Block Device Mapping is Invalid: devcloud takes only the boot device and blank "
                                  "local disks.", "nova")
    return boot


def _device(cloud: Cloud, token: Token, m: dict[str, Any], source: str) -> BootDevice:
    uuid = m.get("uuid")
    if not isinstance(uuid, str):
        raise CloudError(400, "Block Device Mapping is Invalid: the boot device needs a uuid.", "nova")
    delete = boolean(m.get("delete_on_termination", False), "delete_on_termination")
    if source == "image":
        if cloud.image(uuid) is None:
            raise CloudError(400, f"Block Device Mapping is Invalid: failed to get image {uuid}.", "nova")
        size = m.get("volume_size")
        if isinstance(size, str) and size.isdigit():
            size = int(size)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise CloudError(400, "Images with destination_type 'volume' need to have a non-zero size specified",
                             "nova")
        image = cloud.image(uuid)
        if size < image.min_disk:
            raise CloudError(400, f"Volume is smaller than the minimum size specified in image metadata. Volume size "
                                  f"is {size * 2**30} bytes, minimum size is {image.min_disk * 2**30} bytes.", "nova")
        return BootDevice("image", uuid, size, delete)
    volume = cloud.volumes.get(uuid)
    if volume is None or volume.project_id != token.project.id:
        raise CloudError(400, f"Block Device Mapping is Invalid: failed to get volume {uuid}.", "nova")
    if volume.status != "available":
        raise CloudError(400, f"Invalid volume: volume '{uuid}' status must be 'available'. Currently in "
                              f"'{volume.status}'", "nova")
    return BootDevice("volume", uuid, volume.size, delete)


def check_disk(flavor, boot: BootDevice | None) -> None:
    if flavor.disk == 0 and boot is None:
        raise CloudError(403, ZERO_DISK, "nova", kind="forbidden")


def attach_boot_volume(cloud: Cloud, server: Server, boot: BootDevice) -> Volume | None:
    """Make (or take) the boot volume and attach it as /dev/vda; None when Cinder refuses (quota): the build fails."""
    if boot.source == "image":
        try:
            check_volume_quota(cloud, server.project_id, boot.size)
        except CloudError:
            return None
        image = cloud.image(boot.uuid)
        volume = Volume(id=new_id(), name="", description="", size=boot.size, project_id=server.project_id,
                        user_id=server.user_id, created=utcnow(), metadata={},
                        availability_zone=server.availability_zone, image_id=image.id)
        cloud.volumes[volume.id] = volume
    else:
        volume = cloud.volumes[boot.uuid]
    volume.status = "creating" if boot.source == "image" else "attaching"
    volume.attachments.append(Attachment(id=volume.id, server_id=server.id, volume_id=volume.id, device="/dev/vda"))
    server.block_devices.append((volume.id, boot.delete_on_termination))
    log.info("boot volume id=%s server=%s size=%d delete_on_termination=%s", volume.id, server.id, volume.size,
             boot.delete_on_termination)
    return volume


def server_volumes_gone(cloud: Cloud, server: Server) -> list[str]:
    """Detach a deleted server's volumes; delete its boot volumes marked delete_on_termination. The deleted ids."""
    deleted = [vid for vid, delete in server.block_devices if delete and vid in cloud.volumes]
    for vid in deleted:
        del cloud.volumes[vid]
    for volume in cloud.volumes.values():
        if any(a.server_id == server.id for a in volume.attachments):
            volume.attachments = [a for a in volume.attachments if a.server_id != server.id]
            volume.status = "available" if not volume.attachments else volume.status
    return deleted
