"""nodes.provider: which provider (a libcloud.providers key) made a cloud node's resources, so a
machine type served by several providers destroys and reconciles each node where it was made.

Nullable and empty for existing rows: a node of a single-provider type is made by the provider of
its machine type, and a free node has no provider.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Skipped when present: a database rewound to an older revision (as a test of 0004 does) has it.
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("nodes")}
    if "provider" not in present:
        with op.batch_alter_table("nodes") as batch:
            batch.add_column(sa.Column("provider", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("provider")
