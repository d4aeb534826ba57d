"""What an operator watches in the node records of a lab: the warm pool against its target, the oldest node
still being provisioned, leases that expired. Read by /metrics (lab.metrics) and /lab/status/ (lab.http).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lablease.store.eligibility import WARM_CLAIM
from lablease.store.lifecycle import NodeState
from lablease.store.records import NodeRecord, utcnow


@dataclass
class TypeCensus:
    """One machine type's figures (times in seconds)."""

    warm: dict[str, dict[str, int]] = field(default_factory=dict)  # "<os_type>-<os_version>" -> target, ready
    oldest_provisioning_seconds: float = 0.0  # 0: no node is provisioning
    expired_leases: int = 0  # nodes whose holder's lease ran out: the reconciler takes them over

    def to_json(self) -> dict[str, Any]:
        return {"warm": self.warm, "oldest_provisioning_seconds": round(self.oldest_provisioning_seconds, 1),
                "expired_leases": self.expired_leases}


def os_key(node: NodeRecord) -> str:
    """The warm pool's key of a node's OS, as ``min_ready`` spells it: ``ubuntu-22.04``."""
    return f"{node.os_type}-{node.os_version}"


def census(records: Iterable[NodeRecord], targets: Mapping[str, Mapping[str, int]],
           now: datetime | None = None) -> dict[str, TypeCensus]:
    """Per machine type (each of ``targets``, the ``min_ready`` of every provider, and each type a record has)."""
    now = now or utcnow()
    found: dict[str, TypeCensus] = {t: TypeCensus(warm={k: {"target": n, "ready": 0} for k, n in want.items()})
                                    for t, want in targets.items()}
    for node in records:
        one = found.setdefault(node.machine_type or "", TypeCensus())
        if WARM_CLAIM.allows(node):
            one.warm.setdefault(os_key(node), {"target": 0, "ready": 0})["ready"] += 1
        if node.state == NodeState.PROVISIONING and node.state_since is not None:
            age = (now - node.state_since).total_seconds()
            one.oldest_provisioning_seconds = max(one.oldest_provisioning_seconds, age)
        if node.lease_owner and node.lease_expires is not None and node.lease_expires < now:
            one.expired_leases += 1
    return found
