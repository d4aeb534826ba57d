"""Settings of the lock server, read from a teuthology.yaml-style file (``lablease:`` section).

Unknown top-level keys are ignored (the file is the lab's shared teuthology.yaml). The
``lablease:`` section is lablease's own: ``LabSection`` is the one list of its keys (the lock
server's and the lab service's), so a misspelt key there is an error naming the key it resembles.
With no file: an empty SQLite inventory under the data directory, no lab domain, no admin token.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from lablease.config import ConfigError, load_yaml_file, validate_section
from lablease.hostnames import check_lab_domain

DEFAULT_PORT = 8080


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/lablease``, else ``~/.local/share/lablease``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "lablease"


class LabSection(BaseModel):
    """Every key of the ``lablease:`` section; any other key there is an error (``worker: 2`` is a typo)."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path | None = None
    database_url: str | None = None
    admin_token: SecretStr | None = None
    admin_token_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    threads: int = Field(32, ge=1, le=512)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    db_pool_size: int = Field(20, ge=1, le=500)
    log_level: str = "INFO"
    access_log: bool = True  # one line per request: method, path, status, duration, client
    # the lab service (a libcloud: section): how long SIGTERM lets work in flight finish before it is
    # cancelled and rolled back, and how long a process's claim on a node lasts without its heartbeat
    # (renewed every third of it; a dead process's nodes on another host wait that long to be cleaned,
    # on the same host they are taken over at once: docs/lab-service.md)
    shutdown_timeout: float = Field(120.0, ge=0, le=3600)
    lease_seconds: float = Field(30.0, ge=10, le=86400)
    reconcile_interval: float = Field(60.0, ge=0, le=86400)  # 0: only on demand (lablease reconcile)
    # node_events older than this are deleted (at start-up, then daily); 0 keeps them for ever
    events_retention_days: float = Field(90.0, ge=0, le=36500)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite:", "postgresql")):
            raise ValueError("must start with sqlite:/// or postgresql+psycopg://")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        # Checked here: logging and uvicorn would otherwise fail at start-up with a traceback.
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()


class TopLevel(BaseModel):
    model_config = ConfigDict(extra="ignore")

    lab_domain: str | None = None
    lock_server: str | None = None
    lablease: dict[str, Any] | None = None

    @field_validator("lab_domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        # Lowered once, here: inventory names are compared with it in lower case (DNS ignores case).
        return check_lab_domain(value) if value and value.strip() else None


class LockSettings(BaseModel):
    """Everything the lock server needs, resolved (paths made absolute, token read)."""

    model_config = ConfigDict(frozen=True)

    lab_domain: str | None = None
    data_dir: Path
    database_url: str
    admin_token: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    threads: int = 32
    max_body_bytes: int = 1_048_576
    db_pool_size: int = 20
    log_level: str = "INFO"
    access_log: bool = True
    shutdown_timeout: float = 120.0
    lease_seconds: float = 30.0
    reconcile_interval: float = 60.0
    events_retention_days: float = 90.0
    config_file: Path | None = None

    @classmethod
    def defaults(cls, data_dir: Path | None = None) -> "LockSettings":
        """No config file: SQLite file under the default data directory."""
        return cls.from_mapping({}, data_dir=data_dir)

    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, file: str | None = None,
                     data_dir: Path | None = None) -> "LockSettings":
        top = validate_section(TopLevel, data, file=file)
        section = validate_section(LabSection, top.lablease or {}, file=file, prefix="lablease")
        ddir = Path(data_dir or section.data_dir or default_data_dir()).expanduser().resolve()
        token = section.admin_token
        if token is None and section.admin_token_file is not None:
            token = _read_token(section.admin_token_file, file)
        if token is not None and not token.get_secret_value().strip():
            raise ConfigError("must not be empty", file=file, key="lablease.admin_token",
                              fix="set a token or remove the key to leave create/delete open")
        return cls(
            lab_domain=(top.lab_domain or None), data_dir=ddir,
            database_url=section.database_url or f"sqlite:///{ddir / 'lablease.db'}",
            admin_token=SecretStr(token.get_secret_value().strip()) if token else None,
            host=section.host, port=section.port, workers=section.workers, threads=section.threads,
            max_body_bytes=section.max_body_bytes, db_pool_size=section.db_pool_size,
            log_level=section.log_level, access_log=section.access_log, shutdown_timeout=section.shutdown_timeout,
            lease_seconds=section.lease_seconds, reconcile_interval=section.reconcile_interval,
            events_retention_days=section.events_retention_days,
            config_file=Path(file) if file else None,
        )

    @classmethod
    def load(cls, path: str | Path | None) -> "LockSettings":
        """Read ``path`` (or use the defaults when None)."""
        if path is None:
            return cls.defaults()
        p = Path(path).expanduser().resolve()
        return cls.from_mapping(load_yaml_file(p), file=str(p))


def _read_token(path: Path, file: str | None) -> SecretStr:
    try:
        return SecretStr(Path(path).expanduser().read_text().strip())
    except OSError as exc:
        raise ConfigError(f"cannot read admin_token_file: {exc.strerror}", file=file,
                          key="lablease.admin_token_file", fix="point it at a readable file") from None
