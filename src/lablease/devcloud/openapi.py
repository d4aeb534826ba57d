"""devcloud's OpenAPI document (/devcloud/openapi.json): every answer each route gives, in its service's words.

The handlers read their JSON bodies themselves (as OpenStack's services do), so FastAPI knows neither the
bodies nor the errors; this module states them, for one cloud (its flavors, images, networks and security
groups are what a server may name). Every route may also answer what the edge (devcloud.edge) refuses
(400, 413), and, when faults are configured, what they inject (413/429 rate limits, 500).
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from lablease.devcloud.bootvolume import FALSE, TRUE
from lablease.devcloud.compute_views import NOT_BLANK
from lablease.devcloud.errors import Style, style_for_path
from lablease.devcloud.keypairs import PUBLIC_KEY
from lablease.devcloud.state import Cloud
from lablease.devcloud.volumes import SIZE_TEXT

Schema = dict[str, Any]
CONSOLE_ACTION = "POST /compute/v2.1/servers/{server_id}/action"
CONSOLE_OUTPUT: Schema = {"type": "object", "required": ["output"], "properties": {"output": {"type": "string"}}}
OBJECT: Schema = {"type": "object"}
ANY: Schema = {}
STRING_255: Schema = {"type": "string", "maxLength": 255}
BASE64 = r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"

# Each operation's success (status, the answer's top-level key) and the errors its handler raises.
NOVA_AUTH = (401,)
OPERATIONS: dict[str, tuple[int, str | None, tuple[int, ...]]] = {
    "GET /": (300, "versions", ()),
    "GET /v3": (200, "version", ()),
    "GET /v2.0": (200, "version", ()),
    "POST /v2.0/tokens": (200, "access", (400, 401)),
    "POST /v2.0/tokens/v2.0/tokens": (200, "access", (400, 401)),
    "POST /v3/auth/tokens": (201, "token", (400, 401)),
    "POST /v3/auth/tokens/v3/auth/tokens": (201, "token", (400, 401)),
    "GET /v3/auth/tokens": (200, "token", (401, 404)),
    "GET /compute/v2.1/": (200, "version", ()),
    "GET /compute/v2.1": (200, "version", ()),
    "GET /compute/v2.1/flavors": (200, "flavors", ()),
    "GET /compute/v2.1/flavors/detail": (200, "flavors", ()),
    "GET /compute/v2.1/flavors/{flavor_id}": (200, "flavor", (404,)),
    "GET /compute/v2.1/images": (200, "images", ()),
    "GET /compute/v2.1/images/detail": (200, "images", ()),
    "GET /compute/v2.1/images/{image_id}": (200, "image", (404,)),
    "POST /compute/v2.1/servers": (202, "server", (403, 409)),
    "GET /compute/v2.1/servers": (200, "servers", ()),
    "GET /compute/v2.1/servers/detail": (200, "servers", ()),
    "GET /compute/v2.1/servers/{server_id}": (200, "server", (404,)),
    "DELETE /compute/v2.1/servers/{server_id}": (204, None, (404,)),
    "GET /compute/v2.1/servers/{server_id}/metadata": (200, "metadata", (404,)),
    "PUT /compute/v2.1/servers/{server_id}/metadata": (200, "metadata", (404,)),
    "POST /compute/v2.1/servers/{server_id}/metadata": (200, "metadata", (404,)),
    "GET /compute/v2.1/servers/{server_id}/metadata/{key}": (200, "meta", (404,)),
    "PUT /compute/v2.1/servers/{server_id}/metadata/{key}": (200, "meta", (404,)),
    "DELETE /compute/v2.1/servers/{server_id}/metadata/{key}": (204, None, (404,)),
    "POST /compute/v2.1/servers/{server_id}/action": (202, None, (404, 409)),
    "GET /compute/v2.1/os-keypairs": (200, "keypairs", ()),
    "POST /compute/v2.1/os-keypairs": (200, "keypair", (403, 409)),
    "GET /compute/v2.1/os-keypairs/{name}": (200, "keypair", (404,)),
    "DELETE /compute/v2.1/os-keypairs/{name}": (202, None, (404,)),
    "GET /compute/v2.1/os-volumes": (200, "volumes", ()),
    "GET /compute/v2.1/os-volumes/detail": (200, "volumes", ()),
    "POST /compute/v2.1/os-volumes": (200, "volume", (413,)),
    "GET /compute/v2.1/os-volumes/{volume_id}": (200, "volume", (404,)),
    "DELETE /compute/v2.1/os-volumes/{volume_id}": (202, None, (404,)),
    "GET /compute/v2.1/servers/{server_id}/os-volume_attachments": (200, "volumeAttachments", (404,)),
    "POST /compute/v2.1/servers/{server_id}/os-volume_attachments": (200, "volumeAttachment", (404, 409)),
    "GET /compute/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}": (200, "volumeAttachment", (404,)),
    "DELETE /compute/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}": (202, None, (404, 409)),
    "GET /compute/v2.1/os-security-groups": (200, "security_groups", ()),
    "GET /compute/v2.1/servers/{server_id}/os-security-groups": (200, "security_groups", (404,)),
    "GET /compute/v2.1/servers/{server_id}/os-interface": (200, "interfaceAttachments", (404,)),
    "GET /compute/v2.1/os-networks": (200, "networks", ()),
    "GET /compute/v2.1/os-availability-zone": (200, "availabilityZoneInfo", ()),
    "GET /compute/v2.1/limits": (200, "limits", ()),
    "GET /volume/": (300, "versions", ()),
    "GET /image/": (200, "versions", ()),
    "GET /image": (200, "versions", ()),
    "GET /image/v2/images": (200, "images", ()),
    "GET /image/v2/images/{image_id}": (200, "id", (404,)),
    "GET /network/": (200, "versions", ()),
    "GET /network": (200, "versions", ()),
    "GET /network/v2.0/networks": (200, "networks", ()),
    "GET /network/v2.0/networks/{network_id}": (200, "network", (404,)),
    "GET /network/v2.0/subnets": (200, "subnets", ()),
    "GET /network/v2.0/subnets/{subnet_id}": (200, "subnet", (404,)),
    "GET /network/v2.0/ports": (200, "ports", ()),
    "GET /network/v2.0/ports/{port_id}": (200, "port", (404,)),
    "GET /network/v2.0/security-groups": (200, "security_groups", ()),
    "GET /network/v2.0/security-groups/{group_id}": (200, "security_group", (404,)),
    "GET /network/v2.0/floatingips": (200, "floatingips", ()),
    "POST /network/v2.0/floatingips": (201, "floatingip", (404, 409)),
    "GET /network/v2.0/floatingips/{fip_id}": (200, "floatingip", (404,)),
    "PUT /network/v2.0/floatingips/{fip_id}": (200, "floatingip", (404, 409)),
    "DELETE /network/v2.0/floatingips/{fip_id}": (204, None, (404,)),
    "PUT /network/v2.0/floatingips/{fip_id}/tags/{tag}": (201, None, (404,)),
    "PUT /network/v2.0/floatingips/{fip_id}/tags": (200, "tags", (404,)),
    "GET /compute/v2.1/os-floating-ip-pools": (200, "floating_ip_pools", ()),
    "GET /compute/v2.1/os-floating-ips": (200, "floating_ips", ()),
    "POST /compute/v2.1/os-floating-ips": (200, "floating_ip", (403, 404)),
    "GET /compute/v2.1/os-floating-ips/{fip_id}": (200, "floating_ip", (404,)),
    "DELETE /compute/v2.1/os-floating-ips/{fip_id}": (202, None, (404,)),
    "GET /devcloud/admin/health": (200, "status", ()),
    "GET /devcloud/admin/resources": (200, "servers", ()),
    "GET /devcloud/admin/requests": (200, "counts", ()),
    "DELETE /devcloud/admin/requests": (204, None, ()),
    "GET /devcloud/admin/faults": (200, "seed", ()),
    "PUT /devcloud/admin/faults": (200, "seed", ()),
    "DELETE /devcloud/admin/faults": (204, None, ()),
    "DELETE /devcloud/admin/tokens": (204, None, ()),
    "GET /devcloud/admin/servers/{server_id}": (200, "id", (404,)),
}
for _version in ("v3", "v2"):
    OPERATIONS.update({
        f"GET /volume/{_version}/": (200, "versions", ()),
        f"GET /volume/{_version}/{{project_id}}": (200, "versions", ()),
        f"GET /volume/{_version}/{{project_id}}/volumes": (200, "volumes", (403,)),
        f"GET /volume/{_version}/{{project_id}}/volumes/detail": (200, "volumes", (403,)),
        f"POST /volume/{_version}/{{project_id}}/volumes": (202, "volume", (403, 413)),
        f"GET /volume/{_version}/{{project_id}}/volumes/{{volume_id}}": (200, "volume", (403, 404)),
        f"DELETE /volume/{_version}/{{project_id}}/volumes/{{volume_id}}": (202, None, (403, 404)),
        f"GET /volume/{_version}/{{project_id}}/limits": (200, "limits", (403,)),
        f"GET /volume/{_version}/{{project_id}}/types": (200, "volume_types", ()),
    })

# What the stateful phase follows from one answer to the next request: the ids (a keypair's name).
_ID: Schema = {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}
IDENTIFIED: dict[str, Schema] = {
    **dict.fromkeys(["server", "volume", "flavor", "image", "network", "subnet", "port", "security_group",
                     "floatingip", "floating_ip"], _ID),
    "keypair": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
    "volumeAttachment": {"type": "object", "required": ["volumeId"], "properties": {"volumeId": {"type": "string"}}},
}

MEANING = {
    300: "the API versions (300 Multiple Choices, as OpenStack answers)",
    400: "a malformed or invalid request (a body that is not the JSON object asked for, a field of the wrong "
         "type or value, a name that is not there); and the edge's refusals: JSON nested deeper than 32 "
         "levels, text with NUL or an unpaired surrogate in the body, path or query, an encoded slash",
    401: "no token, an unknown or expired one (`X-Auth-Token`), or wrong credentials",
    403: "a quota is used up, the project in the path is not the token's, a zero-disk flavor without a boot "
         "volume, or a server on an external network",
    404: "no such resource",
    409: "the resource is in a state that does not allow it (a floating IP quota or pool used up, a fixed address "
         "that has a floating IP already)",
    413: "the body is over 112 KiB (oslo.middleware's limit); a volume quota is used up; or a rate-limit fault",
    429: "a rate-limit fault (only when faults are configured)",
    500: "an injected error (only when faults are configured)",
}
# What every guarded route may answer besides its own errors: the edge's 400/413 and the faults.
GUARDED = (400, 413, 429, 500)


def fault_schema(style: Style) -> Schema:
    """The error body each service sends (devcloud.errors.error_body)."""
    inner = {"type": "object", "required": ["code", "message"],
             "properties": {"code": {"type": "integer"}, "message": {"type": "string"}}}
    if style in ("nova", "cinder"):
        return {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": inner}
    if style == "neutron":
        return {"type": "object", "required": ["NeutronError"], "properties": {"NeutronError": {
            "type": "object", "required": ["type", "message", "detail"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}}
    if style == "keystone":
        return {"type": "object", "required": ["error"], "properties": {"error": {
            **inner, "required": ["code", "title", "message"]}}}
    return {"type": "object", "required": ["code", "title", "message"],
            "properties": {"code": {"type": "integer"}, "title": {"type": "string"}, "message": {"type": "string"}}}


def _fault(status: int, style: Style) -> Schema:
    if status == 401:
        return fault_schema("keystone")  # keystonemiddleware answers for every service
    if status == 413 and style != "nova":
        return {"anyOf": [fault_schema(style), fault_schema("nova")]}  # a rate-limit fault answers as Nova
    return fault_schema(style)


NO_NUL = r"^[^\x00]*$"
JSON_TEXT: Schema = {
    "description": "any JSON value whose text holds no NUL (nor an unpaired surrogate)",
    "anyOf": [{"type": "string", "pattern": NO_NUL}, {"type": ["number", "boolean", "null"]},
              {"type": "array", "items": {"$ref": "#/components/schemas/JsonText"}},
              {"type": "object", "propertyNames": {"pattern": NO_NUL},
               "additionalProperties": {"$ref": "#/components/schemas/JsonText"}}]}


def with_text_rule(schema: Schema) -> Schema:
    """``schema`` with the edge's text rule stated everywhere: strings, property names, unknown properties."""
    if schema == ANY:
        return {"$ref": "#/components/schemas/JsonText"}
    out = {key: value for key, value in schema.items()}
    for key in ("anyOf", "allOf", "oneOf"):
        if key in out:
            out[key] = [with_text_rule(s) for s in out[key]]
    if "items" in out:
        out["items"] = with_text_rule(out["items"])
    if "properties" in out:
        out["properties"] = {k: with_text_rule(v) for k, v in out["properties"].items()}
    types = out.get("type")
    if types == "object" or (isinstance(types, list) and "object" in types):
        out["propertyNames"] = {**out.get("propertyNames", {}), "allOf": [{"pattern": NO_NUL}]}
        out["additionalProperties"] = with_text_rule(out.get("additionalProperties", ANY))
    if types == "string" or (isinstance(types, list) and "string" in types):
        out = {"allOf": [out, {"pattern": NO_NUL}]} if "pattern" in out else {**out, "pattern": NO_NUL}
    return out


