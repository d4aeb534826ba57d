"""Nova 2.1: servers (create, list with filters, get, delete, metadata, actions), flavors, images."""

from __future__ import annotations

import base64
import binascii
import logging
import re
import secrets
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from lablease.devcloud import console
from lablease.devcloud.bootvolume import (
    PREPPING_FAILED, attach_boot_volume, availability_zone, boolean, boot_device, check_disk, server_volumes_gone,
)
from lablease.devcloud.compute_views import (
    NOT_BLANK, PREFIX, VM_STATE, filtered_servers, flavor_view, get_server, image_view, resource_links, server_view,
)
from lablease.devcloud.errors import CloudError, json_body
from lablease.devcloud.faults import resource_fault
from lablease.devcloud.floating import server_action as floating_action, server_gone
from lablease.devcloud.identity import base_url
from lablease.devcloud.lifecycle import Lifecycle
from lablease.devcloud.paging import next_links, page
from lablease.devcloud.quotas import check_compute_quota
from lablease.devcloud.state import Cloud, Server, Token, new_id, utcnow

log = logging.getLogger(__name__)


def make_router(cloud: Cloud, life: Lifecycle, auth) -> APIRouter:
    router = APIRouter(prefix=PREFIX)

    @router.get("")
    @router.get("/")
    async def version(request: Request):
        return {"version": {"id": "v2.1", "status": "CURRENT", "version": "2.1", "min_version": "2.1",
                            "updated": "2013-07-23T11:33:21Z",
                            "links": [{"rel": "self", "href": f"{base_url(request)}{PREFIX}/"}]}}

    def paged(request: Request, items: list, path: str, key: str, view) -> dict[str, Any]:
        chunk, marker = page(items, request, cloud.config.page_size, lambda i: i.id, "nova")
        body: dict[str, Any] = {key: [view(i) for i in chunk]}
        links = next_links(request, f"{base_url(request)}{PREFIX}/{path}", marker)
        if links:
            body[f"{key}_links"] = links
        return body

    @router.get("/flavors")
    async def list_flavors(request: Request, token: Token = auth):
        return paged(request, cloud.config.flavors, "flavors", "flavors", lambda f: {
            "id": f.id, "name": f.name, "links": resource_links(request, "flavors", f.id)})

    @router.get("/flavors/detail")
    async def list_flavors_detail(request: Request, token: Token = auth):
        return paged(request, cloud.config.flavors, "flavors/detail", "flavors", lambda f: flavor_view(request, f))

    @router.get("/flavors/{flavor_id}")
    async def get_flavor(flavor_id: str, request: Request, token: Token = auth):
        flavor = cloud.flavor(flavor_id)
        if flavor is None:
            raise CloudError(404, f"Flavor {flavor_id} could not be found.", "nova")
        return {"flavor": flavor_view(request, flavor)}

    @router.get("/images")
    async def list_images(request: Request, token: Token = auth):
        return paged(request, cloud.config.images, "images", "images", lambda i: {
            "id": i.id, "name": i.name, "links": resource_links(request, "images", i.id)})

    @router.get("/images/detail")
    async def list_images_detail(request: Request, token: Token = auth):
        return paged(request, cloud.config.images, "images/detail", "images", lambda i: image_view(request, i))

    @router.get("/images/{image_id}")
    async def get_image(image_id: str, request: Request, token: Token = auth):
        image = cloud.image(image_id)
        if image is None:
            raise CloudError(404, "Image not found.", "nova")
        return {"image": image_view(request, image)}

    @router.post("/servers", status_code=202)
    async def create_server(request: Request, token: Token = auth):
        body = await json_body(request, "nova", "server")
        with cloud.lock:
            server, admin_pass = _create(cloud, life, request, token, body)
        return {"server": {"id": server.id, "links": resource_links(request, "servers", server.id),
                           "OS-DCF:diskConfig": "MANUAL", "adminPass": admin_pass,
                           "security_groups": [{"name": n} for n in server.security_groups]}}

    @router.get("/servers")
    async def list_servers(request: Request, token: Token = auth):
        with cloud.lock:
            servers, marker = filtered_servers(cloud, request, token)
            body: dict[str, Any] = {"servers": [{"id": s.id, "name": s.name,
                                                 "links": resource_links(request, "servers", s.id)} for s in servers]}
        return _with_next(body, request, "servers", marker)

    @router.get("/servers/detail")
    async def list_servers_detail(request: Request, token: Token = auth):
        with cloud.lock:
            servers, marker = filtered_servers(cloud, request, token)
            body = {"servers": [server_view(cloud, request, s) for s in servers]}
        return _with_next(body, request, "servers/detail", marker)

    @router.get("/servers/{server_id}")
    async def show_server(server_id: str, request: Request, token: Token = auth):
        with cloud.lock:
            return {"server": server_view(cloud, request, get_server(cloud, token, server_id))}

    @router.delete("/servers/{server_id}", status_code=204)
    async def delete_server(server_id: str, token: Token = auth):
        with cloud.lock:
            server = get_server(cloud, token, server_id)
            if resource_fault(cloud, cloud.faults.delete_error, server.name):
                # A delete that fails as clouds fail them: accepted, then the server sits in ERROR.
                server.status, server.task_state = "ERROR", None
                server.fault = {"code": 500, "message": cloud.faults.delete_error.message
                                or "Failed to delete instance: timed out waiting for the hypervisor",
                                "created": utcnow()}
                return Response(status_code=204)
            del cloud.servers[server_id]
            for net_name, addr in server.addresses:
                for net in cloud.networks.values():
                    if net.name == net_name:
                        cloud.pools[net.id].release(addr)
            server_gone(cloud, server_id)
            server_volumes_gone(cloud, server)
        life.server_deleted(server)
        log.info("server deleted id=%s name=%s", server_id, server.name)
        return Response(status_code=204)

    @router.get("/servers/{server_id}/metadata")
    async def get_metadata(server_id: str, token: Token = auth):
        with cloud.lock:
            return {"metadata": dict(get_server(cloud, token, server_id).metadata)}

    @router.put("/servers/{server_id}/metadata")
    @router.post("/servers/{server_id}/metadata")
    async def set_metadata(server_id: str, request: Request, token: Token = auth):
        body = await json_body(request, "nova", "metadata")
        meta = _check_metadata(body)
        with cloud.lock:
            server = get_server(cloud, token, server_id)
            if request.method == "PUT":
                server.metadata = meta
            else:
                server.metadata.update(meta)
            return {"metadata": dict(server.metadata)}

    @router.get("/servers/{server_id}/metadata/{key}")
    async def get_metadata_item(server_id: str, key: str, token: Token = auth):
        with cloud.lock:
            server = get_server(cloud, token, server_id)
            if key not in server.metadata:
                raise CloudError(404, "Metadata item was not found", "nova")
            return {"meta": {key: server.metadata[key]}}

    @router.put("/servers/{server_id}/metadata/{key}")
    async def set_metadata_item(server_id: str, key: str, request: Request, token: Token = auth):
        meta = _check_metadata(await json_body(request, "nova", "meta"))
        if list(meta) != [key]:
            raise CloudError(400, "Request body and URI mismatch", "nova")
        with cloud.lock:
            get_server(cloud, token, server_id).metadata.update(meta)
        return {"meta": meta}

    @router.delete("/servers/{server_id}/metadata/{key}", status_code=204)
    async def delete_metadata_item(server_id: str, key: str, token: Token = auth):
        with cloud.lock:
            server = get_server(cloud, token, server_id)
            if server.metadata.pop(key, None) is None:
                raise CloudError(404, "Metadata item was not found", "nova")
        return Response(status_code=204)

    @router.post("/servers/{server_id}/action", status_code=202)
    async def server_action(server_id: str, request: Request, token: Token = auth):
        body = await json_body(request, "nova")
        action = next(iter(body), None) if len(body) == 1 else None
        if action in ("addFloatingIp", "removeFloatingIp"):
            floating_action(cloud, life, token, server_id, action, body[action])
            return Response(status_code=202)
        with cloud.lock:
            server = get_server(cloud, token, server_id)
            if action == "os-getConsoleOutput":  # Nova answers 200 with the log's last lines
                return JSONResponse(console.output(server, body[action]))
            allowed = {"reboot": ("ACTIVE", "ACTIVE"), "os-stop": ("ACTIVE", "SHUTOFF"),
                       "os-start": ("SHUTOFF", "ACTIVE")}
            if action not in allowed:
                raise CloudError(400, f"There is no such action: {action}", "nova")
            before, after = allowed[action]
            if server.status != before:
                raise CloudError(409, f"Cannot '{action}' instance {server_id} while it is in vm_state "
                                      f"{VM_STATE.get(server.status, server.status.lower())}", "nova")
            server.status, server.updated = after, utcnow()
        return Response(status_code=202)

    return router


