"""Nova 2.1's views of devcloud's state: servers, flavors and images as Nova shows them, and the
server listing's filters (name is a regex in Nova, so it is checked before it runs)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request

from lablease.devcloud.errors import CloudError
from lablease.devcloud.identity import base_url
from lablease.devcloud.paging import page
from lablease.devcloud.state import Cloud, Server, Token, iso

PREFIX = "/compute/v2.1"
NOT_BLANK = r"[^ \t\n\r\f\v]"  # a name must hold something besides spaces


def resource_links(request: Request, kind: str, rid: str) -> list[dict[str, str]]:
    base = base_url(request)
    return [{"rel": "self", "href": f"{base}{PREFIX}/{kind}/{rid}"},
            {"rel": "bookmark", "href": f"{base}/compute/{kind}/{rid}"}]


def flavor_view(request: Request, f) -> dict[str, Any]:
    return {"id": f.id, "name": f.name, "ram": f.ram, "disk": f.disk, "vcpus": f.vcpus, "swap": "",
            "OS-FLV-EXT-DATA:ephemeral": 0, "OS-FLV-DISABLED:disabled": False, "rxtx_factor": 1.0,
            "os-flavor-access:is_public": True, "links": resource_links(request, "flavors", f.id)}


def image_view(request: Request, i) -> dict[str, Any]:
    return {"id": i.id, "name": i.name, "status": "ACTIVE", "progress": 100, "created": "2024-01-01T00:00:00Z",
            "updated": "2024-01-01T00:00:00Z", "minDisk": i.min_disk, "minRam": i.min_ram,
            "metadata": {k: v for k, v in (("os_distro", i.os_distro), ("os_version", i.os_version)) if v},
            "OS-EXT-IMG-SIZE:size": 2361393152, "links": resource_links(request, "images", i.id)}


def mac_of(addr: str) -> str:
    """The MAC address of the port that holds ``addr`` (derived from it, as devcloud's ports are)."""
    return "fa:16:3e:" + ":".join(f"{int(x):02x}" for x in addr.split(".")[1:]) if addr.count(".") == 3 else ""


def server_view(cloud: Cloud, request: Request, s: Server) -> dict[str, Any]:
    nets = {n.name: n for n in cloud.networks.values()}
    addresses: dict[str, list[dict[str, Any]]] = {}
    for net_name, addr in s.addresses:
        public = nets[net_name].public if net_name in nets else False
        addresses.setdefault(net_name, []).append(
            {"version": 4, "addr": addr, "OS-EXT-IPS:type": "floating" if public else "fixed",
             "OS-EXT-IPS-MAC:mac_addr": mac_of(addr)})
        # Nova lists a floating IP under the network of the port it points at, right after that port's address.
        addresses[net_name] += [{"version": 4, "addr": f.address, "OS-EXT-IPS:type": "floating",
                                 "OS-EXT-IPS-MAC:mac_addr": mac_of(addr)} for f in cloud.floating_ips.values()
                                if f.server_id == s.id and f.fixed_address == addr]
    vol_ids = [v.id for v in cloud.volumes.values() if any(a.server_id == s.id for a in v.attachments)]
    view: dict[str, Any] = {
        "id": s.id, "name": s.name, "status": s.status, "tenant_id": s.project_id, "user_id": s.user_id,
        "metadata": dict(s.metadata), "hostId": "" if s.status == "BUILD" else f"devcloud-{s.project_id[:8]}",
        # A server booted from a volume has no image: Nova shows an empty string.
        "image": {"id": s.image_id, "links": resource_links(request, "images", s.image_id)[1:]} if s.image_id else "",
        "flavor": {"id": s.flavor_id, "links": resource_links(request, "flavors", s.flavor_id)[1:]},
        "created": iso(s.created), "updated": iso(s.updated), "addresses": addresses,
        "accessIPv4": "", "accessIPv6": "", "links": resource_links(request, "servers", s.id),
        "key_name": s.key_name, "config_drive": "True" if s.config_drive else "", "progress": 0 if s.status == "BUILD" else 100,
        "OS-DCF:diskConfig": "MANUAL", "OS-EXT-AZ:availability_zone": s.availability_zone,
        "OS-EXT-STS:task_state": s.task_state, "OS-EXT-STS:vm_state": VM_STATE.get(s.status, "active"),
        "OS-EXT-STS:power_state": 1 if s.status == "ACTIVE" else 0,
        "OS-SRV-USG:launched_at": None if s.status == "BUILD" else iso(s.updated).replace("Z", ".000000"),
        "OS-SRV-USG:terminated_at": None,
        "os-extended-volumes:volumes_attached": [{"id": v} for v in vol_ids],
        "security_groups": [{"name": n} for n in s.security_groups],
    }
    if s.fault:
        view["fault"] = {"code": s.fault["code"], "message": s.fault["message"], "created": iso(s.fault["created"])}
    return view


VM_STATE = {"BUILD": "building", "ACTIVE": "active", "ERROR": "error", "SHUTOFF": "stopped"}


def get_server(cloud: Cloud, token: Token, server_id: str) -> Server:
    server = cloud.servers.get(server_id)
    if server is None or server.project_id != token.project.id:
        raise CloudError(404, f"Instance {server_id} could not be found.", "nova")
    return server


def filtered_servers(cloud: Cloud, request: Request, token: Token) -> tuple[list[Server], str | None]:
    q = request.query_params
    servers = [s for s in cloud.servers.values() if s.project_id == token.project.id]
    servers.sort(key=lambda s: (s.created, s.id), reverse=True)
    if "name" in q:
        name = _filter_regex(q["name"])
        servers = [s for s in servers if name.search(s.name)]
    if "ip" in q:
        ip = _filter_regex(q["ip"])
        floating = [(f.server_id, f.address) for f in cloud.floating_ips.values() if f.server_id]
        servers = [s for s in servers if any(ip.search(a) for a in [a for _, a in s.addresses]
                                             + [a for sid, a in floating if sid == s.id])]
    if "status" in q:
        servers = [s for s in servers if s.status == q["status"].upper()]
    for key, attr in (("image", "image_id"), ("flavor", "flavor_id")):
        if key in q:
            servers = [s for s in servers if getattr(s, attr) == q[key].rstrip("/").rsplit("/", 1)[-1]]
    return page(servers, request, cloud.config.page_size, lambda s: s.id, "nova")


def _filter_regex(pattern: str) -> re.Pattern[str]:
    """Nova filters servers by name and address with a regular expression. devcloud takes those that finish in
    milliseconds on a 255-character name: at most 255 characters, no group or alternation, at most two
    repetitions (``^web-.*``, ``db[0-9]+$``); ``(a*)*b`` or ``a*a*a*b`` would hold the cloud for hours."""
    if len(pattern) > 255 or "(" in pattern or "|" in pattern or _repetitions(pattern) > 2:
        raise CloudError(400, "Invalid regular expression in filter: devcloud takes at most 255 characters, "
                              "no groups or alternation and at most two repetitions.", "nova")
    try:
        return re.compile(pattern)
    except (re.error, OverflowError):  # OverflowError: a repetition count like {99999999999}
        raise CloudError(400, "Invalid regular expression in filter.", "nova") from None


def _repetitions(pattern: str) -> int:
    """How many of ``*``, ``+``, ``?``, ``{`` act as quantifiers (outside escapes and character classes)."""
    count, i, in_class = 0, 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            i += 2 if pattern[i + 1:i + 2] == "]" else 1  # "[]...]": the first ] is a member
            continue
        elif char in "*+?{":
            count += 1
        i += 1
    return count
