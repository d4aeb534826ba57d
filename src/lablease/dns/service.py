"""The HTTP service: nsupdate-web's `/update` call plus delete, lookup, the zone's names, health and metrics.

Built by `create_app(config)` from a validated DnsConfig; nothing is global, so tests and
benchmarks can run several instances side by side.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from lablease.dns.auth import Authenticator, Caller
from lablease.dns.config import DnsConfig
from lablease.dns.metrics import DnsMetrics
from lablease.dns.openapi import ApiDocs
from lablease.dns.updater import DnsError, Updater, read_key_file
from lablease.dns.validation import HostName, Rejection, check_addresses, check_name
from lablease.web.errors import allowed_methods

log = logging.getLogger(__name__)
audit = logging.getLogger("lablease.dns.audit")


def build_updater(config: DnsConfig) -> Updater:
    """The RFC 2136 engine for ``config`` (reads the TSIG key file once)."""
    key = read_key_file(config.key_file, config.key_name)
    return Updater(config.zone, config.server, config.server_port, key, ttl=config.ttl, timeout=config.timeout)


class _Handlers:
    """Request handling shared by the routes: auth, validation, the DNS call, metrics, audit."""

    def __init__(self, config: DnsConfig, updater: Updater, metrics: DnsMetrics):
        self.config = config
        self.updater = updater
        self.metrics = metrics
        self.auth = Authenticator(config)

    def caller(self, request: Request) -> Caller:
        client = request.client.host if request.client else "unknown"
        return self.auth.identify(request.headers.get("authorization"), client)

    def name(self, raw: str | None, caller: Caller) -> HostName:
        return check_name(raw, self.config.zone, caller.allow)

    async def run(self, operation: str, work: Callable[[], Any]) -> Response:
        """Run ``work`` (which returns a Response), turning refusals and DNS failures into one-line errors."""
        start = time.perf_counter()
        try:
            return await work()
        except Rejection as exc:
            self.metrics.rejections.labels(exc.reason).inc()
            log.info("rejected operation=%s reason=%s status=%d", operation, exc.reason, exc.status)
            return PlainTextResponse(exc.message, status_code=exc.status)
        except DnsError as exc:
            self.metrics.dns_errors.labels(exc.kind).inc()
            log.warning("dns_error operation=%s kind=%s status=%d message=%r", operation, exc.kind, exc.status, exc.message)
            return PlainTextResponse(exc.message, status_code=exc.status)
        finally:
            self.metrics.latency.labels(operation).observe(time.perf_counter() - start)

    async def update(self, request: Request, name: str | None, ips: list[str]) -> Response:
        caller = self.caller(request)
        host = self.name(name, caller)
        addresses = check_addresses(ips, self.config.max_addresses)
        old, changed = await self.updater.replace(host.fqdn, addresses)
        if not changed:
            self.metrics.updates.labels("no-change").inc()
            return PlainTextResponse("no-change")
        self.metrics.updates.labels("success").inc()
        audit.info("audit op=update %s name=%s old=%s new=%s", caller.who, host.fqdn, ",".join(old) or "-", ",".join(addresses))
        return PlainTextResponse("success")

    async def delete(self, request: Request, name: str | None) -> Response:
        caller = self.caller(request)
        host = self.name(name, caller)
        old = await self.updater.delete(host.fqdn)
        self.metrics.deletes.labels("deleted" if old else "absent").inc()
        if old:
            audit.info("audit op=delete %s name=%s old=%s new=-", caller.who, host.fqdn, ",".join(old))
        return PlainTextResponse("success" if old else "no-change")

    async def lookup(self, name: str) -> Response:
        host = check_name(name, self.config.zone, _ANY)
        addresses = await self.updater.addresses(host.fqdn)
        return JSONResponse({"name": host.fqdn.rstrip("."), "addresses": addresses})

    async def names(self, request: Request) -> Response:
        """The caller's names in the zone: a zone transfer, filtered by the caller's allow pattern."""
        caller = self.caller(request)
        found = await self.updater.zone_addresses()
        return JSONResponse({"zone": self.config.zone, "names": self._allowed(found, caller)})

    def _allowed(self, found: dict[str, list[str]], caller: Caller) -> dict[str, list[str]]:
        """``found`` (relative name -> addresses) reduced to the names ``caller`` may change, sorted."""
        names: dict[str, list[str]] = {}
        for relative, addresses in found.items():
            try:
                host = self.name(f"{relative}.{self.config.zone}", caller)  # absolute: relative may hold dots
            except Rejection:
                continue  # the apex ("@"), ns, other hosts: not the lab's to list
            names[host.relative] = addresses
        return dict(sorted(names.items()))

    async def health(self) -> Response:
        try:
            seconds = await self.updater.healthy()
        except DnsError as exc:
            self.metrics.dns_errors.labels(exc.kind).inc()
            return JSONResponse({"status": "failing", "message": exc.message}, status_code=503)
        return JSONResponse({"status": "ok", "zone": self.config.zone, "dns_ms": round(seconds * 1000, 2)})


# Lookups are what DNS itself answers to anyone: any valid name inside the zone may be read.
_ANY = re.compile(r"(?s:.*)")


def _router(h: _Handlers, update_path: str, docs: ApiDocs) -> APIRouter:
    # `name` and `ip` are read from the request, not declared to FastAPI: see lablease.dns.openapi.
    router = APIRouter()

    @router.get(update_path, response_class=PlainTextResponse, summary="Replace a name's A/AAAA records (nsupdate-web)",
                responses=docs.change("the addresses were written, or BIND already held exactly them"),
                openapi_extra=docs.update_parameters())
    async def update(request: Request) -> Response:
        query = request.query_params
        return await h.run("update", lambda: h.update(request, query.get("name"), query.getlist("ip")))

    @router.get("/delete", response_class=PlainTextResponse, summary="Remove a name's A/AAAA records",
                responses=docs.change("the records were removed, or there were none"),
                openapi_extra=docs.name_parameter("query"))
    async def delete(request: Request) -> Response:
        return await h.run("delete", lambda: h.delete(request, request.query_params.get("name")))

    @router.delete("/records/{name}", response_class=PlainTextResponse, summary="Remove a name's A/AAAA records",
                   responses=docs.change("the records were removed, or there were none"),
                   openapi_extra=docs.name_parameter("path"))
    async def delete_record(request: Request) -> Response:
        return await h.run("delete", lambda: h.delete(request, request.path_params["name"]))

    @router.get("/records", summary="The lab's names in the zone (those the allow pattern admits) and their addresses",
                responses=docs.listing())
    async def names(request: Request) -> Response:
        return await h.run("names", lambda: h.names(request))

    # The same listing with a trailing slash, answered directly: a redirect would lose clients that do not follow it.
    router.add_api_route("/records/", names, methods=["GET"], include_in_schema=False)

    @router.get("/records/{name}", summary="The name's current addresses, asked of the DNS server",
                responses=docs.lookup(), openapi_extra=docs.name_parameter("path"))
    async def records(request: Request) -> Response:
        return await h.run("lookup", lambda: h.lookup(request.path_params["name"]))

    @router.get("/healthz", summary="200 when the DNS server serves the zone, 503 otherwise", responses=docs.health())
    async def healthz() -> Response:
        return await h.health()

    @router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(h.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


def create_app(config: DnsConfig, updater: Updater | None = None, update_path: str = "/update") -> FastAPI:
    """The FastAPI app for ``config``; routes hang off ``config.base_path`` (e.g. `/nsupdate/update`)."""
    updater = updater or build_updater(config)
    metrics = DnsMetrics()
    handlers = _Handlers(config, updater, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("dns service zone=%s server=%s:%d tokens=%d", config.zone, config.server, config.server_port, len(config.tokens))
        yield
        updater.close()

    app = FastAPI(title="lablease DNS service", lifespan=lifespan,
                  openapi_url=f"{config.base_path}/openapi.json", docs_url=f"{config.base_path}/docs", redoc_url=None)
    app.include_router(_router(handlers, update_path, ApiDocs(config)), prefix=config.base_path)

    @app.exception_handler(StarletteHTTPException)
    async def _unmatched(request: Request, exc: StarletteHTTPException) -> Response:
        """No route (404) or a method the path does not serve (405, ``Allow`` naming every one it does), as one
        line of plain text like every other answer (Starlette's own ``Allow`` names only the first route's)."""
        headers = {"Allow": allowed_methods(request)} if exc.status_code == 405 else None
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code, headers=headers)

    app.state.metrics = metrics
    return app
