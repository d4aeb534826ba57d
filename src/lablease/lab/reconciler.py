"""The reconciler: compares lock records, the cloud's tagged servers and volumes, and the zone, and heals.

Level-triggered and three-way, as Nodepool's cleanup is: every pass looks at what is, not at what
happened. Per provider it

- takes over nodes stuck in ``provisioning``/``destroying`` whose owner's lease expired, or whose owner
  is a dead process of this host (lab.leases): they are destroyed by name and freed (a lock that died
  half-way never answered anybody); the first pass runs at start-up;
- destroys nodes in ``destroy-failed`` again, with backoff, until they are gone;
- deletes servers and volumes tagged for this lab that no record owns (by node name and attempt
  id), but only once they were seen as leaks in two consecutive passes, so a launch racing the
  listing is never hit; untagged resources and other labs' are never touched;
- deletes DNS names of free cloud nodes (same two-pass rule).

One pass at a time across processes (``store.exclusive``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from lablease.lab.leases import abandoned, gone_here
from lablease.store import NodeRecord, NodeState
from lablease.store.exclusive import exclusive
from lablease.store.records import utcnow
from lablease.store.states import Conflict

if TYPE_CHECKING:
    from lablease.lab.host import LabHost
    from lablease.lab.workers import ProviderWorker

log = logging.getLogger(__name__)

OWNING = (NodeState.PROVISIONING, NodeState.READY)
# States a process works through: a dead owner's node in one of them is taken over.
TAKEN_OVER = (NodeState.PROVISIONING, NodeState.DESTROYING)
RETRY_FIRST, RETRY_CAP = 30.0, 3600.0
Expiry = Callable[["ProviderWorker", list[NodeRecord], "PassReport"], None]


def _by_kind() -> dict[str, list[str]]:
    return {"servers": [], "volumes": [], "floating_ips": [], "dns": []}


@dataclass
class PassReport:
    """What one pass of one provider found and did; ``pending`` leaks are deleted next pass if still there."""

    machine_type: str
    found: dict[str, list[str]] = field(default_factory=lambda: _by_kind())
    pending: dict[str, list[str]] = field(default_factory=lambda: _by_kind())
    deleted: dict[str, list[str]] = field(default_factory=lambda: _by_kind())
    taken_over: list[str] = field(default_factory=list)
    destroys_retried: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    dry_run: bool = False
    actions: list[dict[str, Any]] = field(default_factory=list)  # every planned or done action, with its reason

    def act(self, action: str, kind: str, ident: str, node: str | None, reason: str, done: bool) -> None:
        """Note an action: ``done`` false means planned (a dry run) or attempted and failed."""
        self.actions.append({"action": action, "kind": kind, "id": ident, "node": node, "reason": reason,
                             "done": done})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        count = {k: len(v) for k, v in self.deleted.items()}
        return (f"type={self.machine_type} leaks_found={sum(len(v) for v in self.found.values())} "
                f"deleted={count} taken_over={len(self.taken_over)} destroys_retried={len(self.destroys_retried)} "
                f"failed={len(self.failed)}{' dry_run' if self.dry_run else ''}")


class Reconciler:
    """Runs passes for every provider of ``lab``, on a timer (``start``) or on demand (``run``); a provider's pass
    covers the records it looks after (lab.routing: its own type's, and those of multi-provider types it made)."""

    def __init__(self, lab: "LabHost", interval: float, *, dns_client: Any = None,
                 on_report: Callable[[PassReport], None] | None = None, expiry: Expiry | None = None):
        self.lab = lab
        self.interval = interval
        self.dns = dns_client
        self._seen: dict[tuple[str, str], set[str]] = {}  # (machine type, kind) -> leak ids of the last pass
        self._retry_at: dict[str, tuple[float, float]] = {}  # node -> (next try, current delay)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: list[PassReport] = []
        self.on_report = on_report  # metrics hook: called with each PassReport (not of a dry run)
        self.expiry = expiry  # lock expiry and holds (lab.expiry.ExpiryPass), applied in each pass

    # -- running -----------------------------------------------------------------------------------

    def start(self) -> None:
        if self.interval > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="lab-reconciler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        # The first pass runs at start-up: a restarted service takes over its dead predecessor's nodes at once.
        while True:
            try:
                self.run()
            except Exception:  # noqa: BLE001 - a cloud or database outage: the next pass tries again
                log.exception("reconcile pass failed")
            if self._stop.wait(self.interval):
                return

    def run(self, machine_type: str | None = None, dry_run: bool = False,
            settle: float | None = None) -> list[PassReport] | None:
        """One pass over ``machine_type`` (or every provider); None when another process's pass is running.

        A leak is deleted only once seen twice: by the timer's passes, this pass and the one before; with
        ``settle`` (an operator's pass) the pass looks once, waits ``settle`` seconds and looks again, so
        what it reports (or, dry, plans) is final in one call.
        """
        with exclusive(self.lab.store.engines, "reconcile") as mine:
            if not mine:
                log.info("reconcile pass skipped: another process is running one")
                return None
            workers = [w for t, w in sorted(self.lab.workers.items()) if machine_type in (None, t)]
            seen = self._seen
            if settle is not None:
                seen = {}
                for worker in workers:
                    self._look(worker, seen)
                time.sleep(settle)
            reports = [self._pass(worker, dry_run, seen) for worker in workers]
        if not dry_run:
            self.last = reports
        for report in reports:
            log.info("reconcile pass %s", report.summary())
            if self.on_report is not None and not dry_run:
                self.on_report(report)
        return reports

    # -- one provider ------------------------------------------------------------------------------

    def _look(self, worker: "ProviderWorker", seen: dict[tuple[str, str], set[str]]) -> None:
        """The leaks a pass would see now, written to ``seen`` only: nothing is taken over or deleted."""
        look = PassReport(worker.machine_type, dry_run=True)
        records = self.lab.routes.records_for(self.lab.store, worker.machine_type)
        self._cloud_leaks(worker, records, look, {})
        if self.dns is not None:
            self._dns_leaks(worker, records, look, {})
        for kind, ids in look.pending.items():
            seen[(worker.machine_type, kind)] = set(ids)

    def _pass(self, worker: "ProviderWorker", dry_run: bool,
              seen: dict[tuple[str, str], set[str]]) -> PassReport:
        report = PassReport(worker.machine_type, dry_run=dry_run)
        records = self.lab.routes.records_for(self.lab.store, worker.machine_type)
        now = utcnow()
        for node in records:
            if node.state in TAKEN_OVER and _lease_expired(node, now, self.lab.owner):
                self._take_over(worker, node, report)
            elif node.state == NodeState.DESTROY_FAILED:
                self._retry_destroy(worker, node, report)
        if self.expiry is not None:
            self.expiry(worker, records, report)
        self._cloud_leaks(worker, records, report, seen)
        if self.dns is not None:
            self._dns_leaks(worker, records, report, seen)
        return report

    def _take_over(self, worker: "ProviderWorker", node: NodeRecord, report: PassReport) -> None:
        gone = gone_here(node.lease_owner)
        why = (f"{node.state} by {node.lease_owner or 'nobody'}, "
               + ("whose process is gone" if gone else "whose lease expired"
                  f"{' at ' + node.lease_expires.isoformat(timespec='seconds') if node.lease_expires else ''}")
               + ": destroy what it made and free the node")
        if report.dry_run:
            report.taken_over.append(node.name)
            report.act("take over", "node", node.name, node.name, why, False)
            return
        try:
            if node.state == NodeState.PROVISIONING:
                self.lab.store.retake(node.name, NodeState.PROVISIONING, NodeState.DESTROYING,
                                      lease_owner=self.lab.owner, lease_seconds=self.lab.lease_seconds, who="reconciler",
                                      gone=node.lease_owner if gone else None,
                                      last_error=f"its lock was abandoned by {node.lease_owner} (the process "
                                                 "working on it stopped)")
            else:
                self.lab.store.retake(node.name, NodeState.DESTROYING, None, lease_owner=self.lab.owner,
                                      lease_seconds=self.lab.lease_seconds, who="reconciler",
                                      gone=node.lease_owner if gone else None)
        except Conflict as exc:  # someone else took it, or its owner came back
            log.info("reconciler: not taking over %s: %s", node.name, exc.message)
            return
        log.warning("reconciler: taking over %s (was %s, %s of %s)", node.name, node.state,
                    "process gone" if gone else "lease expired", node.lease_owner)
        report.taken_over.append(node.name)
        done = worker.destroy_now(node.name, who="reconciler")
        report.act("take over", "node", node.name, node.name, why, done)
        if not done:
            report.failed.append(node.name)

    def _retry_destroy(self, worker: "ProviderWorker", node: NodeRecord, report: PassReport) -> None:
        next_try, delay = self._retry_at.get(node.name, (0.0, RETRY_FIRST))
        if time.monotonic() < next_try:
            return
        report.destroys_retried.append(node.name)
        why = f"destroy-failed: {(node.last_error or 'an earlier destroy failed')[:200]}"
        if report.dry_run:
            report.act("retry destroy", "node", node.name, node.name, why, False)
            return
        try:
            self.lab.store.retake(node.name, NodeState.DESTROY_FAILED, NodeState.DESTROYING, lease_owner=self.lab.owner,
                                  lease_seconds=self.lab.lease_seconds, who="reconciler")
        except Conflict:
            return
        done = worker.destroy_now(node.name, who="reconciler")
        report.act("retry destroy", "node", node.name, node.name, why, done)
        if done:
            self._retry_at.pop(node.name, None)
        else:
            report.failed.append(node.name)
            self._retry_at[node.name] = (time.monotonic() + delay, min(delay * 2, RETRY_CAP))

    def _confirmed(self, machine_type: str, kind: str, candidates: set[str], report: PassReport,
                   seen: dict[tuple[str, str], set[str]]) -> set[str]:
        """Leaks seen in this look and the one before; the rest wait for the next pass."""
        key = (machine_type, kind)
        seen_before = seen.get(key, set())
        report.found[kind] = sorted(candidates)
        confirmed = candidates & seen_before
        report.pending[kind] = sorted(candidates - confirmed)
        if not report.dry_run and seen is self._seen:
            self._seen[key] = candidates - confirmed
        return confirmed

    def _cloud_leaks(self, worker: "ProviderWorker", records: list[NodeRecord], report: PassReport,
                     seen: dict[tuple[str, str], set[str]]) -> None:
        prov = worker.prov
        owners = {(prov.short_name(r.name), r.attempt_id) for r in records if r.state in OWNING}
        # A node being destroyed owns everything of its name: its destroy removes it.
        busy = {prov.short_name(r.name) for r in records if r.state in (NodeState.DESTROYING, NodeState.DESTROY_FAILED)}
        owned = prov.list_owned()

        def leaked(node: str, attempt: str) -> bool:
            return (node, attempt) not in owners and node not in busy

        servers = self._confirmed(worker.machine_type, "servers",
                                  {s.id for s in owned.servers if leaked(s.node, s.attempt)}, report, seen)
        volumes = self._confirmed(worker.machine_type, "volumes",
                                  {v.id for v in owned.volumes if leaked(v.node, v.attempt)}, report, seen)
        # A floating IP is a leak when no record owns its attempt, as a server is, or, as Nodepool's
        # clean-floating-ips has it, when it is free (its server was deleted under it): nothing uses it then.
        fips = self._confirmed(worker.machine_type, "floating_ips",
                               {f.id for f in owned.floating_ips if leaked(f.node, f.attempt) or f.port_id is None},
                               report, seen)
        if not (servers or volumes or fips):
            return
        described = {f.id: f.description for f in owned.floating_ips if f.id in fips}
        problems = [] if report.dry_run else prov.remove_leaks(sorted(servers), sorted(volumes), described)
        for kind, ids, made in (("server", servers, owned.servers), ("volume", volumes, owned.volumes),
                                ("floating IP", fips, owned.floating_ips)):
            for item in sorted((m for m in made if m.id in ids), key=lambda m: m.id):
                why = _leak_reason(kind, item.node, item.attempt)
                if kind == "floating IP" and getattr(item, "port_id", "") is None:
                    why = f"free floating IP {item.address} tagged for this lab as node {item.node}: nothing uses it"
                failed = any(item.id in p for p in problems)
                report.act("delete", kind, item.id, item.node, why, not report.dry_run and not failed)
        if report.dry_run:
            return
        report.failed.extend(problems)
        report.deleted["servers"] = sorted(servers)
        report.deleted["volumes"] = sorted(volumes)
        report.deleted["floating_ips"] = sorted(fips)
        log.warning("reconciler: deleted leaked servers=%s volumes=%s floating_ips=%s%s", sorted(servers),
                    sorted(volumes), sorted(fips), f" problems={problems}" if problems else "")

    def _dns_leaks(self, worker: "ProviderWorker", records: list[NodeRecord], report: PassReport,
                   seen: dict[tuple[str, str], set[str]]) -> None:
        free = {worker.prov.short_name(r.name) for r in records if r.state == NodeState.IDLE}
        if not free:
            return
        try:
            in_zone = set(self.dns.names())
        except Exception as exc:  # noqa: BLE001 - DNSClientError: try again next pass
            report.failed.append(f"listing the zone: {exc}")
            return
        names = self._confirmed(worker.machine_type, "dns", free & in_zone, report, seen)
        why = "its node is idle (not locked) but its name is still in the zone"
        for name in sorted(names):
            if report.dry_run:
                report.act("delete", "dns", name, name, why, False)
                continue
            try:
                self.dns.delete(name)
                report.deleted["dns"].append(name)
                report.act("delete", "dns", name, name, why, True)
            except Exception as exc:  # noqa: BLE001
                report.failed.append(f"DNS record of {name}: {exc}")
                report.act("delete", "dns", name, name, why, False)
        if report.deleted["dns"]:
            log.warning("reconciler: deleted DNS records of free nodes %s", report.deleted["dns"])


def _lease_expired(node: NodeRecord, now: datetime, me: str) -> bool:
    """Whether ``node``'s lease may be taken over: expired, or its owner a dead process of this host."""
    if node.lease_owner == me:
        return False  # this process is working on it; its heartbeat keeps the lease
    return abandoned(node.lease_owner, node.lease_expires, now)


def _leak_reason(kind: str, node: str, attempt: str) -> str:
    """Why a tagged resource of this lab counts as leaked (seen in two looks, so no create is racing it)."""
    return (f"{kind} tagged for this lab as node {node}, attempt {attempt}: no record holds that attempt "
            f"(seen in two looks)")
