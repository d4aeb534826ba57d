"""Run the lock server under uvicorn: migrate once, then serve with one or more workers."""

from __future__ import annotations

import logging
import os

import uvicorn
from starlette.types import ASGIApp
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, InterfaceError

from lablease.config import ConfigError

from lablease.lockapi.app import create_served_app
from lablease.lockapi.settings import LockSettings
from lablease.logs import setup_logging
from lablease.store import NodeStore

log = logging.getLogger(__name__)

# Workers are separate processes: they re-read the same config file named here.
_CONFIG_ENV = "LABLEASE_LOCKAPI_CONFIG"


def safe_url(url: str) -> str:
    """The database URL with any password hidden, for logs."""
    return make_url(url).render_as_string(hide_password=True)


def worker_app() -> ASGIApp:
    """App factory for uvicorn workers (``--workers`` > 1); the parent already migrated."""
    return create_served_app(LockSettings.load(os.environ.get(_CONFIG_ENV) or None), run_migrations=False)


def serve(settings: LockSettings) -> None:
    """Migrate the database, then serve until interrupted."""
    setup_logging(settings.log_level)
    try:
        store = NodeStore.open(settings.database_url, run_migrations=True, pool_size=1)
    except (DatabaseError, InterfaceError) as exc:
        # The URL's password stays out: only the driver's first line (which never holds it) is shown.
        first = (str(exc.orig).splitlines() or ["unknown error"])[0]
        raise ConfigError(f"cannot open or migrate the database {safe_url(settings.database_url)}: {first}",
                          file=str(settings.config_file) if settings.config_file else None,
                          key="lablease.database_url",
                          fix="start the database server or correct the URL") from None
    store.close()
    log.info("lock server starting url=http://%s:%d database=%s workers=%d admin_token=%s lab_domain=%s",
             settings.host, settings.port, safe_url(settings.database_url), settings.workers,
             "set" if settings.admin_token else "none", settings.lab_domain or "none")
    if settings.workers > 1 and settings.database_url.startswith("sqlite"):
        log.warning("several workers on SQLite contend for the database file's write lock; "
                    "workers: 1 is faster (threads of one process queue without polling)")
    common = dict(host=settings.host, port=settings.port, access_log=False,
                  log_level=settings.log_level.lower(), timeout_keep_alive=30, backlog=2048)
    if settings.workers == 1:
        uvicorn.run(create_served_app(settings, run_migrations=False), **common)
        return
    os.environ[_CONFIG_ENV] = str(settings.config_file or "")
    uvicorn.run("lablease.lockapi.serve:worker_app", factory=True, workers=settings.workers, **common)
