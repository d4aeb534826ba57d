"""Bring a database to the newest schema with the Alembic migrations shipped in this package."""

from __future__ import annotations

import logging

from alembic import command
from alembic.config import Config

from lablease.store.engine import Engines

log = logging.getLogger(__name__)


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "lablease.store:migrations")
    return cfg


def migrate(engines: Engines, revision: str = "head") -> None:
    """Upgrade to ``revision`` in one transaction (serialized between processes on PostgreSQL)."""
    cfg = alembic_config()
    with engines.write.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()
    log.info("store migrated revision=%s dialect=%s", revision, engines.dialect)
