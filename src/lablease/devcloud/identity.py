"""Keystone v2.0 and v3: password tokens, service catalog, version discovery, token checks."""

from __future__ import annotations

import hmac
import logging
import secrets
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from lablease.devcloud.errors import CloudError, json_body
from lablease.devcloud.state import Cloud, Project, Token, iso

log = logging.getLogger(__name__)

# (catalog type, catalog name, path under the base URL; {project} is the project id)
SERVICES = [
    ("compute", "nova", "/compute/v2.1"),
    ("volumev3", "cinderv3", "/volume/v3/{project}"),
    ("volumev2", "cinderv2", "/volume/v2/{project}"),
    ("block-storage", "cinder", "/volume/v3/{project}"),
    ("image", "glance", "/image"),
    ("network", "neutron", "/network"),
]


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _v3_time(ts) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def catalog_v2(cloud: Cloud, base: str, project: Project) -> list[dict[str, Any]]:
    entries = []
    for stype, name, path in SERVICES + [("identity", "keystone", "/v2.0")]:
        url = base + path.format(project=project.id)
        entries.append({"type": stype, "name": name, "endpoints_links": [], "endpoints": [
            {"region": r, "publicURL": url, "internalURL": url, "adminURL": url, "id": f"{name}-{r}"}
            for r in cloud.config.regions]})
    return entries


def catalog_v3(cloud: Cloud, base: str, project: Project) -> list[dict[str, Any]]:
    entries = []
    for stype, name, path in SERVICES + [("identity", "keystone", "/v3")]:
        url = base + path.format(project=project.id)
        entries.append({"type": stype, "name": name, "id": f"svc-{name}", "endpoints": [
            {"id": f"{name}-{r}-{iface}", "interface": iface, "region": r, "region_id": r, "url": url}
            for r in cloud.config.regions for iface in ("public", "internal", "admin")]})
    return entries


def _dict(value: Any) -> dict[str, Any]:
    """A nested request object, or an empty one when the client sent something else there."""
    return value if isinstance(value, dict) else {}


def _check_password(cloud: Cloud, username: Any, password: Any, domain: dict[str, Any] | None = None,
                    user_id: Any = None):
    """The user these credentials name (by name in a domain, by name in Default, or by id), or None."""
    if not isinstance(password, str):
        return None
    for user in cloud.config.users:
        home = cloud.config.domain(user.domain)
        if isinstance(user_id, str):
            if user_id != _user_id(user.name, home.id):
                continue
        elif user.name != username:
            continue
        elif domain is None and home.id != "default":
            continue
        elif domain is not None and domain.get("id", domain.get("name")) not in (home.id, home.name):
            continue
        if hmac.compare_digest(user.password.encode(), password.encode()):
            return user
    return None


def _domain(cloud: Cloud, user) -> dict[str, str]:
    home = cloud.config.domain(user.domain)
    return {"id": home.id, "name": home.name}


def _issue(cloud: Cloud, user, project: Project | None, domain_scope: tuple[str, str] | None = None) -> Token:
    now = datetime.now(timezone.utc)  # not truncated: a short lifetime must last its full length
    home = cloud.config.domain(user.domain)
    token = Token(id="gAAAA" + secrets.token_urlsafe(48), user_id=_user_id(user.name, home.id), user_name=user.name,
                  project=project, issued=now, expires=now + timedelta(seconds=cloud.config.token_lifetime),
                  user_domain=(home.id, home.name), domain_scope=domain_scope)
    with cloud.lock:
        for tid in [t for t, tok in cloud.tokens.items() if tok.expired()]:
            del cloud.tokens[tid]
        cloud.tokens[token.id] = token
    log.info("token issued user=%s project=%s", user.name, project.name if project else "-")
    return token


def _user_id(name: str, domain_id: str = "default") -> str:
    key = f"user.{name}" if domain_id == "default" else f"user.{domain_id}.{name}"
    return uuid.uuid5(uuid.NAMESPACE_DNS, key).hex


