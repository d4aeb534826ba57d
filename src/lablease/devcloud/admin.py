"""devcloud's own admin API under /devcloud/admin: request counts, faults, resources, server internals.

Not part of OpenStack; not counted, faulted or authenticated (devcloud only listens on loopback).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from lablease.config import ConfigError, validate_section
from lablease.devcloud.config import FaultConfig
from lablease.devcloud.errors import CloudError, json_body
from lablease.devcloud.faults import set_faults
from lablease.devcloud.lifecycle import Lifecycle
from lablease.devcloud.state import Cloud

PREFIX = "/devcloud/admin"


def make_router(cloud: Cloud, life: Lifecycle) -> APIRouter:
    router = APIRouter(prefix=PREFIX)

    @router.get("/health")
    async def health():
        return {"status": "ok"}

    @router.get("/resources")
    async def resources():
        return cloud.resources()

    @router.get("/requests")
    async def request_counts():
        with cloud.lock:
            return {"counts": dict(sorted(cloud.request_counts.items()))}

    @router.delete("/requests", status_code=204)
    async def reset_counts():
        with cloud.lock:
            cloud.request_counts.clear()
        return Response(status_code=204)

    @router.get("/faults")
    async def get_faults():
        return cloud.faults.model_dump()

    @router.put("/faults")
    async def put_faults(request: Request):
        body = await json_body(request, "keystone")
        try:
            faults = validate_section(FaultConfig, body, prefix="faults")
        except ConfigError as exc:
            raise CloudError(400, str(exc), "keystone") from None
        set_faults(cloud, faults)
        return faults.model_dump()

    @router.delete("/faults", status_code=204)
    async def clear_faults():
        set_faults(cloud, FaultConfig(seed=cloud.faults.seed))
        return Response(status_code=204)

    @router.delete("/tokens", status_code=204)
    async def revoke_tokens():
        # As Keystone after a token flush: every API call with an old token answers 401 until the client
        # authenticates again (the "401 once" of an auth fault).
        with cloud.lock:
            cloud.tokens.clear()
        return Response(status_code=204)

    @router.get("/servers/{server_id}")
    async def server_internals(server_id: str):
        with cloud.lock:
            server = cloud.servers.get(server_id)
            if server is None:
                raise CloudError(404, f"no server {server_id}", "keystone")
            return {"id": server.id, "status": server.status, "root": str(server.root),
                    "ssh_up": server.ssh_up, "addresses": [a for _, a in server.addresses],
                    "ssh_due": server.ssh_due, "ssh_addresses": cloud.reachable_addresses(server),
                    "ssh_port": cloud.config.ssh.port if cloud.config.ssh.enabled else None}

    return router
