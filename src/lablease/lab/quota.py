"""Node quotas per owner (``libcloud.quotas``): a lock that would take an owner past one is refused first.

The check runs before anything is claimed or created (no warm node is taken, no record moves, no cloud call)
and refuses with 503, which teuthology's scheduler treats as "wait and retry": the lock goes through once the
owner has unlocked enough. It counts the cloud nodes the owner holds now (locked by it, in any state: a node
being destroyed or whose destroy failed still costs), held ones included.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from lablease.config.policy import Quotas
from lablease.store import NodeRecord


def _key(quotas: Quotas, owner: str, machine_type: str | None) -> str:
    """The config key of the limit that applies: the owner's own, else the default (None: ``nodes``)."""
    own = quotas.owners.get(owner)
    tail = "nodes" if machine_type is None else f"machine_types.{machine_type}"
    mine = own is not None and ("nodes" in own.model_fields_set if machine_type is None
                                else machine_type in own.machine_types)
    return f"libcloud.quotas.owners.{owner}.{tail}" if mine else f"libcloud.quotas.default.{tail}"


def _holding(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {t}" for t, n in sorted(counts.items())) or "none"


def quota_refusal(quotas: Quotas, owner: str, machine_type: str, count: int,
                  held: Iterable[NodeRecord]) -> str | None:
    """Why locking ``count`` more ``machine_type`` nodes for ``owner`` is over quota; None when it is not.

    ``held`` are the cloud nodes locked now (any owner: the owner's are picked here).
    """
    limits = quotas.limits_for(owner)
    mine = Counter(n.machine_type or "" for n in held if n.locked and n.locked_by == owner)
    per_type = limits.machine_types.get(machine_type)
    if per_type is not None and mine[machine_type] + count > per_type:
        key = _key(quotas, owner, machine_type)
        return (f"over quota: {owner} may hold at most {per_type} {machine_type} node(s) ({key}) and holds "
                f"{mine[machine_type]}, so {count} more would make {mine[machine_type] + count}; "
                "retry once some are unlocked")
    total = sum(mine.values())
    if limits.nodes is not None and total + count > limits.nodes:
        key = _key(quotas, owner, None)
        return (f"over quota: {owner} may hold at most {limits.nodes} cloud node(s) in all ({key}) and holds "
                f"{total} ({_holding(mine)}), so {count} more would make {total + count}; "
                "retry once some are unlocked")
    return None


def limited(quotas: Quotas, owner: str) -> bool:
    """Whether any quota applies to ``owner`` (else the check needs no look at the store)."""
    limits = quotas.limits_for(owner)
    return limits.nodes is not None or bool(limits.machine_types)


def quota_use(quotas: Quotas, held: Iterable[NodeRecord]) -> list[dict]:
    """Per owner a quota applies to (one holding cloud nodes, or named in ``quotas.owners``): the cloud nodes it
    holds now against its limits, in all (``limit`` None: none) and per machine type (``types``: type, held,
    limit). ``held`` are the cloud nodes locked now; the dashboard's usage page shows this."""
    locked = [n for n in held if n.locked and n.locked_by]
    rows = []
    for owner in sorted({n.locked_by or "" for n in locked} | set(quotas.owners)):
        limits = quotas.limits_for(owner)
        if limits.nodes is None and not limits.machine_types:
            continue
        mine = Counter(n.machine_type or "" for n in locked if n.locked_by == owner)
        rows.append({"owner": owner, "held": sum(mine.values()), "limit": limits.nodes,
                     "types": [(t, mine[t], limit) for t, limit in sorted(limits.machine_types.items())]})
    return rows
