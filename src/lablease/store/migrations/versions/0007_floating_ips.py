"""``floating_ip_ids``: the floating IPs the running attempt has associated with its server.

Written as each is allocated (or taken from this lab's free ones), before it is associated, like
``volume_ids``: a restarted process or the reconciler can then release what a dead one allocated.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Skipped when present: a database rewound to an older revision (as a test of 0004 does) has it.
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("nodes")}
    if "floating_ip_ids" not in present:
        with op.batch_alter_table("nodes") as batch:
            batch.add_column(sa.Column("floating_ip_ids", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("floating_ip_ids")
