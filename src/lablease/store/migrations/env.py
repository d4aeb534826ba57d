"""Alembic environment: runs on a connection handed in by lablease.store.migrate (never from an ini file)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from lablease.store.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `alembic` run by hand without our wrapper
    raise RuntimeError("run migrations through lablease.store.migrate(), which passes a connection")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Two service processes starting at once must not migrate the same database together.
        connection.execute(text("SELECT pg_advisory_xact_lock(724311)"))
    context.run_migrations()