def _with_next(body: dict[str, Any], request: Request, path: str, marker: str | None) -> dict[str, Any]:
    links = next_links(request, f"{base_url(request)}{PREFIX}/{path}", marker)
    if links:
        body["servers_links"] = links
    return body


def _check_metadata(meta: dict[str, Any]) -> dict[str, str]:
    for k, v in meta.items():
        if not isinstance(v, str) or not k or len(k) > 255 or len(v) > 255:
            raise CloudError(400, f"Invalid input for field/attribute metadata. Value: {k}. "
                                  "Keys and values must be strings of 1 to 255 characters", "nova")
    return dict(meta)


def _create(cloud: Cloud, life: Lifecycle, request: Request, token: Token, body: dict[str, Any]):
    name = body.get("name")
    if not isinstance(name, str) or not re.search(NOT_BLANK, name) or len(name) > 255:
        raise CloudError(400, "Invalid input for field/attribute name. 'name' is a required property "
                              "(a string of 1 to 255 characters)", "nova")
    if "flavorRef" not in body:
        raise CloudError(400, "Invalid input for field/attribute server. 'flavorRef' is a required property", "nova")
    flavor = cloud.flavor(_ref(body["flavorRef"]))
    if flavor is None:
        raise CloudError(400, "Invalid flavorRef provided.", "nova")
    boot = boot_device(cloud, token, body.get("block_device_mapping_v2"))
    image = cloud.image(_ref(body.get("imageRef")))
    if image is None and (boot is None or body.get("imageRef") not in (None, "")):
        raise CloudError(400, "Can not find requested image", "nova")
    check_disk(flavor, boot)
    zone = availability_zone(cloud, body.get("availability_zone"))
    config_drive = boolean(body.get("config_drive", False), "config_drive")
    user_data = None
    if body.get("user_data") is not None:
        try:
            if not isinstance(body["user_data"], str):
                raise ValueError("not a string")
            raw = base64.b64decode(body["user_data"], validate=True)
        except (binascii.Error, ValueError):
            raise CloudError(400, "Invalid input for field/attribute user_data. User data needs to be valid "
                                  "base 64.", "nova") from None
        if len(str(body["user_data"])) > 65535:
            raise CloudError(400, "Invalid input for field/attribute user_data. It is longer than 65535", "nova")
        user_data = raw.decode("utf-8", errors="replace")
    metadata = body.get("metadata")
    if not isinstance(metadata, (dict, type(None))):
        raise CloudError(400, "Invalid input for field/attribute metadata. It must be an object", "nova")
    metadata = _check_metadata(metadata or {})
    key_name = body.get("key_name")
    if key_name is not None and not isinstance(key_name, str):
        raise CloudError(400, "Invalid input for field/attribute key_name. It must be a string", "nova")
    if key_name is not None and (token.user_id, key_name) not in cloud.keypairs:
        raise CloudError(400, "Invalid key_name provided.", "nova")
    groups = []
    requested_groups = body.get("security_groups")
    requested_groups = [{"name": "default"}] if requested_groups in (None, []) else requested_groups
    if not isinstance(requested_groups, list):
        raise CloudError(400, "Invalid input for field/attribute security_groups. It must be a list", "nova")
    for item in requested_groups:
        ref = item.get("name") if isinstance(item, dict) else None
        sg = next((g for g in cloud.security_groups.values()
                   if g.project_id == token.project.id and ref in (g.name, g.id)), None)
        if sg is None:
            raise CloudError(400, f"Unable to find security_group with name or id '{ref}'", "nova")
        groups.append(sg.name)
    networks = _pick_networks(cloud, body.get("networks"))
    check_compute_quota(cloud, token.project.id, flavor)
    now = utcnow()
    server = Server(id=new_id(), name=name, project_id=token.project.id, user_id=token.user_id,
                    flavor_id=flavor.id, image_id=image.id if image and boot is None else "", key_name=key_name,
                    metadata=metadata, user_data=user_data, security_groups=groups, addresses=[], created=now,
                    updated=now, availability_zone=zone, config_drive=config_drive)
    fails = resource_fault(cloud, cloud.faults.server_error, name)
    message = cloud.faults.server_error.message
    if boot is not None:
        volume = attach_boot_volume(cloud, server, boot)
        if volume is None:
            fails, message = True, f"Build of instance {server.id} aborted: {PREPPING_FAILED}"
        else:
            life.boot_volume_attached(volume)
    for net in networks:
        addr = cloud.pools[net.id].allocate()
        if addr is None:
            fails, message = True, f"Build of instance {server.id} aborted: No more IP addresses in {net.name}"
            break
        server.addresses.append((net.name, addr))
    server.root = life.server_root(server.id)
    console.created(server)
    cloud.servers[server.id] = server
    life.server_created(server, fails, message)
    log.info("server created id=%s name=%s flavor=%s image=%s zone=%s boot_volume=%s", server.id, name, flavor.name,
             image.name if image else "-", zone, boot is not None)
    return server, secrets.token_urlsafe(9)


def _ref(value: Any) -> str:
    """A flavorRef or imageRef: an id or a URL ending in one (Nova takes a string, or an integer id)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, str) else str(value) if isinstance(value, int) and not isinstance(value, bool) \
        else ""


def _pick_networks(cloud: Cloud, requested: Any):
    nets = [n for n in cloud.networks.values() if not n.external]
    if requested in (None, "auto", []):
        if len(nets) > 1:
            raise CloudError(409, "Multiple possible networks found, use a Network ID to be more specific.", "nova")
        return nets
    if requested == "none":
        return []
    if not isinstance(requested, list):
        raise CloudError(400, "Invalid input for field/attribute networks.", "nova")
    picked = []
    for item in requested:
        ref = item.get("uuid") if isinstance(item, dict) else None
        net = cloud.networks.get(str(ref))
        if net is None:
            raise CloudError(400, f"Network {ref} could not be found.", "nova")
        if net.external:
            raise CloudError(403, f"It is not allowed to create an interface on external network {ref}", "nova",
                             kind="forbidden")
        picked.append(net)
    return picked
