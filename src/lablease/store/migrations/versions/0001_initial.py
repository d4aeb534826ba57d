"""Initial schema: nodes (paddles' fields + provisioning state) and node_events.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("up", sa.Boolean),
        sa.Column("machine_type", sa.String(32)),
        sa.Column("arch", sa.String(16)),
        sa.Column("is_vm", sa.Boolean, nullable=False),
        sa.Column("os_type", sa.String(32)),
        sa.Column("os_version", sa.String(16)),
        sa.Column("vm_host_id", sa.Integer, sa.ForeignKey("nodes.id", ondelete="SET NULL")),
        sa.Column("locked", sa.Boolean, nullable=False),
        sa.Column("locked_by", sa.String(64)),
        sa.Column("locked_since", sa.DateTime),
        sa.Column("mac_address", sa.String(17)),
        sa.Column("ssh_pub_key", sa.Text),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("cloud_server_id", sa.String(255)),
        sa.Column("addresses", sa.JSON),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("name", name="uq_nodes_name"),
    )
    op.create_index("ix_nodes_lock_scan", "nodes", ["machine_type", "locked", "up", "name"])
    op.create_index("ix_nodes_locked_by", "nodes", ["locked_by"])
    op.create_table(
        "node_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("node", sa.String(256), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("who", sa.String(64)),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("old", sa.JSON),
        sa.Column("new", sa.JSON),
    )
    op.create_index("ix_node_events_node_id", "node_events", ["node", "id"])


def downgrade() -> None:
    op.drop_table("node_events")
    op.drop_table("nodes")
