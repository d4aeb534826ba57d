"""Floating IPs: Neutron's /v2.0/floatingips (with tags) and Nova's os-floating-ips proxy (libcloud's 1.1 driver).

A floating IP comes from an ``external`` network's range (inside 127.0.0.0/8 like every devcloud address). While it
is associated with a server's port (status ACTIVE) the server's sshd listens on it too; on a private network
(``reachable: false``) it is the only address that answers. Releasing or disassociating it stops that.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request, Response

from lablease.devcloud.compute_views import get_server, mac_of
from lablease.devcloud.errors import CloudError, json_body
from lablease.devcloud.faults import resource_fault
from lablease.devcloud.lifecycle import Lifecycle
from lablease.devcloud.state import Cloud, FloatingIp, Server, Token, iso, new_id, utcnow

log = logging.getLogger(__name__)
NEUTRON = "/network/v2.0/floatingips"
FILTERS = ("id", "floating_ip_address", "floating_network_id", "port_id", "fixed_ip_address", "status",
           "description", "router_id")


def port_id(server_id: str, address: str) -> str:
    """The id of the port that holds ``address`` of a server (devcloud's ports are derived, not stored)."""
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{server_id}/{address}"))


def fip_view(cloud: Cloud, f: FloatingIp) -> dict[str, Any]:
    """A floating IP as Neutron shows it (the keys of the Networking API reference, Neutron 13+)."""
    details = None
    if f.server_id and f.server_id in cloud.servers:
        server = cloud.servers[f.server_id]
        net = next((n for n in cloud.networks.values()
                    if any(a == f.fixed_address and name == n.name for name, a in server.addresses)), None)
        details = {"status": "ACTIVE" if server.status == "ACTIVE" else "DOWN", "name": "", "admin_state_up": True,
                   "network_id": net.id if net else None, "device_owner": "compute:nova",
                   "mac_address": mac_of(f.fixed_address or ""), "device_id": server.id}
    return {"id": f.id, "floating_ip_address": f.address, "floating_network_id": f.network_id,
            "fixed_ip_address": f.fixed_address, "port_id": f.port_id, "router_id": ROUTER if f.port_id else None,
            "status": f.status, "project_id": f.project_id, "tenant_id": f.project_id, "description": f.description,
            "dns_domain": "", "dns_name": "", "tags": list(f.tags), "port_details": details, "port_forwardings": [],
            "created_at": iso(f.created), "updated_at": iso(f.updated), "revision_number": f.revision}


ROUTER = "7d1f2c3b-0000-4000-8000-0000000000ff"  # the one router devcloud pretends joins every network to the pools


def nova_view(cloud: Cloud, f: FloatingIp) -> dict[str, Any]:
    """Nova 2.1's os-floating-ips view (deprecated in 2.36, what libcloud's 1.1 driver reads)."""
    pool = cloud.networks[f.network_id].name
    return {"id": f.id, "ip": f.address, "fixed_ip": f.fixed_address, "instance_id": f.server_id, "pool": pool}


def allocate(cloud: Cloud, token: Token, network_id: str, description: str, tags: list[str]) -> FloatingIp:
    """A new floating IP of the project from an external network; Neutron's errors (404, 400, 409)."""
    net = cloud.networks.get(network_id)
    if net is None:
        raise CloudError(404, f"Network {network_id} could not be found.", "neutron", kind="NetworkNotFound")
    if not net.external:
        raise CloudError(400, f"Bad floatingip request: Network {network_id} is not a valid external network.",
                         "neutron", kind="BadRequest")
    used = sum(1 for f in cloud.floating_ips.values() if f.project_id == token.project.id)
    if used >= cloud.config.quotas.floating_ips:
        raise CloudError(409, "Quota exceeded for resources: ['floatingip'].", "neutron", kind="OverQuota")
    address = None if resource_fault(cloud, cloud.faults.floating_ip_error, description) \
        else cloud.pools[net.id].allocate()
    if address is None:
        raise CloudError(409, f"No more IP addresses available on network {net.id}.", "neutron",
                         kind="IpAddressGenerationFailure")
    now = utcnow()
    fip = FloatingIp(id=new_id(), address=address, network_id=net.id, project_id=token.project.id,
                     description=description, created=now, updated=now, tags=list(tags))
    cloud.floating_ips[fip.id] = fip
    log.info("floating ip allocated id=%s address=%s", fip.id, address)
    return fip


def find_port(cloud: Cloud, token: Token, port: str) -> tuple[Server, str]:
    """The server and fixed address of a port of the project's servers, or Neutron's 404."""
    for server in cloud.servers.values():
        if server.project_id != token.project.id:
            continue
        for _, addr in server.addresses:
            if port_id(server.id, addr) == port:
                return server, addr
    raise CloudError(404, f"Port {port} could not be found.", "neutron", kind="PortNotFound")


def associate(cloud: Cloud, fip: FloatingIp, server: Server | None, fixed: str | None) -> list[str]:
    """Point ``fip`` at a server's fixed address (or nowhere); the ids of the servers whose sshd must move."""
    for other in cloud.floating_ips.values():
        if server and other.id != fip.id and other.server_id == server.id and other.fixed_address == fixed:
            raise CloudError(409, f"Cannot associate floating IP {fip.address} ({fip.id}) with port "
                                  f"{port_id(server.id, fixed or '')} using fixed IP {fixed}, as that fixed IP "
                                  f"already has a floating IP on external network {other.network_id}.",
                             "neutron", kind="FloatingIPPortAlreadyAssociated")
    moved = [sid for sid in (fip.server_id, server.id if server else None) if sid]
    fip.server_id, fip.fixed_address = (server.id, fixed) if server else (None, None)
    fip.port_id = port_id(server.id, fixed or "") if server else None
    fip.status = "DOWN"
    if server and not resource_fault(cloud, cloud.faults.associate_error, server.name):
        fip.status = "ACTIVE"
    fip.updated, fip.revision = utcnow(), fip.revision + 1
    log.info("floating ip id=%s address=%s server=%s status=%s", fip.id, fip.address, fip.server_id, fip.status)
    return list(dict.fromkeys(moved))


def release(cloud: Cloud, fip: FloatingIp) -> list[str]:
    """Delete ``fip`` (disassociating it first); the servers whose sshd must move."""
    moved = [fip.server_id] if fip.server_id else []
    del cloud.floating_ips[fip.id]
    cloud.pools[fip.network_id].release(fip.address)
    log.info("floating ip released id=%s address=%s", fip.id, fip.address)
    return moved


def server_gone(cloud: Cloud, server_id: str) -> None:
    """A deleted server's ports are gone: its floating IPs stay allocated, disassociated (as Neutron does)."""
    for fip in cloud.floating_ips.values():
        if fip.server_id == server_id:
            fip.server_id = fip.port_id = fip.fixed_address = None
            fip.status, fip.updated = "DOWN", utcnow()


def nova_action(cloud: Cloud, token: Token, server: Server, action: str, body: Any) -> list[str]:
    """Nova's addFloatingIp / removeFloatingIp server actions (libcloud's 1.1 driver)."""
    address = body.get("address") if isinstance(body, dict) else None
    if not isinstance(address, str):
        raise CloudError(400, f"Invalid input for field/attribute {action}. 'address' is a required property", "nova")
    fip = next((f for f in cloud.floating_ips.values()
                if f.address == address and f.project_id == token.project.id), None)
    if action == "removeFloatingIp":
        if fip is None or fip.server_id != server.id:
            raise CloudError(409, f"Floating IP {address} is not associated with instance {server.id}.", "nova")
        return associate(cloud, fip, None, None)
    if fip is None:
        raise CloudError(404, f"floating IP not found: {address}", "nova")
    fixed = body.get("fixed_address")
    choices = [a for _, a in server.addresses]
    if not choices:
        raise CloudError(400, "No nw_info cache associated with instance", "nova")
    if fixed is not None and fixed not in choices:
        raise CloudError(400, f"Specified fixed address '{fixed}' not assigned to instance", "nova")
    try:
        return associate(cloud, fip, server, fixed or choices[0])
    except CloudError as exc:
        raise CloudError(400, exc.message, "nova") from None


def _match(f: FloatingIp, params) -> bool:
    for key in FILTERS:
        if key in params and str(fip_attr(f, key)) != params[key]:
            return False
    wanted = [t for t in params.get("tags", "").split(",") if t]
    return all(t in f.tags for t in wanted)


def fip_attr(f: FloatingIp, key: str) -> Any:
    return {"floating_ip_address": f.address, "floating_network_id": f.network_id, "fixed_ip_address":
            f.fixed_address, "router_id": ROUTER if f.port_id else None}.get(key, getattr(f, key, None))


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(t, str) and 0 < len(t) <= 255 for t in value):
        raise CloudError(400, "Invalid input for tags: a list of strings of 1 to 255 characters.", "neutron",
                         kind="InvalidInput")
    return value


