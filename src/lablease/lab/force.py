"""An admin's ``unlock --force``: destroy whatever a cloud node has in the cloud and DNS and free it,
in any state, whoever holds it.

The node's lease is taken first (store ``force_take``), so the process that was creating it finds
the node gone: here its create is stopped at once; in another process its heartbeat stops it
within seconds (lab.heartbeat). Each stopped create rolls back what it made; the destroy by name
catches the rest, and the reconciler deletes anything a racing create still made after that.
"""

from __future__ import annotations

import logging
import time

from lablease.lab.host import LabHost
from lablease.store import InvalidRequest, NodeRecord, NodeState, Unavailable

log = logging.getLogger(__name__)

STOP_WAIT = 60.0  # seconds a create stopped here gets to roll back before the destroy by name


def force_unlock(lab: LabHost, name: str, by: str) -> NodeRecord:
    """Destroy and free ``name`` for ``by`` (who asked; named in the node's events). Unavailable (503) when
    the destroy failed: the node then stays ``destroy-failed`` and the reconciler retries it."""
    node = lab.store.get(name)
    worker = lab.workers.get(lab.routes.provider_of(node) or "")
    if worker is None:
        raise InvalidRequest(f"{node.name} is not a cloud node of this service (machine type "
                             f"{node.machine_type!r}); unlock it with `lablease unlock --owner {node.locked_by}`")
    who = f"{by} (force-unlock)"
    taken = lab.store.force_take(node.name, lease_owner=lab.owner, lease_seconds=lab.lease_seconds, who=who)
    log.warning("force-unlock of %s by %s: it was %s, held by %s", node.name, by, node.state,
                node.lease_owner or node.locked_by or "nobody")
    if worker.stop_create(node.name):  # this process was creating it: let that create roll back first
        deadline = time.monotonic() + STOP_WAIT
        while node.name in worker.creating() and time.monotonic() < deadline:
            time.sleep(0.1)
    if taken.state == NodeState.IDLE:
        if not taken.locked:
            return taken  # free already; anything a leak left is the reconciler's
        try:
            worker.destroy(node.name).result()  # a plain lock on a cloud node: nothing of ours may stay
        except Exception as exc:  # noqa: BLE001 - ProvisionError: something may remain, so it stays locked
            raise Unavailable(f"destroying {node.name} failed, so it stays locked: {exc}") from None
        return lab.store.force_clear(node.name, who=who)
    if not worker.destroy_now(node.name, who=who):
        raise Unavailable(f"destroying {node.name} failed; it stays locked in destroy-failed (see last_error) and "
                          "the reconciler retries it; run the force again once the cloud answers")
    return lab.store.get(node.name)
