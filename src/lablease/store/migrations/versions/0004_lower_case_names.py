"""Node names are host names, compared case-insensitively: store them lowered (without a final dot).

The store lowers every name it is given since this revision; names stored before stay reachable
only once lowered. A name whose lowered form already exists (two records differing in case only)
is left as it is, for an admin to resolve: the migration never merges or deletes records.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""
from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        UPDATE nodes SET name = lower(name)
        WHERE name <> lower(name)
          AND (SELECT count(*) FROM nodes AS other WHERE lower(other.name) = lower(nodes.name)) = 1
    """)
    op.execute("UPDATE node_events SET node = lower(node) WHERE node <> lower(node)")


def downgrade() -> None:
    pass  # the original spelling is not kept; lowered names work with the older code too
