"""Volumes as Cinder keeps them, shared by Cinder v3/v2 and Nova's os-volumes proxy; the Cinder API."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import APIRouter, Request, Response

from lablease.devcloud.errors import CloudError, Style, json_body
from lablease.devcloud.faults import resource_fault
from lablease.devcloud.identity import base_url
from lablease.devcloud.lifecycle import Lifecycle
from lablease.devcloud.paging import next_links, page
from lablease.devcloud.quotas import check_volume_quota, cinder_limits
from lablease.devcloud.state import Attachment, Cloud, Token, Volume, iso, new_id, utcnow

log = logging.getLogger(__name__)

SIZE_TEXT = r"[1-9][0-9]{0,8}"  # a size may come as its decimal text
DELETE_REFUSED = ("Invalid volume: Volume status must be available or error or error_restoring or "
                  "error_extending or error_managing and must not be migrating, attached, belong to a group, "
                  "have snapshots or be disassociated from snapshots after volume transfer.")


def get_volume(cloud: Cloud, token: Token, volume_id: str, style: Style) -> Volume:
    volume = cloud.volumes.get(volume_id)
    if volume is None or volume.project_id != token.project.id:
        raise CloudError(404, f"Volume {volume_id} could not be found.", style)
    return volume


def create_volume(cloud: Cloud, life: Lifecycle, token: Token, body: dict[str, Any], style: Style) -> Volume:
    size = body.get("size")
    if isinstance(size, str) and re.fullmatch(SIZE_TEXT, size):
        size = int(size)
    elif isinstance(size, float) and size.is_integer():
        size = int(size)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise CloudError(400, "Invalid input for field/attribute size. Value: "
                              f"{body.get('size')!r}. 'size' must be an integer greater than or equal to 1",
                         style)
    for key in ("name", "display_name"):
        if body.get(key) is not None and (not isinstance(body[key], str) or len(body[key]) > 255):
            raise CloudError(400, f"Invalid input for field/attribute {key}: a string of at most 255 characters",
                             style)
    name = body.get("name", body.get("display_name"))
    zone = body.get("availability_zone")
    if zone is not None and zone not in cloud.config.availability_zones:
        raise CloudError(400, f"Availability zone '{str(zone)[:255]}' is invalid.", style)
    metadata = body.get("metadata") or {}
    if not isinstance(body.get("metadata"), (dict, type(None))) or not all(isinstance(v, str) for v in metadata.values()):
        raise CloudError(400, "Invalid input for field/attribute metadata: string values only", style)
    with cloud.lock:
        check_volume_quota(cloud, token.project.id, size, style)
        volume = Volume(id=new_id(), name=name, size=size, project_id=token.project.id, user_id=token.user_id,
                        description=body.get("description", body.get("display_description")),
                        created=utcnow(), metadata=dict(metadata),
                        volume_type=body.get("volume_type") or "lvmdriver-1",
                        availability_zone=zone or cloud.config.availability_zones[0])
        cloud.volumes[volume.id] = volume
        fails = resource_fault(cloud, cloud.faults.volume_error, name)
    life.volume_created(volume, fails)
    log.info("volume created id=%s name=%s size=%d", volume.id, name, size)
    return volume


def delete_volume(cloud: Cloud, token: Token, volume_id: str, style: Style) -> None:
    with cloud.lock:
        volume = get_volume(cloud, token, volume_id, style)
        if volume.status not in ("available", "error", "error_deleting") or volume.attachments:
            raise CloudError(400, DELETE_REFUSED, style)
        if resource_fault(cloud, cloud.faults.delete_error, volume.name):
            volume.status = "error_deleting"  # accepted, then stuck: what a failed Cinder delete leaves
            return
        del cloud.volumes[volume_id]
    log.info("volume deleted id=%s", volume_id)


def attach(cloud: Cloud, life: Lifecycle, token: Token, server_id: str, volume_id: Any, device: Any) -> Attachment:
    from lablease.devcloud.compute_views import get_server

    with cloud.lock:
        server = get_server(cloud, token, server_id)
        if not isinstance(volume_id, str):
            raise CloudError(400, "Invalid input for field/attribute volumeId. 'volumeId' is a required property",
                             "nova")
        volume = get_volume(cloud, token, volume_id, "nova")
        if server.status not in ("ACTIVE", "SHUTOFF"):
            raise CloudError(409, f"Cannot 'attach_volume' instance {server_id} while it is in vm_state "
                                  f"{server.status.lower()}", "nova")
        if volume.status != "available":
            raise CloudError(400, f"Invalid volume: volume '{volume_id}' status must be 'available'. "
                                  f"Currently in '{volume.status}'", "nova")
        used = {a.device for v in cloud.volumes.values() for a in v.attachments if a.server_id == server_id}
        if device is None:
            device = next(f"/dev/vd{c}" for c in "bcdefghijklmnopqrstuvwxyz" if f"/dev/vd{c}" not in used)
        elif not isinstance(device, str) or not device.startswith("/dev/") or device in used:
            raise CloudError(400, f"The supplied device path ({device}) is invalid or in use.", "nova")
        att = Attachment(id=volume.id, server_id=server_id, volume_id=volume.id, device=device)
        volume.attachments.append(att)
        volume.status = "attaching"
        fails = resource_fault(cloud, cloud.faults.attach_error, volume.name)
    life.volume_attaching(volume, fails)
    log.info("volume attaching id=%s server=%s device=%s", volume.id, server_id, device)
    return att


def detach(cloud: Cloud, life: Lifecycle, token: Token, server_id: str, volume_id: str) -> None:
    from lablease.devcloud.compute_views import get_server

    with cloud.lock:
        get_server(cloud, token, server_id)
        volume = cloud.volumes.get(volume_id)
        if volume is None or not any(a.server_id == server_id for a in volume.attachments):
            raise CloudError(404, f"Volume {volume_id} is not attached to server {server_id}", "nova")
        if volume.status != "in-use":
            raise CloudError(409, f"Cannot 'detach_volume' while volume {volume_id} is {volume.status}", "nova")
        volume.status = "detaching"
    life.volume_detaching(volume)


def cinder_view(request: Request, v: Volume, project_id: str, version: str) -> dict[str, Any]:
    created = iso(v.created).replace("Z", ".000000")
    return {
        "id": v.id, "name": v.name, "description": v.description, "size": v.size, "status": v.status,
        "availability_zone": v.availability_zone, "created_at": created, "updated_at": created,
        "attachments": [{"id": a.volume_id, "attachment_id": a.attachment_id, "volume_id": a.volume_id,
                         "server_id": a.server_id, "host_name": None, "device": a.device,
                         "attached_at": created} for a in v.attachments],
        "bootable": "true" if v.image_id else "false", "encrypted": False, "multiattach": False, "metadata": dict(v.metadata),
        "volume_type": v.volume_type, "snapshot_id": None, "source_volid": None, "user_id": v.user_id,
        "os-vol-tenant-attr:tenant_id": v.project_id, "replication_status": None, "consistencygroup_id": None,
        "links": [{"rel": "self", "href": f"{base_url(request)}/volume/{version}/{project_id}/volumes/{v.id}"}],
        **({"volume_image_metadata": {"image_id": v.image_id, "image_name": image.name}}
           if v.image_id and (image := cloud_image(request, v.image_id)) else {}),
    }


def cloud_image(request: Request, image_id: str):
    return request.app.state.cloud.image(image_id)


def make_discovery_router() -> APIRouter:
    """Cinder's version documents (what keystoneauth asks for before it uses the volume endpoint)."""
    router = APIRouter(prefix="/volume")

    def versions(request: Request) -> list[dict[str, Any]]:
        base = base_url(request)
        return [{"id": vid, "status": status, "version": ver, "min_version": low, "updated": "2023-01-01T00:00:00Z",
                 "links": [{"rel": "self", "href": f"{base}/volume/{vid.split('.')[0]}/"}],
                 "media-types": [{"base": "application/json",
                                  "type": f"application/vnd.openstack.volume+json;version={vid[1]}"}]}
                for vid, status, ver, low in (("v3.0", "CURRENT", "3.70", "3.0"), ("v2.0", "DEPRECATED", "", ""))]

    @router.get("/")
    async def all_versions(request: Request):
        from fastapi.responses import JSONResponse
        return JSONResponse({"versions": versions(request)}, status_code=300)

    @router.get("/v3/")
    @router.get("/v3/{project_id}")
    async def v3_version(request: Request):
        return {"versions": versions(request)[:1]}

    @router.get("/v2/")
    @router.get("/v2/{project_id}")
    async def v2_version(request: Request):
        return {"versions": versions(request)[1:]}

    return router


