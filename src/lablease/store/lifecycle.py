"""The node state machine, defined once: the states a node record can be in and the moves between them.

Every writer of ``nodes.state`` goes through this table: ``check_move`` in Python (NodeStore's
state moves) and ``move_sql`` in SQL (the statement that locks nodes to provision them). The
enum's values are what the database and the JSON API have always held, so nothing is migrated.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from lablease.store.errors import InvalidRequest


class NodeState(StrEnum):
    """A node record's provisioning state; a ``str`` (its value) wherever a string is expected."""

    IDLE = "idle"                      # at rest: free, or locked by hand like any paddles node
    PROVISIONING = "provisioning"      # locked for a cloud type: the lab service creates it
    READY = "ready"                    # SSH-ready: handed to its owner, or warm in the pool
    DESTROYING = "destroying"          # its server, volumes and DNS name are being removed
    DESTROY_FAILED = "destroy-failed"  # something may remain: stays locked until a retry succeeds


S = NodeState
# Every move a node's ``state`` may make, from -> allowed targets; anything else is refused.
MOVES: Mapping[NodeState, frozenset[NodeState]] = MappingProxyType({
    S.IDLE: frozenset({S.PROVISIONING}),                  # locked for a cloud type
    S.PROVISIONING: frozenset({S.READY,                   # SSH-ready, handed to its owner
                               S.DESTROYING,              # launch failed, or the request was all-or-nothing
                               S.IDLE}),                  # launch failed and made nothing (its rollback saw to it)
    S.READY: frozenset({S.DESTROYING}),                   # unlocked by its owner, or failed its warm check
    S.DESTROYING: frozenset({S.IDLE,                      # everything gone: the record is free again
                             S.DESTROY_FAILED}),          # something may remain: the node stays locked
    S.DESTROY_FAILED: frozenset({S.DESTROYING}),          # retried by its owner or the reconciler
})
del S


def can_move(current: str, to: str) -> bool:
    """Whether ``current -> to`` is in MOVES (an unknown state moves nowhere)."""
    return to in MOVES.get(current, frozenset())  # type: ignore[call-overload]  # str keys hash as the enum


def check_move(name: str, current: str, to: str) -> None:
    """Raise InvalidRequest unless ``current -> to`` is in MOVES."""
    if not can_move(current, to):
        raise InvalidRequest(f"{name}: a node cannot go from {current} to {to}")


def sources(to: NodeState) -> frozenset[NodeState]:
    """The states from which a node may move to ``to``."""
    return frozenset(state for state, targets in MOVES.items() if to in targets)


def states_sql(states: frozenset[NodeState]) -> str:
    """``state IN (...)`` for ``states`` (unqualified column, literal values: no parameters to pass)."""
    # The values are the enum's own, never user input, so quoting them inline is safe.
    return f"state IN ({', '.join(repr(s.value) for s in sorted(states))})"


def move_sql(to: NodeState) -> str:
    """The SQL condition that a row may move to ``to``, rendered from MOVES (for statements that write it)."""
    return states_sql(sources(to))
