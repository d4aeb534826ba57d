"""An index on node_events.at: pruning old events (events_retention_days) and the dashboard's
window of the last day read by time; without it both scan the whole table.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Skipped when present: a database rewound to an older revision (as a test of 0004 does) has it.
    present = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("node_events")}
    if "ix_node_events_at" not in present:
        op.create_index("ix_node_events_at", "node_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_node_events_at", table_name="node_events")
