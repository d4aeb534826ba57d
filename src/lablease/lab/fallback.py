"""Locking a machine type served by several providers (``libcloud.machine_types``): first provider first.

Every node of the request is launched on the type's first provider whose preflight passes. A launch that
fails with a kind whose rule says ``next_provider`` (a quota or capacity refusal: provision/errorkinds.py),
and whose rollback left nothing, is launched again on the next provider; the node's events say why
(a ``provider fallback`` stage row naming both providers and the refusal). So the first provider gives what
it can and the next ones the rest, without asking any cloud for its limits up front.

All or nothing across providers, as a single provider's lock is: when any node fails for good (or the
client goes away), every node of the request is undone by the provider that made it (lab.undo) and the
answer is 503. Each node's ``provider`` column is written by the attempt that makes it (lab.workers), so
unlock, force-unlock and the reconciler find its resources where they are (lab.routing).

Multi-provider types have no warm pool of their own: warm pools belong to providers and serve locks of the
provider's own machine type only (docs/lab-service.md).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from lablease.lab.bus import LabEvent, ProgressBus
from lablease.lab.host import LabHost
from lablease.lab.preflight import RECHECK, Preflight
from lablease.lab.routing import Routes
from lablease.lab.undo import FailedLock, clean, failure_message, gather_unless, node_line
from lablease.lab.workers import ProviderWorker
from lablease.lockapi.locking import LockRequest
from lablease.provision.errors import ProvisionError
from lablease.provision.models import NodeInfo
from lablease.store import NodeRecord, Unavailable

log = logging.getLogger(__name__)

STAGE = "provider"  # the stage of a node's "went to the next provider" event (status "fallback")


class FallbackHost(LabHost, Protocol):
    """What a fallback lock needs of the lab service (lab.service.LabService) besides ``LabHost``."""

    bus: ProgressBus
    routes: Routes
    preflights: dict[str, Preflight]

    def _destroy(self, worker: ProviderWorker, name: str, request: str | None) -> Awaitable[bool]: ...
    def _lost(self, nodes: list[NodeRecord]) -> set[str]: ...
    def _mark_ready(self, nodes: list[NodeRecord], infos: list[NodeInfo]) -> list[NodeRecord]: ...


@dataclass(frozen=True)
class Launch:
    """What one node's create needs, the same for every node of a request."""

    os_type: str
    os_version: str
    hints: Any
    request: str | None
    stop: threading.Event


def moves_on(result: Any) -> bool:
    """Whether a failed launch may go to the next provider: the provider refused for want of room (quota,
    capacity) and its rollback left nothing behind."""
    return isinstance(result, ProvisionError) and clean(result) and result.kind.rule.next_provider


