"""The node row becomes the lab service's state machine: each attempt is persisted as it happens.

``attempt_id``, ``volume_ids`` and ``dns_written`` say what the running attempt has made, so a
restarted process (or the reconciler) can finish or roll back what a dead one started; the lease
(``lease_owner`` until ``lease_expires``) says which process works on the node. The old ``error``
state becomes ``destroy-failed``, the only failure state a node can rest in.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("attempt_id", sa.String(64)))
        batch.add_column(sa.Column("volume_ids", sa.JSON))
        batch.add_column(sa.Column("dns_written", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("lease_owner", sa.String(64)))
        batch.add_column(sa.Column("lease_expires", sa.DateTime))
        batch.add_column(sa.Column("state_since", sa.DateTime))
    op.execute("UPDATE nodes SET state = 'destroy-failed' WHERE state = 'error'")


def downgrade() -> None:
    op.execute("UPDATE nodes SET state = 'error' WHERE state = 'destroy-failed'")
    with op.batch_alter_table("nodes") as batch:
        for column in ("state_since", "lease_expires", "lease_owner", "dns_written", "volume_ids", "attempt_id"):
            batch.drop_column(column)
