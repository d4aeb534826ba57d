"""Lock expiry and holds: the rules, and the pass that applies them (run by every reconciler pass).

A locked cloud node of a machine type with a ``policy`` (config/policy.py) expires at its ``expires_at``
(set when its lock was answered: ``lock_hours`` from then, or less if the lock asked; a lock whose row has
none, say one taken before the policy existed, expires ``lock_hours`` after it was locked or became ready,
whichever came later). From
``warn_hours`` before that it gets one ``expiring`` event and counts in ``lablease_locks_expiring``; from
``grace_hours`` after it, and while no hold keeps it (``hold_until`` in the future), the reconciler's pass
moves it to ``destroying`` (who: ``expiry``, its last error naming the rule), destroys it and frees it.
Only ``ready`` nodes expire: a node being created, destroyed or retried is the lab's and reconciler's.

Everything is read from the rows on each pass, and every act re-checks the rule under the row's lock, so a
restart, several processes (one pass at a time: store.exclusive) and a concurrent extend or hold agree.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING

from lablease.config.policy import LockPolicy
from lablease.store import NodeRecord, NodeState
from lablease.store.errors import Conflict
from lablease.store.policy import LockTerms
from lablease.store.pool import POOL_OWNER
from lablease.store.records import utcnow

if TYPE_CHECKING:
    from lablease.lab.host import LabHost
    from lablease.lab.reconciler import PassReport
    from lablease.lab.workers import ProviderWorker

log = logging.getLogger(__name__)
MAX_PARALLEL_DESTROYS = 8


def hours(value: float) -> timedelta:
    return timedelta(hours=value)


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "never"


class Verdict(Enum):
    KEEP = "keep"
    WARN = "warn"
    EXPIRE = "expire"


def expiry_of(node: NodeRecord, policy: LockPolicy | None) -> datetime | None:
    """When ``node``'s lock ends (None: never: no policy, not locked, or a warm node of the pool)."""
    if policy is None or not node.locked or node.locked_by == POOL_OWNER:
        return None
    if node.expires_at is not None:
        return node.expires_at
    # No expiry written (a lock taken before the policy, or one whose answer is being sent): from the later of
    # its lock and its move to ready, so a node just provisioned is never expired before its lock is answered.
    starts = [t for t in (node.locked_since, node.state_since) if t is not None]
    return max(starts) + hours(policy.lock_hours) if starts else None


def held(node: NodeRecord, now: datetime) -> bool:
    return node.hold_until is not None and node.hold_until > now


def verdict(node: NodeRecord, policy: LockPolicy | None, now: datetime) -> Verdict:
    """What the expiry rule does with ``node`` now."""
    end = expiry_of(node, policy)
    if end is None or policy is None or node.state != NodeState.READY or held(node, now):
        return Verdict.KEEP
    if now >= end + hours(policy.grace_hours):
        return Verdict.EXPIRE
    if now >= end - hours(policy.warn_hours) and not node.expiry_warned:
        return Verdict.WARN
    return Verdict.KEEP


def rule(node: NodeRecord, policy: LockPolicy) -> str:
    return (f"libcloud.providers.{node.machine_type}.policy: lock_hours {policy.lock_hours:g}, "
            f"grace_hours {policy.grace_hours:g}")


def expire_reason(node: NodeRecord, policy: LockPolicy) -> str:
    """The destroyed node's last error: when its lock ended, by which rule, and its hold if it had one."""
    hold = f"; its hold ({node.hold_reason}) ended at {when(node.hold_until)}" if node.hold_until else ""
    return (f"its lock by {node.locked_by} expired at {when(expiry_of(node, policy))} ({rule(node, policy)}){hold}: "
            "destroyed and unlocked by the expiry rule")


def warn_message(node: NodeRecord, policy: LockPolicy) -> str:
    return (f"the lock by {node.locked_by} expires at {when(expiry_of(node, policy))}, then the node is destroyed "
            f"after a grace of {policy.grace_hours:g} h ({rule(node, policy)}); extend it (lablease extend) or hold "
            "it (lablease hold) to keep it")


class ExpiryPass:
    """The expiry rule over one provider's records, as part of a reconciler pass (``__call__``)."""

    def __init__(self, lab: "LabHost", terms: LockTerms, policies: Mapping[str, LockPolicy]) -> None:
        self.lab = lab
        self.terms = terms
        self.policies = policies

    def __call__(self, worker: "ProviderWorker", records: list[NodeRecord], report: "PassReport") -> None:
        policy = self.policies.get(worker.machine_type)
        if policy is None:
            return
        now = utcnow()
        due = []
        for node in records:
            found = verdict(node, policy, now)
            if found is Verdict.WARN:
                self._warn(node, policy, report)
            elif found is Verdict.EXPIRE:
                due.append(node)
        if due:
            self._expire(worker, due, policy, report)

    def _still(self, policy: LockPolicy, expected: Verdict, owner: str | None):  # noqa: ANN202
        """A check for LockTerms: the rule still says ``expected`` for the row (same owner) under its lock."""
        def check(node: NodeRecord, now: datetime) -> str | None:
            if node.locked_by != owner:
                return f"its lock changed hands ({owner} -> {node.locked_by})"
            found = verdict(node, policy, now)
            return None if found is expected else f"the expiry rule now says {found.value}"
        return check

    def _warn(self, node: NodeRecord, policy: LockPolicy, report: "PassReport") -> None:
        message = warn_message(node, policy)
        if not report.dry_run:
            if self.terms.warn(node.name, self._still(policy, Verdict.WARN, node.locked_by), message) is None:
                return
            log.info("expiry: %s: %s", node.name, message)
        report.act("warn", "node", node.name, node.name, message, not report.dry_run)

    def _expire(self, worker: "ProviderWorker", due: list[NodeRecord], policy: LockPolicy,
                report: "PassReport") -> None:
        taken = []
        for node in due:
            reason = expire_reason(node, policy)
            if report.dry_run:
                report.act("expire", "node", node.name, node.name, reason, False)
                continue
            try:
                self.terms.begin_expiry(node.name, self._still(policy, Verdict.EXPIRE, node.locked_by), reason,
                                        lease_owner=self.lab.owner, lease_seconds=self.lab.lease_seconds)
            except Conflict as exc:  # extended, held or unlocked since the pass looked
                log.info("expiry: %s", exc.message)
                continue
            log.warning("expiry: destroying %s: %s", node.name, reason)
            taken.append((node, reason))
        if not taken:
            return
        with concurrent.futures.ThreadPoolExecutor(min(MAX_PARALLEL_DESTROYS, len(taken)),
                                                   thread_name_prefix="lab-expiry") as pool:
            done = list(pool.map(lambda n: worker.destroy_now(n.name, who="expiry"), [n for n, _ in taken]))
        for (node, reason), ok in zip(taken, done):
            report.act("expire", "node", node.name, node.name, reason, ok)
            if not ok:
                report.failed.append(node.name)
