"""The node store: SQLAlchemy tables, engines, Alembic migrations and the NodeStore API."""

from lablease.store.errors import Forbidden, InvalidRequest, NotFound, Shortage, StoreError, Unavailable
from lablease.store.lifecycle import NodeState
from lablease.store.nodes import NodeFilter, NodeStore
from lablease.store.records import NodeEventRecord, NodeRecord

__all__ = [
    "Forbidden", "InvalidRequest", "NodeEventRecord", "NodeFilter", "NodeRecord", "NodeState",
    "NodeStore", "NotFound", "Shortage", "StoreError", "Unavailable",
]
