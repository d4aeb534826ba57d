"""Which nodes a lock, a warm-pool claim or an unlock may take, declared once.

Each rule is data (states, lock, up, holder) rendered two ways: ``allows`` over a record in
Python, and ``sql``/``clause`` as a condition over the ``nodes`` columns. Every lock path uses
them: the PostgreSQL one-statement lane (``pg_fast``, also run by ``pg_async``), the
transactional path (``queries``), the provisioning path and the warm pool. Tests check that
the SQL and Python renderings select the same rows on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import TextClause, text

from lablease.store.lifecycle import NodeState, states_sql


@dataclass(frozen=True)
class Eligibility:
    """A node qualifies when its state is one of ``states``, its lock is ``locked``, it is up (if
    ``needs_up``) and, if ``held_by_caller``, its ``locked_by`` is the caller."""

    action: str
    states: frozenset[NodeState]
    locked: bool
    needs_up: bool
    held_by_caller: bool

    def allows(self, node: Any, caller: str | None = None) -> bool:
        """The rule over a record (anything with ``state``, ``locked``, ``up``, ``locked_by``)."""
        return (node.state in self.states
                and bool(node.locked) is self.locked
                # SQL's ``up IS TRUE``: NULL (never said) counts as down
                and (not self.needs_up or node.up is True)
                # SQL's ``locked_by = caller`` is NULL, so false, when either side is NULL
                and (not self.held_by_caller or (caller is not None and node.locked_by == caller)))

    def sql(self, caller: str | None = None) -> str:
        """The rule as SQL over unqualified ``nodes`` columns; ``caller`` is the placeholder of the
        caller's name in the statement's parameter style (``%(by)s::text``, ``:by``)."""
        parts = [states_sql(self.states), f"locked IS {'TRUE' if self.locked else 'FALSE'}"]
        if self.needs_up:
            parts.append("up IS TRUE")
        if self.held_by_caller:
            if caller is None:
                raise ValueError(f"the {self.action} rule needs the caller's placeholder")
            parts.append(f"locked_by = {caller}")
        return " AND ".join(parts)

    def clause(self, caller: str = "caller") -> TextClause:
        """The rule as a SQLAlchemy condition; a rule that checks the holder binds ``caller`` (a parameter name)."""
        return text(self.sql(f":{caller}" if self.held_by_caller else None))


# Plain locks (lock_many and its provisioning variant) take free, up nodes at rest. A node still
# being created or destroyed, or whose destroy failed, is never handed out, even if something
# left it unlocked.
LOCK = Eligibility("lock", frozenset({NodeState.IDLE}), locked=False, needs_up=True, held_by_caller=False)
# The lab's warm pool lends provisioned (``ready``) nodes nobody holds; plain locks never see them.
WARM_CLAIM = Eligibility("warm claim", frozenset({NodeState.READY}), locked=False, needs_up=True,
                         held_by_caller=False)
# A plain unlock frees a node at rest held by the caller, up or not. Cloud nodes in other states
# are unlocked by destroying them (DESTROY).
UNLOCK = Eligibility("unlock", frozenset({NodeState.IDLE}), locked=True, needs_up=False, held_by_caller=True)
# An owner's unlock of a provisioned cloud node starts its destroy (``NodeStore.begin_destroy``).
DESTROY = Eligibility("destroy", frozenset({NodeState.READY, NodeState.DESTROY_FAILED}), locked=True,
                      needs_up=False, held_by_caller=True)

RULES = (LOCK, WARM_CLAIM, UNLOCK, DESTROY)