def _escape(text: str) -> str:
    return re.sub(r"([.^$*+?()\[\]{}|\\/])", r"\\\1", text)


def request_bodies(cloud: Cloud) -> dict[str, Schema]:
    """The JSON bodies of the routes that take one; what a field may name is this cloud's."""
    cfg = cloud.config
    flavor_ids = [f.id for f in cfg.flavors]
    reference = r"^([\s\S]*/)?(" + "|".join(_escape(i) for i in flavor_ids) + r")/*$"
    image_ref = r"^([\s\S]*/)?(" + "|".join(_escape(i.id) for i in cfg.images) + r")/*$"
    numeric = [int(i) for i in flavor_ids if re.fullmatch(r"[1-9][0-9]{0,8}", i)]
    groups = sorted({g.name for g in cloud.security_groups.values()} | set(cloud.security_groups))
    metadata = {"type": "object", "propertyNames": {"minLength": 1, "maxLength": 255},
                "additionalProperties": STRING_255}
    server = {
        "type": "object", "required": ["name", "flavorRef"],
        "anyOf": [{"required": ["imageRef"]}, {"required": ["block_device_mapping_v2"]}],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": NOT_BLANK},
            "flavorRef": {"anyOf": [{"type": "string", "pattern": reference}, {"type": "integer", "enum": numeric}]},
            "imageRef": {"anyOf": [{"type": "string", "pattern": image_ref}, {"const": ""}],
                         "description": "an image; empty or absent when a block device mapping boots a volume"},
            "block_device_mapping_v2": {"anyOf": [{"type": "null"}, {"type": "array", "items": {
                "type": "object", "required": ["source_type"], "properties": {
                    "source_type": {"enum": ["image", "volume", "blank"]},
                    "destination_type": {"enum": ["volume", "local"]}},
                "description": "boot_index 0 with destination_type volume boots from a volume: a new one of "
                               "volume_size GB from the image uuid, or the available volume uuid (400 otherwise); "
                               "other mappings only blank local disks"}}]},
            "availability_zone": {"enum": [*cfg.availability_zones, None]},
            "config_drive": {"anyOf": [{"type": "boolean"}, {"enum": sorted(TRUE | FALSE)}]},
            "user_data": {"anyOf": [{"type": "string", "maxLength": 65535, "pattern": BASE64}, {"type": "null"}]},
            "metadata": {"anyOf": [metadata, {"type": "null"}]},
            "key_name": {"anyOf": [{"type": "string", "description": "an existing keypair's name"},
                                   {"type": "null"}]},
            "security_groups": {"anyOf": [{"type": "array", "items": {
                "type": "object", "required": ["name"], "properties": {"name": {"enum": groups}}}}, {"type": "null"}]},
            "networks": {"anyOf": [{"enum": ["auto", "none", None]}, {"type": "array", "items": {
                "type": "object", "required": ["uuid"], "properties": {"uuid": {"enum": sorted(cloud.networks)}}}}]},
        }}
    named = {"anyOf": [STRING_255, {"type": "null"}]}
    volume = {"type": "object", "required": ["size"], "properties": {
        "size": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": f"^{SIZE_TEXT}$"}]},
        "name": named, "display_name": named, "description": ANY, "volume_type": ANY,
        "availability_zone": {"enum": [*cfg.availability_zones, None]},
        "metadata": {"anyOf": [{"type": "object", "additionalProperties": {"type": "string"}}, {"type": "null"}]}}}
    keypair = {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": NOT_BLANK},
        "public_key": {"anyOf": [{"type": "string", "pattern": PUBLIC_KEY}, {"type": "null"}],
                       "description": "an OpenSSH public key; absent or null: Nova makes a key pair"}}}
    attachment = {"type": "object", "required": ["volumeId"], "properties": {
        "volumeId": {"type": "string", "description": "an available volume's id"},
        "device": {"anyOf": [{"type": "string", "pattern": "^/dev/"}, {"type": "null"}]}}}
    address = {"type": "object", "required": ["address"], "properties": {"address": {"type": "string"}}}
    action = {"type": "object", "minProperties": 1, "maxProperties": 1,
              "propertyNames": {"enum": ["reboot", "os-stop", "os-start", "addFloatingIp", "removeFloatingIp",
                                         "os-getConsoleOutput"]},
              "properties": {"addFloatingIp": address, "removeFloatingIp": address, "os-getConsoleOutput": {
                  "type": "object", "properties": {"length": {
                      "anyOf": [{"type": "integer", "minimum": -1}, {"type": "null"}],
                      "description": "the last N lines; -1 or null: the whole log"}}}}}
    fip = {"type": "object", "properties": {
        "port_id": {"type": ["string", "null"], "description": "a port of one of the project's servers (404 else)"},
        "description": {"type": ["string", "null"], "maxLength": 255}}}
    tags = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 255}}
    new_fip = {"type": "object", "required": ["floating_network_id"], "properties": {
        **fip["properties"], "description": {"type": "string", "maxLength": 255}, "tags": {"anyOf": [tags, {"type": "null"}]},
        "floating_network_id": {"type": "string", "description": "an external network (400 for another network)"}}}
    v2_auth = {"type": "object", "required": ["auth"], "properties": {"auth": {
        "type": "object", "required": ["passwordCredentials"], "properties": {
            "passwordCredentials": {"type": "object", "required": ["username", "password"]},
            "tenantName": {"type": ["string", "null"]}, "tenantId": {"type": ["string", "null"]}}}}}
    # Keystone: a user named by name needs its domain, a project named by name too (400 without; a wrong one 401)
    named_in_domain = {"required": ["domain"], "properties": {"domain": {"type": "object", "minProperties": 1}}}
    v3_user = {"type": "object", "anyOf": [{"required": ["id"]}, named_in_domain]}
    v3_project = {"type": "object", "anyOf": [
        {"required": ["id"], "properties": {"id": {"type": "string", "minLength": 1}}},
        {"required": ["name", "domain"], "properties": {"name": {"type": "string", "minLength": 1},
                                                        "domain": {"type": "object", "minProperties": 1}}}]}
    v3_auth = {"type": "object", "required": ["auth"], "properties": {"auth": {
        "type": "object", "required": ["identity"], "properties": {
            "identity": {"type": "object", "required": ["methods", "password"], "properties": {
                "methods": {"type": "array", "contains": {"const": "password"}},
                "password": {"type": "object", "required": ["user"], "properties": {"user": v3_user}}}},
            "scope": {"type": "object", "properties": {"project": v3_project, "domain": {"type": "object"}}}}}}}

    def wrapped(key: str, inner: Schema) -> Schema:
        return {"type": "object", "required": [key], "properties": {key: inner}}

    bodies = {
        "POST /compute/v2.1/servers": wrapped("server", server),
        "POST /compute/v2.1/os-keypairs": wrapped("keypair", keypair),
        "POST /compute/v2.1/os-volumes": wrapped("volume", volume),
        "POST /compute/v2.1/servers/{server_id}/os-volume_attachments": wrapped("volumeAttachment", attachment),
        "PUT /compute/v2.1/servers/{server_id}/metadata": wrapped("metadata", metadata),
        "POST /compute/v2.1/servers/{server_id}/metadata": wrapped("metadata", metadata),
        "PUT /compute/v2.1/servers/{server_id}/metadata/{key}": wrapped("meta", {
            **metadata, "minProperties": 1, "maxProperties": 1, "description": "one item, named as the path's key"}),
        "POST /compute/v2.1/servers/{server_id}/action": action,
        "POST /v2.0/tokens": v2_auth, "POST /v2.0/tokens/v2.0/tokens": v2_auth,
        "POST /v3/auth/tokens": v3_auth, "POST /v3/auth/tokens/v3/auth/tokens": v3_auth,
        "PUT /devcloud/admin/faults": {"type": "object", "description": "devcloud's `faults:` config section"},
        "POST /network/v2.0/floatingips": wrapped("floatingip", new_fip),
        "PUT /network/v2.0/floatingips/{fip_id}": wrapped("floatingip", fip),
        "PUT /network/v2.0/floatingips/{fip_id}/tags": wrapped("tags", tags),
        "POST /compute/v2.1/os-floating-ips": {"type": "object", "properties": {
            "pool": {"type": ["string", "null"], "description": "a pool's name (404 else); absent: the first"}}},
    }
    for version in ("v3", "v2"):
        bodies[f"POST /volume/{version}/{{project_id}}/volumes"] = wrapped("volume", volume)
    return bodies


