"""Tables of the node store: paddles' node fields plus provisioning state, and the event log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lablease.store.lifecycle import NodeState

# paddles' column sizes; clients rely on values of these sizes being accepted.
NAME_LEN = 256
MACHINE_TYPE_LEN = 32
ARCH_LEN = 16
OS_TYPE_LEN = 32
OS_VERSION_LEN = 16
LOCKED_BY_LEN = 64
MAC_LEN = 17
PROVIDER_LEN = 64

# Provisioning states a node record can be in (the moves between them: lablease.store.lifecycle).
STATES = tuple(s.value for s in NodeState)


class Base(DeclarativeBase):
    pass


class Node(Base):
    """One lendable node; ``locked``/``locked_by`` say who holds it."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    up: Mapped[bool | None] = mapped_column(Boolean)
    machine_type: Mapped[str | None] = mapped_column(String(MACHINE_TYPE_LEN))
    arch: Mapped[str | None] = mapped_column(String(ARCH_LEN))
    is_vm: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    os_type: Mapped[str | None] = mapped_column(String(OS_TYPE_LEN))
    os_version: Mapped[str | None] = mapped_column(String(OS_VERSION_LEN))
    vm_host_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id", ondelete="SET NULL"))
    locked: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    locked_by: Mapped[str | None] = mapped_column(String(LOCKED_BY_LEN))
    locked_since: Mapped[datetime | None] = mapped_column(DateTime)
    mac_address: Mapped[str | None] = mapped_column(String(MAC_LEN))
    ssh_pub_key: Mapped[str | None] = mapped_column(Text)
    # lablease's own fields (provisioning), returned under extra keys.
    state: Mapped[str] = mapped_column(String(16), nullable=False, default=NodeState.IDLE.value)
    cloud_server_id: Mapped[str | None] = mapped_column(String(255))
    addresses: Mapped[list | None] = mapped_column(JSON)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The running attempt, persisted as it happens (migration 0003), and who works on the node.
    attempt_id: Mapped[str | None] = mapped_column(String(64))
    volume_ids: Mapped[list | None] = mapped_column(JSON)
    floating_ip_ids: Mapped[list | None] = mapped_column(JSON)
    dns_written: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    # The provider (a libcloud.providers key) whose attempt made the node's resources (migration 0006);
    # set by the attempt, cleared when the node is free again.
    provider: Mapped[str | None] = mapped_column(String(PROVIDER_LEN))
    lease_expires: Mapped[datetime | None] = mapped_column(DateTime)
    state_since: Mapped[datetime | None] = mapped_column(DateTime)
    # The lock's end and its hold (migration 0008; rules: lab/expiry.py): when the lab destroys it, whether its
    # "expiring" warning was written, and until when and why its owner keeps it past that end.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    expiry_warned: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    hold_until: Mapped[datetime | None] = mapped_column(DateTime)
    hold_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)

    __table_args__ = (
        UniqueConstraint("name", name="uq_nodes_name"),
        # lock_many's candidate scan: type, in name order. Deliberately no index on a column that
        # locking changes (locked, locked_by, ...): PostgreSQL then updates rows in place (HOT),
        # helped by free room in each page (migration 0002).
        Index("ix_nodes_type_name", "machine_type", "name"),
        {"postgresql_with": {"fillfactor": 50}},
    )


class NodeEvent(Base):
    """One change of a node (lock, unlock, update, create, delete, provision): who, when, old -> new.

    Keyed by node name, not id, so the trail outlives the record.
    """

    __tablename__ = "node_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False)
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    who: Mapped[str | None] = mapped_column(String(LOCKED_BY_LEN))
    at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    old: Mapped[dict | None] = mapped_column(JSON)
    new: Mapped[dict | None] = mapped_column(JSON)

    # by node: one node's trail; by time: pruning (store.retention) and the dashboard's window
    __table_args__ = (Index("ix_node_events_node_id", "node", "id"), Index("ix_node_events_at", "at"))


nodes = Node.__table__
node_events = NodeEvent.__table__