def authenticate(cloud: Cloud, request: Request) -> Token:
    """The token of this request, or 401 as keystonemiddleware answers (unknown, expired, unscoped)."""
    token_id = request.headers.get("x-auth-token")
    with cloud.lock:
        token = cloud.tokens.get(token_id or "")
    if token is None or token.expired() or token.project is None:
        raise CloudError(401, "The request you have made requires authentication.", "keystone",
                         headers={"WWW-Authenticate": f'Keystone uri="{base_url(request)}/v3"'})
    return token


def versions_document(base: str) -> dict[str, Any]:
    def version(vid: str, status: str, path: str, media: str) -> dict[str, Any]:
        return {"id": vid, "status": status, "updated": "2023-01-01T00:00:00Z",
                "links": [{"rel": "self", "href": f"{base}{path}/"}],
                "media-types": [{"base": "application/json", "type": media}]}
    return {"versions": {"values": [
        version("v3.14", "stable", "/v3", "application/vnd.openstack.identity-v3+json"),
        version("v2.0", "deprecated", "/v2.0", "application/vnd.openstack.identity-v2.0+json"),
    ]}}


ROLES = [{"id": "member-role", "name": "member"}, {"id": "reader-role", "name": "reader"}]


def _project_ref(project: Project) -> dict[str, Any]:
    return {"id": project.id, "name": project.name, "domain": {"id": project.domain_id, "name": project.domain_name}}


def _scope(cloud: Cloud, user, scope: dict[str, Any]) -> tuple[Project | None, tuple[str, str] | None]:
    """The project (or domain) a v3 token is scoped to, as Keystone checks it: a project named by name needs its
    domain (400 without one), and a project or domain the user has no role on, or in another domain, is a 401."""
    if "project" in scope:
        want = _dict(scope["project"])
        key = want.get("id") or want.get("name")
        if not isinstance(key, str):
            raise CloudError(400, "Expecting to find scope.project.name or scope.project.id in auth.", "keystone")
        domain = _dict(want.get("domain"))
        if "id" not in want and not domain:
            raise CloudError(400, "Expecting to find domain in project. The server could not comply with the "
                                  "request since it is either malformed or otherwise incorrect.", "keystone")
        ref = domain.get("id", domain.get("name"))
        project = next((p for p in cloud.projects.values() if p.name in user.projects and (
            p.id == want.get("id") if "id" in want else p.name == key and ref in (p.domain_id, p.domain_name))), None)
        if project is None:
            raise CloudError(401, f"User {user.name} has no access to project {key}.", "keystone")
        return project, None
    if "domain" in scope:
        want = _dict(scope["domain"])
        ref = want.get("id", want.get("name"))
        home = cloud.config.domain(user.domain)
        if ref not in (home.id, home.name):
            raise CloudError(401, f"User {user.name} has no access to domain {ref}.", "keystone")
        return None, (home.id, home.name)
    return None, None


