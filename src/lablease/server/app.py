"""The lock server's app factory: ``create_app(settings, store=None)``."""

from __future__ import annotations

import logging
import re
import warnings
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio.to_thread
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp

from lablease import __version__
from lablease.lockapi.errors import install_error_handlers
from lablease.lockapi.fastlane import HotPaths
from lablease.lockapi.locking import LockContext
from lablease.web.guard import RequestGuard
from lablease.lockapi.routes import router
from lablease.lockapi.settings import LockSettings
from lablease.server.retention import EventPruner
from lablease.store import NodeStore
from lablease.store.pg_async import AsyncLockLane

if TYPE_CHECKING:
    from lablease.config.lab import LabConfig
    from lablease.provision.context import ProvisionerOptions

log = logging.getLogger(__name__)


def create_app(settings: LockSettings, store: NodeStore | None = None, *, run_migrations: bool = True,
               fast_paths: bool = True, lab_config: "LabConfig | None" = None,
               lab_options: "ProvisionerOptions | None" = None) -> FastAPI:
    """Build the app; with no ``store`` it opens (and migrates) ``settings.database_url``.

    With a ``lab_config`` that has libcloud providers the app is the lab service: locking nodes of
    those machine types provisions them (``lablease.lab``); ``lab_options`` go to its Provisioners.

    A store passed in belongs to the caller, who closes it. ``fast_paths`` serves lock_many and
    unlock_many from a lean ASGI layer in front of FastAPI (same answers, less CPU); on
    PostgreSQL that layer settles them in the event loop on its own async pool (``app.state.lane``).
    """
    owned = store is None
    if store is None:
        store = NodeStore.open(settings.database_url, run_migrations=run_migrations,
                               pool_size=settings.db_pool_size)
    lane = None
    if fast_paths and store.engines.dialect == "postgresql":
        # As large as the threaded pool: measured, a lane pool smaller than the number of requests in
        # flight costs more server CPU in waiting than it saves (16 clients: 8 % fewer pairs/s at 10).
        lane = AsyncLockLane(settings.database_url, max_size=settings.db_pool_size)
    lab = lab_observer = None
    if lab_config is not None and lab_config.libcloud.providers:
        from lablease.lab.http import lab_metrics
        from lablease.lab.service import LabService

        lab_observer = lab_metrics(store, {t: dict(p.min_ready) for t, p in lab_config.libcloud.providers.items()})
        try:
            lab = LabService(store, lab_config, lease_seconds=settings.lease_seconds,
                             reconcile_interval=settings.reconcile_interval, provisioner_options=lab_options,
                             observer=lab_observer)
        except BaseException:
            if owned:
                store.close()
            raise

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        # Sync endpoints run in anyio's threadpool; size it to the DB pool, not anyio's default.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        if lane is not None:
            await lane.open()
        pruner = EventPruner(store, settings.events_retention_days)
        pruner.start()
        try:
            yield
        finally:
            pruner.stop()
            if lab is not None:
                await anyio.to_thread.run_sync(lab.drain, settings.shutdown_timeout)
                lab.close()
            if lane is not None:
                await lane.close()
            if owned:
                store.close()

    app = FastAPI(title="lablease lock server", version=__version__, lifespan=lifespan,
                  redirect_slashes=False, docs_url="/docs", redoc_url=None)
    app.state.settings = settings
    app.state.store = store
    app.state.lane = lane
    app.state.lab = lab
    app.state.lock_context = LockContext(store=store, lane=lane, lab=lab)
    install_error_handlers(app)
    app.include_router(router)
    if lab is not None:
        from lablease.lab.http import router as lab_router

        app.state.lab_metrics = lab_observer
        lab_observer.registry.register(lab.policy.collector())  # lablease_locks_expiring, lablease_locks_held
        app.include_router(lab_router)
    from lablease.dashboard import install as install_dashboard

    install_dashboard(app)  # the pages at /ui/ (docs/dashboard.md)
    app.openapi = lambda: _openapi(app, settings)  # type: ignore[method-assign]
    app.add_middleware(RequestGuard, limit=settings.max_body_bytes)
    if fast_paths:
        app.add_middleware(HotPaths, ctx=app.state.lock_context, limit=settings.max_body_bytes)
    return app


def _openapi(app: FastAPI, settings: LockSettings) -> dict:
    """FastAPI's document, made to say what the server does: errors are 400 ``{"message"}``, never 422;
    creating and deleting need the admin token (a bearer token) only when the server has one."""
    if app.openapi_schema is None:
        with warnings.catch_warnings():  # one route serving several methods repeats its operation id: made unique below
            warnings.filterwarnings("ignore", "Duplicate Operation ID")
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = schema.setdefault("components", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(name, None)
        for operations in schema.get("paths", {}).values():
            for method, operation in operations.items():
                base = re.sub(r"_(get|put|post|delete|patch)$", "", operation.get("operationId", ""))
                operation["operationId"] = f"{base}_{method}"
                operation["responses"].pop("422", None)
                if operation.pop("x-lablease-admin", False) and settings.admin_token is not None:
                    operation["security"] = [{"adminToken": []}]
        if app.state.lab is not None:
            from lablease.lab.http import document

            document(schema, app.state.lab)
        if settings.admin_token is not None:
            components["securitySchemes"] = {"adminToken": {
                "type": "http", "scheme": "bearer",
                "description": "lablease.admin_token of the server's config (401 without it, 403 when wrong)"}}
        app.openapi_schema = schema
    return app.openapi_schema


def create_served_app(settings: LockSettings, *, run_migrations: bool = False,
                      lab_config: "LabConfig | None" = None) -> ASGIApp:
    """What ``lablease serve`` runs: the hot-path layer outermost, so lock_many/unlock_many skip
    FastAPI's and Starlette's per-request middleware; every other request goes to ``create_app``'s app."""
    app = create_app(settings, run_migrations=run_migrations, lab_config=lab_config)
    # lablease serve's shutdown reaches the lab through the served app's state.
    return HotPaths(app, ctx=app.state.lock_context, limit=settings.max_body_bytes, state=app.state)
