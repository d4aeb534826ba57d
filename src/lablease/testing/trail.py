"""Read a node's event trail as a witness: did it ever have two owners, was it ever provisioned twice?

Used by the multi-process test and benchmark: the trail is written in the same transaction as each
change, so a double allocation or a double launch cannot hide from it.
"""

from __future__ import annotations

from collections import defaultdict

from lablease.store import NodeState, NodeStore
from lablease.store.lifecycle import can_move


class TrailError(AssertionError):
    """A node's trail shows a move that must never happen; the message names the node and the event."""


def check_trail(store: NodeStore, names: list[str]) -> dict[str, int]:
    """Each node's state moves form one chain of allowed moves and its locks alternate with unlocks,
    and it ends idle and free; returns how often each node was provisioned."""
    provisioned: dict[str, int] = defaultdict(int)
    for name in names:
        state, locked = NodeState.IDLE, False
        for event in store.events(name):
            if event.action == "state":
                old, new = event.old["state"], event.new["state"]
                if old != state or not can_move(old, new):
                    raise TrailError(f"{name}: state move {old} -> {new} while it was {state}: {event}")
                state = new
                provisioned[name] += new == NodeState.PROVISIONING
                if event.new.get("locked") is True:  # a lock that started provisioning: one row for both
                    if locked:
                        raise TrailError(f"{name} locked again without an unlock (two owners): {event}")
                    locked = True
                if new == NodeState.IDLE:
                    locked = False  # freeing a node unlocks it in the same move
            elif event.action == "lock":
                if locked:
                    raise TrailError(f"{name} locked again without an unlock (two owners): {event}")
                locked = True
            elif event.action == "unlock":
                if not locked:
                    raise TrailError(f"{name} unlocked while not locked: {event}")
                locked = False
        if (state, locked) != (NodeState.IDLE, False):
            raise TrailError(f"{name} ended {state}, {'locked' if locked else 'free'}")
    return provisioned
