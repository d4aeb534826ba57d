"""The lab service: locking nodes of a cloud machine type provisions them; unlocking destroys them.

It sits behind the lock API (``lablease serve`` with a ``libcloud:`` section): the HTTP layer asks
``handles()``/``owns()`` and hands those requests here; everything else stays paddles' plain
locking. Request handlers await the provider workers' futures, so no request thread is held for
the minutes a launch takes. All or nothing: a lock request either gets every node SSH-ready, or
every node of it is destroyed and unlocked again and the answer is 503 with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from lablease.config.lab import LabConfig
from lablease.lab.bus import ProgressBus
from lablease.lab.busy import Busy
from lablease.lab.fallback import FallbackLock, Launch
from lablease.lab.force import force_unlock
from lablease.lab.health import ProviderHealth, RefillBackoff
from lablease.lab.host import LabObserver
from lablease.lab.heartbeat import Heartbeat
from lablease.lab.leases import new_owner
from lablease.lab.messages import explain_refusal
from lablease.lab.policy import LabPolicy
from lablease.lab.pool import WarmPool
from lablease.lab.preflight import RECHECK, Preflight
from lablease.lab.reconciler import Reconciler
from lablease.lab.routing import Routes
from lablease.lab.undo import FailedLock, clean, failure_message, gather_unless, node_line
from lablease.lab.workers import ProviderWorker
from lablease.lockapi.locking import LockRequest
from lablease.provision.context import ProvisionerOptions
from lablease.provision.engine import provisioner_from_config
from lablease.provision.errorkinds import ErrorKind
from lablease.provision.errors import ProvisionError
from lablease.provision.hints import HintsError, merge_hints
from lablease.provision.models import NodeInfo
from lablease.store import Forbidden, InvalidRequest, NodeRecord, NodeStore, NotFound, Shortage, Unavailable
from lablease.store.lifecycle import NodeState

log = logging.getLogger(__name__)

DRAINING = "the lab service is shutting down; retry in a moment"


class LabService:
    """Cloud machine types of ``config`` provisioned and destroyed through ``store``'s state machine.

    ``provisioner_options`` build every provider's Provisioner; ``observer`` (the lab's metrics) is wired
    in here, at construction: it gets the bus's events, each reconciler pass and every cloud request.
    """

    def __init__(self, store: NodeStore, config: LabConfig, *, bus: ProgressBus | None = None,
                 lease_seconds: float = 30.0, reconcile_interval: float = 60.0,
                 provisioner_options: ProvisionerOptions | None = None, observer: LabObserver | None = None):
        self.store = store
        self.config = config
        self.bus = bus or ProgressBus()
        self.owner = new_owner()  # who holds this process's leases (lab.leases: host, pid, start time)
        self.lease_seconds = lease_seconds
        self.draining = False
        self._inflight = Busy()  # lock and unlock requests at work, for the graceful shutdown
        self.workers: dict[str, ProviderWorker] = {}  # by provider (a libcloud.providers key)
        self.routes = Routes(config)  # machine types -> providers (lab.routing)
        self.fallback = FallbackLock(self)  # locks of multi-provider types (lab.fallback)
        if observer is not None:
            self.bus.subscribe(observer.on_event)
        options = provisioner_options or ProvisionerOptions()
        try:
            for machine_type in config.libcloud.providers:
                if observer is not None:
                    options = replace(options, on_call=observer.cloud_call_observer(machine_type))
                build = partial(self._build_provisioner, machine_type, options)
                self.workers[machine_type] = ProviderWorker(machine_type, build, store, self.bus, actor="lablease")
        except BaseException:
            self.close()
            raise
        self.preflights = {t: Preflight(t, w.prov) for t, w in self.workers.items()}
        self._heartbeat = Heartbeat(store, self.owner, lease_seconds, self.workers)
        self._heartbeat.start()
        self.policy = LabPolicy(store, config)  # quotas, lock expiry and holds (lab.policy)
        self.health = {t: ProviderHealth(t, RefillBackoff(w.prov.provider.refill_backoff,
                                                          w.prov.provider.refill_backoff_max),
                                         on_change=observer.on_health if observer is not None else None)
                       for t, w in self.workers.items()}
        # Every provider gets one: without min_ready it only drains warm nodes left from an earlier setting.
        self.pools = {t: WarmPool(self, w, self.health[t]) for t, w in self.workers.items()}
        for pool in self.pools.values():
            pool.start()
        dns = next((w.prov.dns_client for w in self.workers.values() if w.prov.dns_client is not None), None)
        self.reconciler = Reconciler(self, reconcile_interval, dns_client=dns,
                                     on_report=observer.on_reconcile if observer is not None else None,
                                     expiry=self.policy.expiry_pass(self))
        self.reconciler.start()

    def _build_provisioner(self, machine_type: str, options: ProvisionerOptions, on_progress):  # noqa: ANN001, ANN202
        return provisioner_from_config(self.config, machine_type, None, options, on_progress=on_progress)

    # -- what is ours -------------------------------------------------------------------------------

    def cloud_machine_types(self) -> list[str]:
        return sorted(self.routes.types)

    def handles(self, machine_type: str | None) -> bool:
        """Whether locking ``machine_type`` (``a|b`` counts if any is ours) means provisioning."""
        return any(t in self.routes.types for t in (machine_type or "").split("|"))

    def owns(self, node: NodeRecord) -> bool:
        return (node.machine_type or "") in self.routes.types

    def worker_of(self, node: NodeRecord) -> ProviderWorker:
        """The worker of the provider that made ``node`` (or would make it first)."""
        return self.workers[self.routes.provider_of(node) or ""]

    def presented(self, node: NodeRecord) -> dict[str, Any]:
        """Fields a client sees differently for a node this service manages (docs/lab-service.md).

        ``is_vm`` is shown false: teuthology's client acts on VM records itself (its create_if_vm and
        destroy_if_vm hand them to downburst or its own libcloud), which would fail or create a second
        server. The service creates and destroys these nodes, so to clients they are plain machines.
        """
        return {"is_vm": False, **self.policy.presented(node)}

    def owns_any(self, names: Sequence[str]) -> bool:
        for name in names:
            try:
                if self.owns(self.store.get(name)):
                    return True
            except NotFound:
                continue
        return False

    # -- locking ------------------------------------------------------------------------------------

    async def lock_many(self, req: LockRequest, abandoned: asyncio.Event | None = None) -> list[NodeRecord]:
        """Lock ``count`` idle nodes of a cloud type and provision them; all ready, or 503 with all undone.

        When ``abandoned`` is set before the nodes are ready (the client went away), they are undone too.
        """
        types = [t for t in req.machine_type.split("|") if t]
        if len(types) != 1:
            raise InvalidRequest(f"machine_type: lock one cloud machine type at a time, not {req.machine_type!r}")
        worker = self.workers[self.routes.providers(types[0])[0]]
        os_type, os_version = self._os(worker, req.os_type, req.os_version)
        req = replace(req, os_type=os_type, os_version=os_version)
        self._check_hints(req.hints)
        with self._working():
            await self.policy.admit(req)  # over quota: 503 before any warm node is claimed or record moves
            if self.routes.is_multi(types[0]):  # no warm pool of its own: lab.fallback
                return await self.policy.begin(await self.fallback.lock_many(req, abandoned), req.lock_hours)
            pool = self.pools.get(types[0])
            if pool is None or not pool.wants(os_type, os_version):
                return await self.policy.begin(await self._lock_cold(worker, [], req, abandoned), req.lock_hours)
            with pool.claiming():
                warm = await self._claim_warm(pool, req)
                return await self.policy.begin(await self._lock_cold(worker, warm, req, abandoned), req.lock_hours)

    async def _lock_cold(self, worker: ProviderWorker, warm: list[NodeRecord], req: LockRequest,
                         abandoned: asyncio.Event | None) -> list[NodeRecord]:
        """Lock and provision what the warm nodes do not cover; all or nothing (warm ones go back to the pool).
        ``req`` has its OS filled in."""
        count, machine_type, locked_by, request = req.count, req.machine_type, req.locked_by, req.request_id
        os_type, os_version = req.os_type or "", req.os_version or ""
        if len(warm) == count:
            log.info("lock request=%s type=%s count=%d owner=%s answered from the warm pool: %s", request,
                     machine_type, count, locked_by, ",".join(n.name for n in warm))
            return warm
        try:
            await self._preflight(machine_type)
        except Unavailable:
            await self._return_to_pool(warm)
            raise
        try:
            nodes = await asyncio.to_thread(
                self.store.lock_many, count - len(warm), machine_type, locked_by, req.description, os_type=os_type,
                os_version=os_version, arch=req.arch, provision=True, lease_owner=self.owner,
                lease_seconds=self.lease_seconds)
        except Unavailable as exc:
            await self._return_to_pool(warm)
            if warm:  # say how many there were in all, as paddles' message does
                idle = exc.available if isinstance(exc, Shortage) else 0
                raise Shortage(count, idle + len(warm)) from None
            raise
        log.info("lock request=%s type=%s count=%d owner=%s warm=%s nodes=%s", request, machine_type, count,
                 locked_by, ",".join(n.name for n in warm) or "none", ",".join(n.name for n in nodes))
        try:
            cold = await self._provision(worker, nodes, os_type, os_version, req.hints, request, locked_by, abandoned)
        except Unavailable:
            await self._return_to_pool(warm)
            raise
        return sorted(warm + cold, key=lambda n: n.name)

    async def _claim_warm(self, pool: WarmPool, req: LockRequest) -> list[NodeRecord]:
        """Warm nodes of the request's OS, claimed and re-checked over SSH; one that fails is destroyed, never lent."""
        claimed = await asyncio.to_thread(self.store.claim_warm, req.count, req.machine_type, req.os_type,
                                          req.os_version, req.locked_by, req.description)
        checks = await asyncio.gather(*(asyncio.wrap_future(pool.worker.pool.submit(pool.check, n)) for n in claimed))
        for node, good in zip(claimed, checks):
            if not good:
                await asyncio.to_thread(self.store.transition, node.name, NodeState.READY, NodeState.DESTROYING,
                                        who="warm-pool", last_error="failed its check over SSH before being lent; replaced")
                asyncio.ensure_future(self._destroy(pool.worker, node.name, None))
        return [n for n, good in zip(claimed, checks) if good]

    async def _return_to_pool(self, warm: list[NodeRecord]) -> None:
        for node in warm:
            await asyncio.to_thread(self.store.to_pool, node.name, who="lablease")

    async def lock_one(self, name: str, values: dict[str, Any], *, hints: Any = None) -> NodeRecord:
        """``PUT /nodes/<name>/lock/`` locking a cloud node: provision it like a lock_many of one."""
        node = await asyncio.to_thread(self.store.get, name)
        worker = self.worker_of(node)
        os_type, os_version = self._os(worker, values.get("os_type"), values.get("os_version"))
        self._check_hints(hints)
        multi = self.routes.is_multi(node.machine_type)
        with self._working():
            if multi:  # the providers whose preflight passes, in order
                usable = await self.fallback.usable(node.machine_type or "")
            else:
                await self._preflight(node.machine_type or "")
            locked, started = await asyncio.to_thread(
                self.store.lock_to_provision, name, {**values, "os_type": os_type, "os_version": os_version},
                lease_owner=self.owner, lease_seconds=self.lease_seconds)
            if not started:
                return locked  # paddles: the same owner re-locking with the same description
            if multi:
                launch = Launch(os_type, os_version, hints, values.get("request_id"), threading.Event())
                got = await self.fallback.provision([locked], usable, launch, values.get("locked_by"))
            else:
                got = await self._provision(worker, [locked], os_type, os_version, hints, values.get("request_id"),
                                            values.get("locked_by"))
            return (await self.policy.begin(got))[0]

    async def _preflight(self, machine_type: str) -> None:
        """503 before any record moves when the cloud refuses the credentials or the DNS service is down."""
        problem = await asyncio.to_thread(self.preflights[machine_type].problem)
        if problem:
            raise Unavailable(problem)

    def _os(self, worker: ProviderWorker, os_type: str | None, os_version: str | None) -> tuple[str, str]:
        p = worker.prov.provider
        if os_type and not os_version and os_type != p.default_os_type:
            raise InvalidRequest(f"os_version: give the version of {os_type} to provision (e.g. with --os-version)")
        return os_type or p.default_os_type, str(os_version or p.default_os_version)

    def _check_hints(self, hints: Any) -> None:
        try:
            merge_hints(self.config.openstack, hints)
        except HintsError as exc:
            raise InvalidRequest(f"openstack: {exc}") from None

    async def _provision(self, worker: ProviderWorker, nodes: list[NodeRecord], os_type: str, os_version: str,
                         hints: Any, request: str | None, who: str | None,
                         abandoned: asyncio.Event | None = None) -> list[NodeRecord]:
        stop = threading.Event()  # this request's creates only: set when its client goes away
        futures = [asyncio.wrap_future(worker.launch(n.name, os_type, os_version, hints, request, stop)) for n in nodes]
        results = await gather_unless(futures, abandoned, stop)
        gone = abandoned is not None and abandoned.is_set()
        if gone:
            log.info("lock request=%s: the client (%s) went away; stopping its creates and rolling back", request, who)
        failures = [(n, r) for n, r in zip(nodes, results) if isinstance(r, BaseException) and not gone]
        lost: set[str] = set()
        if not failures and not gone:
            lost = await asyncio.to_thread(self._lost, nodes)
            if not lost:
                return await asyncio.to_thread(self._mark_ready, nodes, results)
            failures = [(n, RuntimeError("an admin forced it free, or another process took it over"))
                        for n in nodes if n.name in lost]
        if any(isinstance(e, ProvisionError) and e.kind in RECHECK for _, e in failures):
            self.preflights[worker.machine_type].forget()
        reason = "; ".join(node_line(n, e) for n, e in failures) or \
            f"the client ({who}) disconnected before its nodes were ready"
        log.warning("lock request=%s failed, undoing all %d nodes: %s", request, len(nodes), reason)
        left, handed = await FailedLock(self.store, worker, partial(self._destroy, worker)).undo(
            nodes, results, reason, request, lost=await asyncio.to_thread(self._lost, nodes), abandoned=gone)
        freed = sum(1 for r in results if clean(r))
        message = failure_message(reason, freed, handed, left)
        raise Unavailable(message)

    def _lost(self, nodes: list[NodeRecord]) -> set[str]:
        """Names of ``nodes`` no longer ``provisioning`` under this process's lease (forced free, taken over)."""
        lost = set()
        for node in nodes:
            now = self.store.get(node.name)
            if now.state != NodeState.PROVISIONING or now.lease_owner != self.owner:
                lost.add(node.name)
        return lost

    def _mark_ready(self, nodes: list[NodeRecord], infos: list[NodeInfo]) -> list[NodeRecord]:
        ready = []
        for node, info in zip(nodes, infos):
            ready.append(self.store.transition(
                node.name, NodeState.PROVISIONING, NodeState.READY, who="lablease", ssh_pub_key=info.host_key,
                addresses=[info.address], cloud_server_id=info.server_id, volume_ids=list(info.volume_ids),
                lease_owner=None, lease_expires=None))
        return ready

    # -- unlocking ----------------------------------------------------------------------------------

    async def unlock_many(self, names: Sequence[str], locked_by: str,
                          description: str | None = None) -> list[NodeRecord]:
        """Unlock ``names`` (paddles' rules for every one first, all or none); cloud nodes are destroyed
        before their records are freed. 503 when a destroy failed (that node stays locked)."""
        try:
            destroy, unlocked = await asyncio.to_thread(
                self.store.begin_destroy, list(names), locked_by, description, lease_owner=self.owner,
                lease_seconds=self.lease_seconds)
        except Forbidden as exc:  # a lock abandoned by a dead process: say so, and when it is cleaned
            raise Forbidden(await asyncio.to_thread(explain_refusal, self.store, names, exc.message,
                                                    self.reconciler.interval)) from None
        with self._working(refuse=False):
            destroy = [n for n in destroy if self.owns(n)]
            ok = await asyncio.gather(*(self._destroy(self.worker_of(n), n.name, None) for n in destroy))
        failed = [n.name for n, good in zip(destroy, ok) if not good]
        if failed:
            raise Unavailable(f"destroying {', '.join(failed)} failed; they stay locked in destroy-failed "
                              f"(see last_error); unlocking them again retries the destroy")
        by_name = {n.name: n for n in unlocked}
        for n in destroy:
            by_name[n.name] = await asyncio.to_thread(self.store.get, n.name)
        return [by_name[n] for n in names if n in by_name]

    async def force_unlock(self, name: str, by: str) -> NodeRecord:
        """An admin's override (lab.force): destroy and free ``name`` in any state; events name ``by``."""
        return await asyncio.to_thread(force_unlock, self, name, by)

    async def _destroy(self, worker: ProviderWorker, name: str, request: str | None) -> bool:
        """``destroying -> idle`` once everything is gone, else ``-> destroy-failed`` with the error."""
        try:
            await asyncio.wrap_future(worker.destroy(name, request))
        except Exception as exc:  # noqa: BLE001 - ProvisionError, or a bug: either way the node is not clean
            return await asyncio.to_thread(worker.record_destroyed, name, request, exc, "lablease")
        return await asyncio.to_thread(worker.record_destroyed, name, request, None, "lablease")

    # -- shutting down ------------------------------------------------------------------------------

    def _working(self, refuse: bool = True) -> Busy:
        if refuse and self.draining:
            raise Unavailable(DRAINING)
        return self._inflight

    def begin_drain(self) -> None:
        """Stop taking new locks (they get 503); work in flight goes on."""
        self.draining = True

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for work in flight; then cancel what is left (it rolls back) and wait
        for that. Returns whether everything finished within the bound."""
        self.begin_drain()
        if self._inflight.wait_idle(timeout):
            return True
        log.warning("shutdown: %d requests still in flight after %.0fs; cancelling them (they roll back)",
                    self._inflight.count, timeout)
        for worker in self.workers.values():
            cancel = getattr(worker.prov, "cancel", None)
            if cancel is not None:
                cancel()
        return self._inflight.wait_idle(max(timeout, 60.0))

    def close(self) -> None:
        reconciler = getattr(self, "reconciler", None)
        if reconciler is not None:
            reconciler.stop()
        for pool in getattr(self, "pools", {}).values():
            pool.stop()
        self._stop_heartbeat()
        for worker in self.workers.values():
            worker.close()
        self.workers = {}

    def _stop_heartbeat(self) -> None:
        heartbeat = getattr(self, "_heartbeat", None)
        if heartbeat is not None:
            heartbeat.stop()

    def status(self) -> dict[str, Any]:
        return {"owner": self.owner, "draining": self.draining, "in_flight": self._inflight.count,
                "providers": {t: {"max_parallel": w.prov.provider.max_parallel,
                                  "min_ready": dict(w.prov.provider.min_ready),
                                  "health": self.health[t].snapshot().to_json()} for t, w in self.workers.items()},
                "reconciler": {"interval": self.reconciler.interval,
                               "last_pass": [r.to_json() for r in self.reconciler.last]}}
