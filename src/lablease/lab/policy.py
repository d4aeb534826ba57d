"""The lab's policy, as the service uses it: quotas before a lock, a lock's expiry once it is answered, the
owner's extend, hold and release, what clients see of it, and its gauges (docs/lab-service.md, "Lab policy").

The rules are lab.expiry (expiry and holds) and lab.quota; the rows' changes are store.policy.LockTerms.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lablease.config.lab import LabConfig
from lablease.config.policy import LockPolicy
from lablease.lab.expiry import ExpiryPass, Verdict, expiry_of, held, hours, verdict, when
from lablease.lab.quota import limited, quota_refusal
from lablease.lockapi.locking import LockRequest
from lablease.store import InvalidRequest, NodeFilter, NodeRecord, NodeState, NodeStore, Unavailable
from lablease.store.policy import LockTerms
from lablease.store.records import format_time, utcnow

if TYPE_CHECKING:
    from lablease.lab.host import LabHost

log = logging.getLogger(__name__)
SETTLED = (NodeState.PROVISIONING, NodeState.READY)  # a lock whose terms an owner may change


class LabPolicy:
    """Quotas, expiry and holds of ``config``'s cloud machine types, over ``store``'s rows."""

    def __init__(self, store: NodeStore, config: LabConfig) -> None:
        self.store = store
        self.terms = LockTerms(store)
        self.policies: dict[str, LockPolicy] = {t: p.policy for t, p in config.libcloud.providers.items()
                                                if p.policy is not None}
        self.quotas = config.libcloud.quotas
        self.cloud_types = set(config.libcloud.providers)

    # -- locking ----------------------------------------------------------------------------------

    def check_hours(self, machine_type: str, lock_hours: float | None) -> None:
        """400 for a ``lock_hours`` this type cannot give (no policy, or more than its maximum)."""
        if lock_hours is None:
            return
        policy = self.policies.get(machine_type)
        if policy is None:
            raise InvalidRequest(f"lock_hours: locks of {machine_type} do not expire (its provider has no policy); "
                                 "leave lock_hours out")
        if lock_hours > policy.max_hours:
            raise InvalidRequest(f"lock_hours: at most {policy.max_hours:g} for {machine_type} "
                                 f"(libcloud.providers.{machine_type}.policy.lock_hours_max)")

    async def admit(self, req: LockRequest) -> None:
        """Refuse a lock before anything is claimed: a ``lock_hours`` the type cannot give (400), or an owner
        over quota (503, so teuthology's scheduler waits and retries)."""
        self.check_hours(req.machine_type, req.lock_hours)
        if not limited(self.quotas, req.locked_by):
            return
        locked = await asyncio.to_thread(self.store.list, NodeFilter(locked=True, locked_by=req.locked_by))
        held_now = [n for n in locked if n.machine_type in self.cloud_types]
        refused = quota_refusal(self.quotas, req.locked_by, req.machine_type, req.count, held_now)
        if refused:
            log.info("lock refused type=%s count=%d owner=%s: %s", req.machine_type, req.count, req.locked_by,
                     refused)
            raise Unavailable(refused)

    async def begin(self, nodes: list[NodeRecord], lock_hours: float | None = None) -> list[NodeRecord]:
        """The lock is answered: its expiry starts now (``lock_hours``, else the type's default)."""
        names = [n.name for n in nodes if n.machine_type in self.policies]
        if not names:
            return nodes

        def expires(node: NodeRecord) -> datetime:
            return utcnow() + hours(lock_hours or self.policies[node.machine_type or ""].lock_hours)
        done = {n.name: n for n in await asyncio.to_thread(self.terms.begin, names, expires)}
        return [done.get(n.name, n) for n in nodes]

    # -- an owner's changes -----------------------------------------------------------------------

    def _policy(self, node: NodeRecord, action: str) -> LockPolicy:
        policy = self.policies.get(node.machine_type or "")
        if policy is None:
            raise InvalidRequest(f"Cannot {action} {node.name}: locks of {node.machine_type} do not expire "
                                 "(its provider has no policy)")
        return policy

    def extend(self, name: str, locked_by: str, by_hours: float) -> NodeRecord:
        """Move the lock's expiry ``by_hours`` later (from now if it is past), at most ``lock_hours_max`` after
        the lock began."""
        policy = self._policy(self.store.get(name), "extend")

        def new_end(node: NodeRecord, now: datetime) -> datetime:
            return max(expiry_of(node, policy) or now, now) + hours(by_hours)

        def check(node: NodeRecord, now: datetime) -> str | None:
            if node.state not in SETTLED:
                return f"Cannot extend {node.name}: it is {node.state}"
            limit = (node.locked_since or now) + hours(policy.max_hours)
            if new_end(node, now) > limit + timedelta(seconds=1):
                room = max((limit - max(expiry_of(node, policy) or now, now)).total_seconds() / 3600, 0)
                return (f"Cannot extend {node.name} by {by_hours:g} h: a lock of {node.machine_type} lasts at most "
                        f"{policy.max_hours:g} h (libcloud.providers.{node.machine_type}.policy.lock_hours_max), "
                        f"until {when(limit)}; it expires at {when(expiry_of(node, policy))}, so at most "
                        f"{room:.2f} h more")
            return None
        return self.terms.owned_change(name, locked_by, "extend", lambda n, now: {
            "expires_at": new_end(n, now), "expiry_warned": False}, check)

    def hold(self, name: str, locked_by: str, for_hours: float, reason: str) -> NodeRecord:
        """Keep the node past its expiry for ``for_hours`` from now (at most ``hold_hours_max``), saying why."""
        policy = self._policy(self.store.get(name), "hold")

        def check(node: NodeRecord, now: datetime) -> str | None:
            if node.state not in SETTLED:
                return f"Cannot hold {node.name}: it is {node.state}"
            if for_hours > policy.hold_hours_max:
                return (f"Cannot hold {node.name} for {for_hours:g} h: at most {policy.hold_hours_max:g} h "
                        f"(libcloud.providers.{node.machine_type}.policy.hold_hours_max)")
            return None
        return self.terms.owned_change(name, locked_by, "hold", lambda n, now: {
            "hold_until": now + hours(for_hours), "hold_reason": reason}, check)

    def release(self, name: str, locked_by: str) -> NodeRecord:
        """End the node's hold; a lock already past its expiry is then destroyed by the next pass."""
        def check(node: NodeRecord, now: datetime) -> str | None:
            return None if held(node, now) else f"Cannot release {node.name}: it is not held"
        return self.terms.owned_change(name, locked_by, "release", lambda n, now: {
            "hold_until": None, "hold_reason": None}, check)

    # -- what is seen -----------------------------------------------------------------------------

    def presented(self, node: NodeRecord) -> dict[str, Any]:
        """The lock's terms as extra keys of the node's JSON (teuthology ignores them)."""
        now = utcnow()
        on = held(node, now)
        return {"expires_at": format_time(expiry_of(node, self.policies.get(node.machine_type or ""))),
                "hold_until": format_time(node.hold_until) if on else None,
                "hold_reason": node.hold_reason if on else None}

    def expiry_pass(self, lab: "LabHost") -> ExpiryPass:
        """The expiry rule as a reconciler pass runs it."""
        return ExpiryPass(lab, self.terms, self.policies)

    def collector(self) -> Collector:
        return _PolicyCollector(self)

    def figures(self, records: Iterable[NodeRecord]) -> dict[str, dict[str, int]]:
        """Per machine type with a policy: locks ``expiring`` (warned, not yet destroyed) and ``held``."""
        now = utcnow()
        out = {t: {"expiring": 0, "held": 0} for t in self.policies}
        for node in records:
            policy = self.policies.get(node.machine_type or "")
            if policy is None or expiry_of(node, policy) is None:
                continue
            if held(node, now):
                out[node.machine_type or ""]["held"] += 1
            elif node.state == NodeState.READY and (node.expiry_warned
                                                    or verdict(node, policy, now) is not Verdict.KEEP):
                out[node.machine_type or ""]["expiring"] += 1
        return out


class _PolicyCollector(Collector):
    """``lablease_locks_expiring`` and ``lablease_locks_held``, counted from the rows at each scrape."""

    def __init__(self, policy: LabPolicy) -> None:
        self._policy = policy

    def describe(self) -> Sequence[Metric]:
        return self._families({})

    def collect(self) -> Sequence[Metric]:
        try:
            records = self._policy.store.list(NodeFilter(locked=True))
        except Exception:  # noqa: BLE001 - a store outage must not take the other metrics down
            log.exception("node store unreadable; lock policy gauges left out of this scrape")
            return []
        return self._families(self._policy.figures(records))

    @staticmethod
    def _families(figures: dict[str, dict[str, int]]) -> list[Metric]:
        expiring = GaugeMetricFamily("lablease_locks_expiring", "Locks within warn_hours of their expiry or past "
                                     "it (warned, not held, not yet destroyed)", labels=["machine_type"])
        holding = GaugeMetricFamily("lablease_locks_held", "Locks kept past their expiry by a hold",
                                    labels=["machine_type"])
        for machine_type, counts in sorted(figures.items()):
            expiring.add_metric([machine_type], counts["expiring"])
            holding.add_metric([machine_type], counts["held"])
        return [expiring, holding]