def document(app: FastAPI, cloud: Cloud, authenticated: set[str]) -> dict[str, Any]:
    """The OpenAPI document of ``app``; ``authenticated`` names the operations that need a token."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate Operation ID")
        schema = get_openapi(title=app.title, version="1", routes=app.routes,
                             description="devcloud: enough of Keystone, Nova, Cinder, Glance and Neutron for "
                                         "libcloud and openstacksdk. Errors are each service's own JSON.")
    bodies = request_bodies(cloud)
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            status, key, errors = OPERATIONS[label]
            style = style_for_path(path)
            codes = set(errors) | ({400, 413} if path.startswith("/devcloud/admin") else set(GUARDED))
            if label in bodies:
                codes.add(400)
            if label == "GET /v3/auth/tokens":  # validates another token: X-Subject-Token (absent: 404, no such token)
                authenticated = authenticated | {label}
                operation["parameters"] = [{"name": "X-Subject-Token", "in": "header", "required": False,
                                            "schema": {"type": "string"}}]
            if label in authenticated:
                codes.add(401)
                operation["security"] = [{"keystoneToken": []}]
            ok: Schema = {"description": "done"}
            if key is not None:
                ok["content"] = {"application/json": {"schema": {**OBJECT, "required": [key], "properties": {
                    key: IDENTIFIED.get(key, ANY)}}}}
            extra = {"200": {"description": "os-getConsoleOutput: the server's console log", "content": {
                "application/json": {"schema": CONSOLE_OUTPUT}}}} if label == CONSOLE_ACTION else {}
            operation["responses"] = {**extra, str(status): ok, **{
                str(code): {"description": MEANING[code],
                            "content": {"application/json": {"schema": _fault(code, style)}}}
                for code in sorted(codes)}}
            if label in bodies:
                operation["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": with_text_rule(bodies[label])}}}
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            operation.setdefault("parameters", []).extend(
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in re.findall(r"{(\w+)}", path) if name not in declared)  # routes that do not read it
            for parameter in operation["parameters"]:
                if parameter["name"] == "tag":  # Neutron's tags: 1 to 255 characters (400 else)
                    parameter["schema"] = {"type": "string", "minLength": 1, "maxLength": 255}
            operation["operationId"] = re.sub(r"\W+", "_", label).strip("_").lower()
    schema["components"] = {"schemas": {"JsonText": JSON_TEXT}, "securitySchemes": {"keystoneToken": {
        "type": "apiKey", "in": "header", "name": "X-Auth-Token",
        "description": "a token from POST /v3/auth/tokens (X-Subject-Token) or POST /v2.0/tokens"}}}
    return schema
