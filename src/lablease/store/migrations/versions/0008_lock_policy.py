"""Lock expiry and holds (issue 22): when a cloud node's lock ends, whether its owner was warned, and a hold
that keeps it past that end for debugging, with its reason. Kept in the row, so a restart or another process
applies the same rules (lab/expiry.py).

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime))
        batch.add_column(sa.Column("expiry_warned", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("hold_until", sa.DateTime))
        batch.add_column(sa.Column("hold_reason", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        for column in ("hold_reason", "hold_until", "expiry_warned", "expires_at"):
            batch.drop_column(column)
