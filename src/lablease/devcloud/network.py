"""Neutron v2.0 as far as clients need it: networks, subnets, ports of servers, security groups."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from fastapi import APIRouter, Request

from lablease.devcloud.errors import CloudError
from lablease.devcloud.identity import base_url
from lablease.devcloud.state import Cloud, Network, SecurityGroup, Token

STAMP = "2024-01-01T00:00:00Z"


def network_view(n: Network, project_id: str) -> dict[str, Any]:
    return {"id": n.id, "name": n.name, "status": "ACTIVE", "admin_state_up": True, "shared": True,
            "subnets": [n.subnet_id], "router:external": n.public or n.external, "tenant_id": project_id,
            "project_id": project_id, "mtu": 1500, "port_security_enabled": True, "is_default": False,
            "availability_zones": ["nova"], "description": "", "tags": [], "created_at": STAMP,
            "updated_at": STAMP, "revision_number": 1}  # (provider:* attributes: only admins see them)


def subnet_view(n: Network, project_id: str) -> dict[str, Any]:
    net = ipaddress.ip_network(n.cidr)
    return {"id": n.subnet_id, "name": f"{n.name}-subnet", "network_id": n.id, "cidr": n.cidr,
            "ip_version": 4, "enable_dhcp": True, "gateway_ip": str(net.network_address + 1),
            "allocation_pools": [{"start": str(net.network_address + 2), "end": str(net.broadcast_address - 1)}],
            "dns_nameservers": [], "host_routes": [], "tenant_id": project_id, "project_id": project_id,
            "description": "", "tags": [], "created_at": STAMP, "updated_at": STAMP, "revision_number": 0}


def sg_view(g: SecurityGroup) -> dict[str, Any]:
    rules = [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{g.id}/{d}")), "direction": d, "ethertype": "IPv4",
              "protocol": None, "port_range_min": None, "port_range_max": None, "remote_ip_prefix": None,
              "remote_group_id": g.id if d == "ingress" else None, "security_group_id": g.id,
              "tenant_id": g.project_id, "project_id": g.project_id, "description": ""}
             for d in ("egress", "ingress")]
    return {"id": g.id, "name": g.name, "description": g.description, "tenant_id": g.project_id,
            "project_id": g.project_id, "security_group_rules": rules + list(g.rules), "stateful": True,
            "tags": [], "created_at": STAMP, "updated_at": STAMP, "revision_number": 1}


def make_router(cloud: Cloud, auth) -> APIRouter:
    router = APIRouter(prefix="/network")

    @router.get("")
    @router.get("/")
    async def versions(request: Request):
        return {"versions": [{"id": "v2.0", "status": "CURRENT",
                              "links": [{"rel": "self", "href": f"{base_url(request)}/network/v2.0/"}]}]}

    @router.get("/v2.0/networks")
    async def list_networks(request: Request, token: Token = auth):
        q = request.query_params
        views = [network_view(n, token.project.id) for n in cloud.networks.values()]
        for key in ("name", "id", "router:external", "status", "shared"):
            if key in q:  # Neutron compares booleans by their text (True, true)
                views = [v for v in views if str(v[key]).lower() == q[key].lower()]
        fields = q.getlist("fields")
        if fields:  # Neutron answers only the fields asked for (libcloud's floating IP pools ask for id and name)
            views = [{k: v for k, v in view.items() if k in fields} for view in views]
        return {"networks": views}

    @router.get("/v2.0/networks/{network_id}")
    async def show_network(network_id: str, token: Token = auth):
        net = cloud.networks.get(network_id)
        if net is None:
            raise CloudError(404, f"Network {network_id} could not be found.", "neutron", kind="NetworkNotFound")
        return {"network": network_view(net, token.project.id)}

    @router.get("/v2.0/subnets")
    async def list_subnets(token: Token = auth):
        return {"subnets": [subnet_view(n, token.project.id) for n in cloud.networks.values()]}

    @router.get("/v2.0/subnets/{subnet_id}")
    async def show_subnet(subnet_id: str, token: Token = auth):
        net = next((n for n in cloud.networks.values() if n.subnet_id == subnet_id), None)
        if net is None:
            raise CloudError(404, f"Subnet {subnet_id} could not be found.", "neutron", kind="SubnetNotFound")
        return {"subnet": subnet_view(net, token.project.id)}

    @router.get("/v2.0/ports")
    async def list_ports(request: Request, token: Token = auth):
        device = request.query_params.get("device_id")
        with cloud.lock:
            ports = [p for p in _ports(cloud, token) if device is None or p["device_id"] == device]
        return {"ports": ports}

    @router.get("/v2.0/ports/{port_id}")
    async def show_port(port_id: str, token: Token = auth):
        with cloud.lock:
            port = next((p for p in _ports(cloud, token) if p["id"] == port_id), None)
        if port is None:
            raise CloudError(404, f"Port {port_id} could not be found.", "neutron", kind="PortNotFound")
        return {"port": port}

    @router.get("/v2.0/security-groups")
    async def list_security_groups(request: Request, token: Token = auth):
        with cloud.lock:
            groups = [g for g in cloud.security_groups.values() if g.project_id == token.project.id]
        if "name" in request.query_params:
            groups = [g for g in groups if g.name == request.query_params["name"]]
        return {"security_groups": [sg_view(g) for g in groups]}

    @router.get("/v2.0/security-groups/{group_id}")
    async def show_security_group(group_id: str, token: Token = auth):
        group = cloud.security_groups.get(group_id)
        if group is None or group.project_id != token.project.id:
            raise CloudError(404, f"Security group {group_id} does not exist", "neutron",
                             kind="SecurityGroupNotFound")
        return {"security_group": sg_view(group)}

    return router


def server_ports(cloud: Cloud, token: Token, server_id: str) -> list[dict[str, Any]]:
    return [p for p in _ports(cloud, token) if p["device_id"] == server_id]


def _ports(cloud: Cloud, token: Token) -> list[dict[str, Any]]:
    by_name = {n.name: n for n in cloud.networks.values()}
    ports = []
    for s in cloud.servers.values():
        if s.project_id != token.project.id:
            continue
        for net_name, addr in s.addresses:
            net = by_name[net_name]
            groups = [g.id for g in cloud.security_groups.values()
                      if g.project_id == s.project_id and g.name in s.security_groups]
            ports.append({"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{s.id}/{addr}")), "name": "",
                          "network_id": net.id, "device_id": s.id, "device_owner": "compute:nova",
                          "status": "ACTIVE" if s.status == "ACTIVE" else "DOWN", "admin_state_up": True,
                          "mac_address": "fa:16:3e:" + ":".join(f"{int(x):02x}" for x in addr.split(".")[1:]),
                          "fixed_ips": [{"subnet_id": net.subnet_id, "ip_address": addr}],
                          "security_groups": groups, "tenant_id": s.project_id, "project_id": s.project_id,
                          "binding:vnic_type": "normal", "allowed_address_pairs": [], "description": "",
                          "port_security_enabled": True, "tags": [], "created_at": STAMP, "updated_at": STAMP,
                          "revision_number": 1})
    return ports