class FallbackLock:
    """Locks of ``lab``'s multi-provider machine types."""

    def __init__(self, lab: FallbackHost):
        self.lab = lab

    async def usable(self, machine_type: str) -> list[str]:
        """The providers of ``machine_type`` whose preflight passes, in order; 503 when none does."""
        usable, problems = [], []
        for provider in self.lab.routes.providers(machine_type):
            problem = await asyncio.to_thread(self.lab.preflights[provider].problem)
            if problem:
                problems.append(f"{provider}: {problem}")
                log.warning("type=%s: provider %s skipped: %s", machine_type, provider, problem)
            else:
                usable.append(provider)
        if not usable:
            raise Unavailable(f"no provider of {machine_type} can take a lock now: {'; '.join(problems)}")
        return usable

    async def lock_many(self, req: LockRequest, abandoned: asyncio.Event | None) -> list[NodeRecord]:
        """Lock ``req.count`` idle nodes of the type and provision them across its providers; ``req`` has its OS."""
        usable = await self.usable(req.machine_type)
        lab = self.lab
        nodes = await asyncio.to_thread(
            lab.store.lock_many, req.count, req.machine_type, req.locked_by, req.description, os_type=req.os_type,
            os_version=req.os_version, arch=req.arch, provision=True, lease_owner=lab.owner,
            lease_seconds=lab.lease_seconds)
        log.info("lock request=%s type=%s count=%d owner=%s providers=%s nodes=%s", req.request_id, req.machine_type,
                 req.count, req.locked_by, ",".join(usable), ",".join(n.name for n in nodes))
        launch = Launch(req.os_type or "", req.os_version or "", req.hints, req.request_id, threading.Event())
        return await self.provision(nodes, usable, launch, req.locked_by, abandoned)

    async def provision(self, nodes: list[NodeRecord], usable: list[str], launch: Launch, who: str | None,
                        abandoned: asyncio.Event | None = None) -> list[NodeRecord]:
        """Launch each of ``nodes`` (locked, ``provisioning``) on ``usable`` providers in order; all ready, or
        every one undone where it was made and 503."""
        placed = await gather_unless([self._place(n, usable, launch) for n in nodes], abandoned, launch.stop)
        providers = [p for p, _ in placed]
        results = [r for _, r in placed]
        gone = abandoned is not None and abandoned.is_set()
        if gone:
            log.info("lock request=%s: the client (%s) went away; stopping its creates and rolling back",
                     launch.request, who)
        failures = [(n, r) for n, r in zip(nodes, results) if isinstance(r, BaseException) and not gone]
        if not failures and not gone:
            lost = await asyncio.to_thread(self.lab._lost, nodes)
            if not lost:
                return await asyncio.to_thread(self.lab._mark_ready, nodes, results)
            failures = [(n, RuntimeError("an admin forced it free, or another process took it over"))
                        for n in nodes if n.name in lost]
        for provider in {p for r, p in zip(results, providers) if isinstance(r, ProvisionError) and r.kind in RECHECK}:
            self.lab.preflights[provider].forget()
        reason = "; ".join(node_line(n, e) for n, e in failures) or \
            f"the client ({who}) disconnected before its nodes were ready"
        log.warning("lock request=%s failed, undoing all %d nodes: %s", launch.request, len(nodes), reason)
        lost = await asyncio.to_thread(self.lab._lost, nodes)
        left, handed = await self._undo(nodes, providers, results, reason, launch.request, lost, gone)
        raise Unavailable(failure_message(reason, sum(1 for r in results if clean(r)), handed, left))

    async def _undo(self, nodes: list[NodeRecord], providers: list[str], results: list[Any], reason: str,
                    request: str | None, lost: set[str], gone: bool) -> tuple[list[str], list[str]]:
        """Each node undone by the provider of its last attempt (lab.undo), all providers at once."""
        undos = []
        for provider in dict.fromkeys(providers):
            worker = self.lab.workers[provider]
            mine = [i for i, p in enumerate(providers) if p == provider]
            undo = FailedLock(self.lab.store, worker, partial(self.lab._destroy, worker))
            undos.append(undo.undo([nodes[i] for i in mine], [results[i] for i in mine], reason, request,
                                   lost=lost, abandoned=gone))
        left: list[str] = []
        handed: list[str] = []
        for one_left, one_handed in await asyncio.gather(*undos):
            left += one_left
            handed += one_handed
        return left, handed

    async def _place(self, node: NodeRecord, usable: list[str], launch: Launch) -> tuple[str, Any]:
        """Launch ``node`` on the first of ``usable`` that can give it; (the provider of the last attempt,
        its NodeInfo or exception)."""
        result: Any = None
        for i, provider in enumerate(usable):
            worker = self.lab.workers[provider]
            try:
                result = await asyncio.wrap_future(worker.launch(
                    node.name, launch.os_type, launch.os_version, launch.hints, launch.request, launch.stop))
                return provider, result
            except Exception as exc:  # noqa: BLE001 - ProvisionError, or a bug: the caller undoes the request
                result = exc
            later = usable[i + 1:]
            if not later or launch.stop.is_set() or not moves_on(result):
                return provider, result
            await asyncio.to_thread(self._note, node, provider, later[0], result, launch.request)
        return usable[-1], result

    def _note(self, node: NodeRecord, provider: str, to: str, error: ProvisionError, request: str | None) -> None:
        """Say in the node's events (store and bus) why it goes to the next provider."""
        why = f"{provider} could not give it ({error.kind.value}: {error.message[:300]}); trying {to}"
        log.info("lock request=%s node=%s type=%s: %s", request, node.name, node.machine_type, why)
        self.lab.store.record_stage(node.name, STAGE, "fallback", 1, why, who="lablease")
        self.lab.bus.publish(LabEvent(node=node.name, machine_type=provider, stage=STAGE, status="fallback",
                                      request=request, message=why, made={"from": provider, "to": to}))