def _get(cloud: Cloud, token: Token, fip_id: str, style: str = "neutron") -> FloatingIp:
    fip = cloud.floating_ips.get(fip_id)
    if fip is None or fip.project_id != token.project.id:
        if style == "nova":
            raise CloudError(404, f"Floating IP not found for ID {fip_id}", "nova")
        raise CloudError(404, f"Floating IP {fip_id} could not be found", "neutron", kind="FloatingIPNotFound")
    return fip


def make_router(cloud: Cloud, life: Lifecycle, auth) -> APIRouter:
    router = APIRouter()

    def moved(server_ids: list[str]) -> None:
        for sid in server_ids:
            life.addresses_changed(sid)

    @router.get(NEUTRON)
    async def list_fips(request: Request, token: Token = auth):
        with cloud.lock:
            return {"floatingips": [fip_view(cloud, f) for f in cloud.floating_ips.values()
                                    if f.project_id == token.project.id and _match(f, request.query_params)]}

    @router.post(NEUTRON, status_code=201)
    async def create_fip(request: Request, token: Token = auth):
        body = await json_body(request, "neutron", "floatingip")
        net_id, description = body.get("floating_network_id"), body.get("description", "")
        port = body.get("port_id")
        if not isinstance(net_id, str) or not isinstance(description, str) or len(description) > 255 \
                or not isinstance(port, (str, type(None))):
            raise CloudError(400, "Invalid input for operation: floating_network_id (a string) is required; "
                                  "description is a string of at most 255 characters.", "neutron", kind="InvalidInput")
        with cloud.lock:
            tags = _tags(body.get("tags"))
            target = find_port(cloud, token, port) if port else None
            fip = allocate(cloud, token, net_id, description, tags)
            changed = associate(cloud, fip, *target) if target else []
            view = fip_view(cloud, fip)
        moved(changed)
        return {"floatingip": view}

    @router.get(NEUTRON + "/{fip_id}")
    async def show_fip(fip_id: str, token: Token = auth):
        with cloud.lock:
            return {"floatingip": fip_view(cloud, _get(cloud, token, fip_id))}

    @router.put(NEUTRON + "/{fip_id}")
    async def update_fip(fip_id: str, request: Request, token: Token = auth):
        body = await json_body(request, "neutron", "floatingip")
        port, description = body.get("port_id"), body.get("description")
        if not isinstance(port, (str, type(None))) or not isinstance(description, (str, type(None))):
            raise CloudError(400, "Invalid input for operation: port_id and description must be strings or null.",
                             "neutron", kind="InvalidInput")
        changed: list[str] = []
        with cloud.lock:
            fip = _get(cloud, token, fip_id)
            if "port_id" in body:
                target = find_port(cloud, token, port) if port else (None, None)
                changed = associate(cloud, fip, *target)
            if description is not None:
                fip.description = description[:255]
            view = fip_view(cloud, fip)
        moved(changed)
        return {"floatingip": view}

    @router.delete(NEUTRON + "/{fip_id}", status_code=204)
    async def delete_fip(fip_id: str, token: Token = auth):
        with cloud.lock:
            changed = release(cloud, _get(cloud, token, fip_id))
        moved(changed)
        return Response(status_code=204)

    @router.put(NEUTRON + "/{fip_id}/tags/{tag}", status_code=201)
    async def add_tag(fip_id: str, tag: str, token: Token = auth):
        with cloud.lock:
            fip = _get(cloud, token, fip_id)
            if tag not in fip.tags:
                fip.tags.append(_tags([tag])[0])
        return Response(status_code=201)

    @router.put(NEUTRON + "/{fip_id}/tags")
    async def replace_tags(fip_id: str, request: Request, token: Token = auth):
        body = await json_body(request, "neutron")
        with cloud.lock:
            fip = _get(cloud, token, fip_id)
            fip.tags = list(dict.fromkeys(_tags(body.get("tags"))))
            return {"tags": list(fip.tags)}

    @router.get("/compute/v2.1/os-floating-ip-pools")
    async def nova_pools(token: Token = auth):
        return {"floating_ip_pools": [{"name": n.name} for n in cloud.networks.values() if n.external]}

    @router.get("/compute/v2.1/os-floating-ips")
    async def nova_list(token: Token = auth):
        with cloud.lock:
            return {"floating_ips": [nova_view(cloud, f) for f in cloud.floating_ips.values()
                                     if f.project_id == token.project.id]}

    @router.post("/compute/v2.1/os-floating-ips")
    async def nova_allocate(request: Request, token: Token = auth):
        body = await json_body(request, "nova")
        pools = [n for n in cloud.networks.values() if n.external]
        name = body.get("pool")
        pool = next((n for n in pools if name is None or n.name == name), None)
        if pool is None:
            raise CloudError(404, "Floating IP pool not found.", "nova")
        with cloud.lock:
            try:
                fip = allocate(cloud, token, pool.id, "", [])
            except CloudError as exc:
                if exc.kind == "OverQuota":
                    raise CloudError(403, "Maximum number of floating IPs exceeded", "nova", kind="forbidden") \
                        from None
                raise CloudError(404, f"No more floating IPs in pool {pool.name}.", "nova") from None
            return {"floating_ip": nova_view(cloud, fip)}

    @router.get("/compute/v2.1/os-floating-ips/{fip_id}")
    async def nova_show(fip_id: str, token: Token = auth):
        with cloud.lock:
            return {"floating_ip": nova_view(cloud, _get(cloud, token, fip_id, "nova"))}

    @router.delete("/compute/v2.1/os-floating-ips/{fip_id}", status_code=202)
    async def nova_release(fip_id: str, token: Token = auth):
        with cloud.lock:
            changed = release(cloud, _get(cloud, token, fip_id, "nova"))
        moved(changed)
        return Response(status_code=202)

    return router


def server_action(cloud: Cloud, life: Lifecycle, token: Token, server_id: str, action: str, body: Any) -> None:
    """What compute's action route calls for addFloatingIp / removeFloatingIp."""
    with cloud.lock:
        changed = nova_action(cloud, token, get_server(cloud, token, server_id), action, body)
    for sid in changed:
        life.addresses_changed(sid)
