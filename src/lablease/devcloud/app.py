"""Wires devcloud together: one FastAPI app serving every OpenStack API on one port."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from lablease.devcloud import admin, compute, floating, identity, images, keypairs, network, nova_proxies, volumes
from lablease.devcloud.config import DevcloudConfig
from lablease.devcloud.edge import Edge
from lablease.devcloud.openapi import document
from lablease.devcloud.errors import CloudError, render, style_for_path
from lablease.devcloud.faults import count, guard
from lablease.devcloud.lifecycle import Lifecycle
from lablease.devcloud.lost import LostAnswers
from lablease.devcloud.state import Cloud
from lablease.web.errors import allowed_methods, flat_routes as _flat

log = logging.getLogger(__name__)


def create_app(config: DevcloudConfig, workdir: Path) -> FastAPI:
    """Build the app; the ticker thread and sshd processes live as long as its lifespan."""
    cloud = Cloud(config, workdir)
    life = Lifecycle(cloud)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        life.start()
        log.info("devcloud started regions=%s ssh=%s", ",".join(config.regions), config.ssh.enabled)
        try:
            yield
        finally:
            life.stop()
            log.info("devcloud stopped")

    app = FastAPI(title="devcloud", lifespan=lifespan, openapi_url="/devcloud/openapi.json", docs_url=None,
                  redoc_url=None)
    app.state.cloud = cloud
    app.state.lifecycle = life

    async def guard_dep(request: Request) -> None:
        await guard(cloud, request)

    def auth_dep(request: Request):
        return identity.authenticate(cloud, request)

    auth = Depends(auth_dep)
    guarded = [Depends(guard_dep)]
    app.include_router(identity.make_router(cloud), dependencies=guarded)
    app.include_router(compute.make_router(cloud, life, auth), dependencies=guarded)
    app.include_router(keypairs.make_router(cloud, auth), dependencies=guarded)
    app.include_router(nova_proxies.make_router(cloud, life, auth), dependencies=guarded)
    app.include_router(volumes.make_discovery_router(), dependencies=guarded)
    for version in ("v3", "v2"):
        app.include_router(volumes.make_router(cloud, life, auth, version), dependencies=guarded)
    app.include_router(images.make_router(cloud, auth), dependencies=guarded)
    app.include_router(network.make_router(cloud, auth), dependencies=guarded)
    app.include_router(floating.make_router(cloud, life, auth), dependencies=guarded)
    app.include_router(admin.make_router(cloud, life))

    app.add_middleware(Edge)
    app.add_middleware(LostAnswers, cloud=cloud)  # outside Edge: it sees the request's whole answer
    app.openapi = lambda: _openapi(app, cloud, auth_dep)  # type: ignore[method-assign]

    @app.exception_handler(CloudError)
    async def cloud_error(request: Request, exc: CloudError):
        return render(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        # No route matched (404) or the method is not served (405): answer in the service's style.
        count(cloud, f"{request.method} <unmatched>")
        log.info("unmatched method=%s path=%s status=%d", request.method, request.url.path, exc.status_code)
        message = "The resource could not be found." if exc.status_code == 404 else str(exc.detail)
        headers = {"Allow": allowed_methods(request)} if exc.status_code == 405 else None
        return render(CloudError(exc.status_code, message, style_for_path(request.url.path), headers=headers))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("devcloud handler failed path=%s", request.url.path)
        return render(CloudError(500, "Unexpected API Error. Please report this at the devcloud issue tracker.",
                                 style_for_path(request.url.path)))

    return app


def _openapi(app: FastAPI, cloud: Cloud, auth_dep) -> dict:  # noqa: ANN001
    if app.openapi_schema is None:
        needs_token = set()
        for route in _flat(app.routes):
            stack = list(getattr(getattr(route, "dependant", None), "dependencies", []))
            while stack:
                dependency = stack.pop()
                if dependency.call is auth_dep:
                    needs_token |= {f"{method} {route.path}" for method in route.methods}
                    break
                stack.extend(dependency.dependencies)
        app.openapi_schema = document(app, cloud, needs_token)
    return app.openapi_schema