def make_router(cloud: Cloud, life: Lifecycle, auth, version: str) -> APIRouter:
    router = APIRouter(prefix=f"/volume/{version}/{{project_id}}")

    def scoped(project_id: str, token: Token) -> None:
        if project_id != token.project.id:
            raise CloudError(403, "Policy doesn't allow this operation on another project.", "cinder",
                             kind="forbidden")

    def listing(request: Request, project_id: str, token: Token) -> list[Volume]:
        scoped(project_id, token)
        vols = [v for v in cloud.volumes.values() if v.project_id == token.project.id]
        q = request.query_params
        if "name" in q:
            vols = [v for v in vols if v.name == q["name"]]
        if "status" in q:
            vols = [v for v in vols if v.status == q["status"]]
        return sorted(vols, key=lambda v: (v.created, v.id), reverse=True)

    def paged(request: Request, project_id: str, token: Token, path: str, view) -> dict[str, Any]:
        chunk, marker = page(listing(request, project_id, token), request, cloud.config.page_size, lambda v: v.id,
                             "cinder")
        body: dict[str, Any] = {"volumes": [view(v) for v in chunk]}
        links = next_links(request, f"{base_url(request)}/volume/{version}/{project_id}/{path}", marker)
        if links:
            body["volumes_links"] = links
        return body

    @router.get("/volumes")
    async def list_volumes(project_id: str, request: Request, token: Token = auth):
        with cloud.lock:
            return paged(request, project_id, token, "volumes", lambda v: {
                "id": v.id, "name": v.name, "links": cinder_view(request, v, project_id, version)["links"]})

    @router.get("/volumes/detail")
    async def list_volumes_detail(project_id: str, request: Request, token: Token = auth):
        with cloud.lock:
            return paged(request, project_id, token, "volumes/detail",
                         lambda v: cinder_view(request, v, project_id, version))

    @router.post("/volumes", status_code=202)
    async def post_volume(project_id: str, request: Request, token: Token = auth):
        scoped(project_id, token)
        body = await json_body(request, "cinder", "volume")
        volume = create_volume(cloud, life, token, body, "cinder")
        with cloud.lock:
            return {"volume": cinder_view(request, volume, project_id, version)}

    @router.get("/volumes/{volume_id}")
    async def show_volume(project_id: str, volume_id: str, request: Request, token: Token = auth):
        scoped(project_id, token)
        with cloud.lock:
            return {"volume": cinder_view(request, get_volume(cloud, token, volume_id, "cinder"), project_id,
                                          version)}

    @router.delete("/volumes/{volume_id}", status_code=202)
    async def remove_volume(project_id: str, volume_id: str, token: Token = auth):
        scoped(project_id, token)
        delete_volume(cloud, token, volume_id, "cinder")
        return Response(status_code=202)

    @router.get("/limits")
    async def limits(project_id: str, token: Token = auth):
        scoped(project_id, token)
        with cloud.lock:
            return cinder_limits(cloud, token.project.id)

    @router.get("/types")
    async def volume_types(project_id: str, token: Token = auth):
        return {"volume_types": [{"id": "6c1d1c4a-0000-4000-8000-00000000000a", "name": "lvmdriver-1",
                                  "is_public": True, "extra_specs": {}, "description": None}]}

    return router
