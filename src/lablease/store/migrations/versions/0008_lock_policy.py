"""Lock expiry and holds (issue 22): when a cloud node's lock ends, whether its owner was warned, and a hold
that keeps it past that end for debugging, with its reason. Kept in the row, so a restart or another process
applies the same rules (lab/expiry.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = [sa.Column("expires_at", sa.DateTime),
               sa.Column("expiry_warned", sa.Boolean, nullable=False, server_default=sa.false()),
               sa.Column("hold_until", sa.DateTime), sa.Column("hold_reason", sa.Text)]
    # Skipped when present: a database rewound to an older revision (as a test of 0004 does) has them.
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("nodes")}
    missing = [c for c in columns if c.name not in present]
    if missing:
        with op.batch_alter_table("nodes") as batch:
            for column in missing:
                batch.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        for column in ("hold_reason", "hold_until", "expiry_warned", "expires_at"):
            batch.drop_column(column)
