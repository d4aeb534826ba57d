"""Nova os-keypairs: import a public key or have one generated, list, show, delete."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, Request, Response

from lablease.devcloud.compute_views import NOT_BLANK
from lablease.devcloud.errors import CloudError, json_body
from lablease.devcloud.state import Cloud, Keypair, Token, iso, utcnow


# An OpenSSH public key line: type, base64 blob, optional comment (the OpenAPI document states the same).
PUBLIC_KEY = r"^(ssh|ecdsa)-[A-Za-z0-9@._+-]* ([A-Za-z0-9+/]{4})+([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?( [ -~]*)?$"


def fingerprint(public_key: str) -> str:
    """MD5 fingerprint of an OpenSSH public key, as Nova shows it; ValueError when it is not one."""
    if not re.fullmatch(PUBLIC_KEY, public_key.strip(" \n")):
        raise ValueError("not an OpenSSH public key")
    parts = public_key.strip(" \n").split(" ")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        raise ValueError("bad base64") from None
    digest = hashlib.md5(blob).hexdigest()  # noqa: S324 - a fingerprint, not security
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _generate() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, public + " Generated-by-Nova"


def _view(kp: Keypair, detail: bool = False) -> dict[str, Any]:
    # (no "type": Nova shows it from microversion 2.2 on, and devcloud answers 2.1)
    view = {"name": kp.name, "public_key": kp.public_key, "fingerprint": kp.fingerprint}
    if detail:
        view.update({"user_id": kp.user_id, "created_at": iso(kp.created), "deleted": False})
    return view


def make_router(cloud: Cloud, auth) -> APIRouter:
    router = APIRouter(prefix="/compute/v2.1")

    @router.get("/os-keypairs")
    async def list_keypairs(token: Token = auth):
        with cloud.lock:
            return {"keypairs": [{"keypair": _view(k)} for (uid, _), k in sorted(cloud.keypairs.items())
                                 if uid == token.user_id]}

    @router.post("/os-keypairs")
    async def create_keypair(request: Request, token: Token = auth):
        body = await json_body(request, "nova", "keypair")
        name = body.get("name")
        if not isinstance(name, str) or not re.search(NOT_BLANK, name) or len(name) > 255:
            raise CloudError(400, "Invalid input for field/attribute name. 'name' is a required property",
                             "nova")
        private = None
        public = body.get("public_key")
        if public is None:
            private, public = _generate()
        try:
            fp = fingerprint(str(public))
        except ValueError:
            raise CloudError(400, "Keypair data is invalid: failed to generate fingerprint", "nova") from None
        with cloud.lock:
            if (token.user_id, name) in cloud.keypairs:
                raise CloudError(409, f"Key pair '{name}' already exists.", "nova")
            if sum(1 for uid, _ in cloud.keypairs if uid == token.user_id) >= cloud.config.quotas.key_pairs:
                raise CloudError(403, "Quota exceeded, too many key pairs.", "nova", kind="forbidden")
            kp = Keypair(name=name, user_id=token.user_id, public_key=str(public).strip(), fingerprint=fp,
                         created=utcnow())
            cloud.keypairs[(token.user_id, name)] = kp
        view = _view(kp, detail=True)
        if private:
            view["private_key"] = private
        return {"keypair": view}

    @router.get("/os-keypairs/{name}")
    async def show_keypair(name: str, token: Token = auth):
        with cloud.lock:
            kp = cloud.keypairs.get((token.user_id, name))
        if kp is None:
            raise CloudError(404, f"Keypair {name} not found for user {token.user_id}", "nova")
        return {"keypair": _view(kp, detail=True)}

    @router.delete("/os-keypairs/{name}", status_code=202)
    async def delete_keypair(name: str, token: Token = auth):
        with cloud.lock:
            if cloud.keypairs.pop((token.user_id, name), None) is None:
                raise CloudError(404, f"Keypair {name} not found for user {token.user_id}", "nova")
        return Response(status_code=202)

    return router