def make_router(cloud: Cloud) -> APIRouter:
    router = APIRouter()

    @router.get("/")
    async def root_versions(request: Request):
        return JSONResponse(versions_document(base_url(request)), status_code=300)

    @router.get("/v3")
    async def v3_version(request: Request):
        return {"version": versions_document(base_url(request))["versions"]["values"][0]}

    @router.get("/v2.0")
    async def v2_version(request: Request):
        return {"version": versions_document(base_url(request))["versions"]["values"][1]}

    async def v2_tokens(request: Request):
        auth = await json_body(request, "keystone", "auth")
        creds = auth.get("passwordCredentials")
        if not isinstance(creds, dict) or "username" not in creds or "password" not in creds:
            raise CloudError(400, "Expecting to find passwordCredentials with username and password in auth.",
                             "keystone")
        user = _check_password(cloud, creds.get("username"), creds.get("password"))
        if user is None:
            raise CloudError(401, "The request you have made requires authentication.", "keystone")
        tenant = auth.get("tenantName") or auth.get("tenantId")
        project = None
        if tenant is not None and not isinstance(tenant, str):
            raise CloudError(400, "Expecting tenantName or tenantId to be a string.", "keystone")
        if tenant:
            project = next((p for p in cloud.projects.values()  # v2.0 sees the Default domain only
                            if tenant in (p.name, p.id) and p.name in user.projects and p.domain_id == "default"),
                           None)
            if project is None:
                raise CloudError(401, f"The user is not authorized for tenant {tenant}.", "keystone")
        token = _issue(cloud, user, project)
        access: dict[str, Any] = {
            "token": {"id": token.id, "issued_at": iso(token.issued), "expires": iso(token.expires)},
            "user": {"id": token.user_id, "name": user.name, "username": user.name,
                     "roles": [{"name": "member"}], "roles_links": []},
            "serviceCatalog": catalog_v2(cloud, base_url(request), project) if project else [],
            "metadata": {"is_admin": 0, "roles": []},
        }
        if project:
            access["token"]["tenant"] = {"id": project.id, "name": project.name, "enabled": True,
                                         "description": None}
        return {"access": access}

    async def v3_tokens(request: Request):
        auth = await json_body(request, "keystone", "auth")
        identity = _dict(auth.get("identity"))
        methods = identity.get("methods")
        pw_user = _dict(_dict(identity.get("password")).get("user"))
        if not isinstance(methods, list) or "password" not in methods or not pw_user:
            raise CloudError(400, "Expecting to find identity.methods with 'password' and identity.password.user "
                                  "in auth (only the password method is supported).", "keystone")
        if "id" not in pw_user and not isinstance(pw_user.get("domain"), dict):
            raise CloudError(400, "Expecting to find domain in user. The server could not comply with the request "
                                  "since it is either malformed or otherwise incorrect.", "keystone")
        user = _check_password(cloud, pw_user.get("name"), pw_user.get("password"),
                               None if "id" in pw_user else pw_user["domain"], pw_user.get("id"))
        if user is None:
            raise CloudError(401, "The request you have made requires authentication.", "keystone")
        project, domain_scope = _scope(cloud, user, _dict(auth.get("scope")))
        token = _issue(cloud, user, project, domain_scope)
        body: dict[str, Any] = {"token": {
            "methods": ["password"], "audit_ids": [token.id[-22:]],
            "user": {"id": token.user_id, "name": user.name, "domain": _domain(cloud, user),
                     "password_expires_at": None},
            "issued_at": _v3_time(token.issued), "expires_at": _v3_time(token.expires),
        }}
        if project or domain_scope:
            body["token"].update({
                "roles": ROLES, "catalog": catalog_v3(cloud, base_url(request), project) if project else [],
            })
        if project:
            body["token"].update({"project": _project_ref(project), "is_domain": False})
        if domain_scope:
            body["token"]["domain"] = {"id": domain_scope[0], "name": domain_scope[1]}
        return JSONResponse(body, status_code=201, headers={"X-Subject-Token": token.id})

    # libcloud appends its own path to ex_force_auth_url, so a seed-style URL ending in
    # /v2.0/tokens (or /v3/auth/tokens) arrives doubled; serve that spelling too.
    for path in ("/v2.0/tokens", "/v2.0/tokens/v2.0/tokens"):
        router.add_api_route(path, v2_tokens, methods=["POST"])
    for path in ("/v3/auth/tokens", "/v3/auth/tokens/v3/auth/tokens"):
        router.add_api_route(path, v3_tokens, methods=["POST"])

    @router.get("/v3/auth/tokens")
    async def v3_validate(request: Request):
        authenticate(cloud, request)
        subject = request.headers.get("x-subject-token", "")
        with cloud.lock:
            token = cloud.tokens.get(subject)
        if token is None or token.expired():
            raise CloudError(404, "Could not find token.", "keystone")
        # Keystone answers a validation with the token as it issued it.
        body: dict[str, Any] = {"token": {
            "methods": ["password"], "audit_ids": [token.id[-22:]], "expires_at": _v3_time(token.expires),
            "issued_at": _v3_time(token.issued),
            "user": {"id": token.user_id, "name": token.user_name, "password_expires_at": None,
                     "domain": {"id": token.user_domain[0], "name": token.user_domain[1]}}}}
        if token.project or token.domain_scope:
            body["token"]["roles"] = ROLES
            body["token"]["catalog"] = catalog_v3(cloud, base_url(request), token.project) if token.project else []
        if token.project:
            body["token"].update({"project": _project_ref(token.project), "is_domain": False})
        if token.domain_scope:
            body["token"]["domain"] = {"id": token.domain_scope[0], "name": token.domain_scope[1]}
        return JSONResponse(body, headers={"X-Subject-Token": subject})

    return router
