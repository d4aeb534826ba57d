"""Statements of the node store, built once: the hot paths (lock, unlock) then skip SQLAlchemy's
statement construction and reuse its compiled-statement cache on every request."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import bindparam, func, insert, select, text, update

from lablease.store.models import node_events, nodes
from lablease.store.records import COLUMNS
from lablease.store.eligibility import LOCK
from lablease.store.lifecycle import NodeState, move_sql

COLS = [nodes.c[k] for k in COLUMNS]
SELECT = select(*COLS)
BY_NAME = SELECT.where(nodes.c.name == bindparam("name"))
BY_NAME_FOR_UPDATE = BY_NAME.with_for_update()
BY_NAMES_FOR_UPDATE = (SELECT.where(nodes.c.name.in_(bindparam("names", expanding=True)))
                       .order_by(nodes.c.name).with_for_update())
BY_IDS = SELECT.where(nodes.c.id.in_(bindparam("ids", expanding=True)))
ID_BY_NAME = select(nodes.c.id).where(nodes.c.name == bindparam("name"))
# SET columns come from the parameter keys of each call.
UPDATE_BY_ID = update(nodes).where(nodes.c.id == bindparam("node_id"))
UPDATE_BY_IDS = update(nodes).where(nodes.c.id.in_(bindparam("node_ids", expanding=True)))
INSERT_EVENT = insert(node_events)
MACHINE_TYPES = select(nodes.c.machine_type).distinct().where(nodes.c.machine_type.is_not(None))
EVENTS_OF = select(node_events).where(node_events.c.node == bindparam("name")).order_by(node_events.c.id)

_LOCK_VALUES = dict(locked=True, locked_by=bindparam("p_locked_by"), locked_since=bindparam("p_now"),
                    description=bindparam("p_description"), updated_at=bindparam("p_now"))


@lru_cache(maxsize=16)
def lock_candidates(os_type: bool, os_version: bool, arch: bool):
    """Nodes the LOCK rule allows, of the given machine types (``types``), in name order."""
    cond = [nodes.c.machine_type.in_(bindparam("types", expanding=True)), LOCK.clause()]
    if os_type:
        cond.append(nodes.c.os_type == bindparam("c_os_type"))
    if os_version:
        cond.append(nodes.c.os_version == bindparam("c_os_version"))
    if arch:
        cond.append(nodes.c.arch == bindparam("c_arch"))
    return (select(nodes.c.id, nodes.c.name, nodes.c.description.label("old_description"),
                   nodes.c.state.label("old_state"))
            .where(*cond).order_by(nodes.c.name))


@lru_cache(maxsize=16)
def first_candidates(os_type: bool, os_version: bool, arch: bool):
    """The first ``count`` candidates (SQLite: read under the database write lock)."""
    return lock_candidates(os_type, os_version, arch).limit(bindparam("count"))


LOCK_IDS = (update(nodes).where(nodes.c.id.in_(bindparam("ids", expanding=True)), LOCK.clause())
            .values(**_LOCK_VALUES).returning(*COLS))
# The same, for a cloud type: the nodes also start provisioning, with the OS asked for. It writes
# ``state`` in SQL, so the move table's condition (``state IN`` the states that may move there) is in it.
LOCK_IDS_PROVISIONING = (update(nodes).where(nodes.c.id.in_(bindparam("ids", expanding=True)), LOCK.clause(),
                                             text(move_sql(NodeState.PROVISIONING)))
                         .values(**_LOCK_VALUES, state=NodeState.PROVISIONING.value, state_since=bindparam("p_now"),
                                 os_type=bindparam("p_os_type"), os_version=bindparam("p_os_version"),
                                 # A lock that names no arch keeps the node's (teuthology-suite reads it).
                                 arch=func.coalesce(bindparam("p_arch"), nodes.c.arch))
                         .returning(*COLS))
