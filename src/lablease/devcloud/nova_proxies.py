"""Nova's proxy APIs used by libcloud's 1.1 driver: os-volumes, os-volume_attachments,
os-security-groups, os-networks; and Nova's limits."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from lablease.devcloud.compute_views import get_server
from lablease.devcloud.errors import json_body
from lablease.devcloud.lifecycle import Lifecycle
from lablease.devcloud.quotas import nova_limits
from lablease.devcloud.state import Attachment, Cloud, SecurityGroup, Token, Volume, iso
from lablease.devcloud import volumes as vols


def limited(items: list, request: Request, page_size: int | None) -> list:
    """Nova's common.limited: ``offset`` and ``limit`` (at most page_size), and no link to what is cut off."""
    from lablease.devcloud.errors import CloudError

    try:
        offset = int(request.query_params.get("offset", 0))
        limit = int(request.query_params.get("limit", page_size or len(items)))
        if offset < 0 or limit < 0:
            raise ValueError
    except ValueError:
        raise CloudError(400, "offset and limit param must be integers >= 0", "nova") from None
    limit = min(limit, page_size) if page_size else limit
    return items[offset:offset + limit]


def volume_view(v: Volume) -> dict[str, Any]:
    return {"id": v.id, "displayName": v.name, "displayDescription": v.description, "size": v.size,
            "status": v.status, "availabilityZone": v.availability_zone, "createdAt": iso(v.created),
            "volumeType": v.volume_type, "snapshotId": None, "metadata": dict(v.metadata),
            # Nova shows an unattached volume with one empty attachment.
            "attachments": [attachment_view(a) for a in v.attachments] or [{}]}


def attachment_view(a: Attachment) -> dict[str, Any]:
    return {"id": a.volume_id, "volumeId": a.volume_id, "serverId": a.server_id, "device": a.device}


def sg_view(g: SecurityGroup) -> dict[str, Any]:
    """Nova's view of a Neutron group: its ingress rules (Nova's proxy shows no egress), a rule from a group with
    ``group`` {name, tenant_id} and an empty ``ip_range``, a rule from an address range the other way round."""
    from lablease.devcloud.network import sg_view as neutron_view

    rules = [r for r in neutron_view(g)["security_group_rules"] if r.get("direction") == "ingress"]
    return {"id": g.id, "name": g.name, "description": g.description, "tenant_id": g.project_id,
            "rules": [{"id": r["id"], "parent_group_id": g.id, "ip_protocol": r.get("protocol"),
                       "from_port": r.get("port_range_min"), "to_port": r.get("port_range_max"),
                       "group": {"name": g.name, "tenant_id": g.project_id} if r.get("remote_group_id") else {},
                       "ip_range": {"cidr": r["remote_ip_prefix"]} if r.get("remote_ip_prefix") else {}}
                      for r in rules]}


def make_router(cloud: Cloud, life: Lifecycle, auth) -> APIRouter:
    router = APIRouter(prefix="/compute/v2.1")

    @router.get("/os-volumes")
    @router.get("/os-volumes/detail")
    async def list_volumes(request: Request, token: Token = auth):
        with cloud.lock:
            found = [volume_view(v) for v in cloud.volumes.values() if v.project_id == token.project.id]
        return {"volumes": limited(found, request, cloud.config.page_size)}

    @router.post("/os-volumes")
    async def create_volume(request: Request, token: Token = auth):
        body = await json_body(request, "nova", "volume")
        volume = vols.create_volume(cloud, life, token, body, "nova")
        with cloud.lock:
            return {"volume": volume_view(volume)}

    @router.get("/os-volumes/{volume_id}")
    async def show_volume(volume_id: str, token: Token = auth):
        with cloud.lock:
            return {"volume": volume_view(vols.get_volume(cloud, token, volume_id, "nova"))}

    @router.delete("/os-volumes/{volume_id}", status_code=202)
    async def delete_volume(volume_id: str, token: Token = auth):
        vols.delete_volume(cloud, token, volume_id, "nova")
        return Response(status_code=202)

    @router.get("/servers/{server_id}/os-volume_attachments")
    async def list_attachments(server_id: str, token: Token = auth):
        with cloud.lock:
            get_server(cloud, token, server_id)
            return {"volumeAttachments": [attachment_view(a) for v in cloud.volumes.values()
                                          for a in v.attachments if a.server_id == server_id]}

    @router.post("/servers/{server_id}/os-volume_attachments")
    async def attach_volume(server_id: str, request: Request, token: Token = auth):
        body = await json_body(request, "nova", "volumeAttachment")
        att = vols.attach(cloud, life, token, server_id, body.get("volumeId"), body.get("device"))
        return {"volumeAttachment": attachment_view(att)}

    @router.get("/servers/{server_id}/os-volume_attachments/{volume_id}")
    async def show_attachment(server_id: str, volume_id: str, token: Token = auth):
        from lablease.devcloud.errors import CloudError
        with cloud.lock:
            get_server(cloud, token, server_id)
            for v in cloud.volumes.values():
                for a in v.attachments:
                    if a.server_id == server_id and a.volume_id == volume_id:
                        return {"volumeAttachment": attachment_view(a)}
        raise CloudError(404, f"Volume {volume_id} is not attached to server {server_id}", "nova")

    @router.delete("/servers/{server_id}/os-volume_attachments/{volume_id}", status_code=202)
    async def detach_volume(server_id: str, volume_id: str, token: Token = auth):
        vols.detach(cloud, life, token, server_id, volume_id)
        return Response(status_code=202)

    @router.get("/os-security-groups")
    async def list_security_groups(token: Token = auth):
        with cloud.lock:
            return {"security_groups": [sg_view(g) for g in cloud.security_groups.values()
                                        if g.project_id == token.project.id]}

    @router.get("/servers/{server_id}/os-security-groups")
    async def server_security_groups(server_id: str, token: Token = auth):
        with cloud.lock:
            server = get_server(cloud, token, server_id)
            return {"security_groups": [sg_view(g) for g in cloud.security_groups.values()
                                        if g.project_id == token.project.id and g.name in server.security_groups]}

    @router.get("/servers/{server_id}/os-interface")
    async def server_interfaces(server_id: str, token: Token = auth):
        from lablease.devcloud.network import server_ports

        with cloud.lock:
            get_server(cloud, token, server_id)
            ports = server_ports(cloud, token, server_id)
        return {"interfaceAttachments": [{"port_id": p["id"], "net_id": p["network_id"], "mac_addr": p["mac_address"],
                                          "port_state": p["status"], "fixed_ips": p["fixed_ips"]} for p in ports]}

    @router.get("/os-networks")
    async def list_networks(token: Token = auth):
        with cloud.lock:
            return {"networks": [{"id": n.id, "label": n.name, "cidr": n.cidr} for n in cloud.networks.values()]}

    @router.get("/os-availability-zone")
    async def availability_zones(token: Token = auth):
        # What a non-admin sees: the zones, no hosts.
        return {"availabilityZoneInfo": [{"zoneName": zone, "zoneState": {"available": True}, "hosts": None}
                                         for zone in cloud.config.availability_zones]}

    @router.get("/limits")
    async def limits(token: Token = auth):
        with cloud.lock:
            return nova_limits(cloud, token.project.id, token.user_id)

    return router
