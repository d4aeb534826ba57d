"""Run the lock server under uvicorn: migrate once, then serve with one or more workers."""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

import uvicorn
from starlette.types import ASGIApp
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, InterfaceError

from lablease.config import ConfigError

from lablease.server.app import create_served_app
from lablease.lockapi.settings import LockSettings
from lablease.logs import AccessLog, announce, announcing, setup_logging
from lablease.store import NodeStore

if TYPE_CHECKING:
    from lablease.config.lab import LabConfig

log = logging.getLogger(__name__)

# Workers are separate processes: they re-read the same config file named here.
_CONFIG_ENV = "LABLEASE_LOCKAPI_CONFIG"
_LEVEL_ENV = "LABLEASE_LOCKAPI_LOG_LEVEL"  # --log-level, which the config file does not hold


def safe_url(url: str) -> str:
    """The database URL with any password hidden, for logs."""
    return make_url(url).render_as_string(hide_password=True)


def lab_config_of(settings: LockSettings) -> "LabConfig | None":
    """The lab config of the same file when it has a ``libcloud:`` section (then this is the lab service)."""
    if settings.config_file is None:
        return None
    from lablease.config import load_yaml_file
    from lablease.config.lab import parse_lab_config

    data = load_yaml_file(settings.config_file)
    if not (data.get("libcloud") or {}).get("providers"):
        return None
    return parse_lab_config(data, file=str(settings.config_file))


class DrainingServer(uvicorn.Server):
    """uvicorn that, on SIGTERM or Ctrl-C, first lets the lab service finish or roll back its work.

    New locks get 503 meanwhile; a second signal is ignored with a message instead of killing launches
    half-way (which would leave servers behind). Without a lab service it exits as uvicorn does.
    """

    def __init__(self, config: uvicorn.Config, lab, timeout: float):  # noqa: ANN001
        super().__init__(config)
        self.lab = lab
        self.timeout = timeout
        self._draining = False

    def handle_exit(self, sig: int, frame) -> None:  # noqa: ANN001
        if self.lab is None:
            super().handle_exit(sig, frame)
            return
        if self._draining:
            log.warning("shutdown: still finishing or rolling back work in flight, please wait")
            return
        self._draining = True
        log.info("shutdown: taking no new locks; finishing work in flight (at most %.0fs, then rolling back)",
                 self.timeout)
        self.lab.begin_drain()
        threading.Thread(target=self._drain_then_exit, args=(sig, frame), name="lab-drain", daemon=True).start()

    def _drain_then_exit(self, sig: int, frame) -> None:  # noqa: ANN001
        finished = self.lab.drain(self.timeout)
        log.info("shutdown: work in flight %s", "finished" if finished else "cancelled and rolled back")
        super().handle_exit(sig, frame)


def _logged(app: ASGIApp, settings: LockSettings) -> ASGIApp:
    """``app`` with one access line per request, unless ``access_log: false``."""
    return AccessLog(app) if settings.access_log else app


def worker_app() -> ASGIApp:
    """App factory for uvicorn workers (``--workers`` > 1); the parent already migrated."""
    settings = LockSettings.load(os.environ.get(_CONFIG_ENV) or None)
    if os.environ.get(_LEVEL_ENV):
        settings = settings.model_copy(update={"log_level": os.environ[_LEVEL_ENV]})
    setup_logging(settings.log_level)  # a worker is a fresh process: its lines need the handler too
    return _logged(create_served_app(settings, run_migrations=False), settings)


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
    lab_config = lab_config_of(settings)
    if lab_config is not None and settings.workers > 1:
        raise ConfigError("the lab service (a libcloud: section) runs as one worker process for now",
                          file=str(settings.config_file), key="lablease.workers",
                          fix="set workers: 1 (provisioning is I/O bound; one process runs max_parallel launches "
                              "per provider)")
    # log_config None: uvicorn's own lines go through lablease's handler, in its format (and level).
    common = dict(host=settings.host, port=settings.port, access_log=False, log_config=None,
                  timeout_keep_alive=30, backlog=2048)
    url = f"http://{settings.host}:{settings.port}"
    if settings.workers == 1:
        app = create_served_app(settings, run_migrations=False, lab_config=lab_config)
        lab = app.state.lab  # type: ignore[attr-defined]
        if lab is not None:
            log.info("lab service: provisioning machine types %s", ", ".join(sorted(lab.workers)))
        # After the drain, open progress streams are cut after a few seconds instead of holding the exit.
        config = uvicorn.Config(_logged(app, settings), **common,
                                timeout_graceful_shutdown=5 if lab is not None else None)
        announcing(DrainingServer, "lablease serve", url)(config, lab, settings.shutdown_timeout).run()
        return
    os.environ[_CONFIG_ENV] = str(settings.config_file or "")
    os.environ[_LEVEL_ENV] = settings.log_level
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config("lablease.server.serve:worker_app", factory=True, workers=settings.workers, **common)
    sock = config.bind_socket()  # as uvicorn.run does; bound here so that the announcement is true
    announce("lablease serve", url)
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
