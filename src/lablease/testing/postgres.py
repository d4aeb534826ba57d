"""Start a throw-away PostgreSQL cluster on a free loopback port (tests, benchmarks, demo).

initdb/postgres refuse to run as root, so as root the cluster runs as the ``postgres``
account via runuser; otherwise as the current user. Trust authentication, loopback only.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from lablease.netutil import free_port, wait_for_port
from lablease.testing.components import INSTALL, MissingComponent

SUPERUSER = "lablease"


def postgres_bindir(root: str = "/usr/lib/postgresql", path: str | None = None) -> Path:
    """The newest ``<root>/<version>/bin`` holding initdb (Debian's layout), else initdb's directory on ``path``.

    Raises MissingComponent (naming PostgreSQL and its Debian package) when neither has initdb: a test
    that needs PostgreSQL fails with that message rather than being skipped.
    """
    candidates = [Path(p) for p in glob.glob(f"{root}/*/bin") if Path(p, "initdb").exists()]
    if not candidates:
        found = shutil.which("initdb", path=path)
        if found:
            return Path(found).parent
        raise MissingComponent(f"PostgreSQL is not installed: no initdb in {root}/*/bin or on "
                               f"{'PATH' if path is None else 'PATH=' + path}; "
                               + INSTALL.format(package="postgresql"))
    return max(candidates, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def _as_owner(argv: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *argv] if owner else argv


@dataclass
class PostgresServer:
    """A running cluster; ``url`` is the ``postgres`` database as the ``lablease`` superuser."""

    workdir: Path
    port: int
    bindir: Path
    owner: str | None
    host: str = "127.0.0.1"
    _dbs: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` (letters, digits, underscore) and return its SQLAlchemy URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: use letters, digits and underscores only")
        import psycopg  # imported here: only callers that start PostgreSQL need it

        with psycopg.connect(host=self.host, port=self.port, user=SUPERUSER, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self._dbs.append(name)
        return self.url_for(name)

    def stop(self) -> None:
        """Stop the cluster (fast shutdown); safe to call twice."""
        subprocess.run(
            _as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.workdir / "data"), "-m", "fast", "-w", "stop"],
                      self.owner),
            capture_output=True, timeout=60, check=False,
        )


def start_postgres(workdir: Path, max_connections: int = 200, durable: bool = False) -> PostgresServer:
    """initdb in ``workdir``/data and start the cluster on a free 127.0.0.1 port; wait until it listens.

    ``durable=False`` (tests) turns fsync off for speed; benchmarks pass True for honest numbers.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    bindir = postgres_bindir()
    owner = "postgres" if os.geteuid() == 0 else None
    if owner:
        shutil.chown(workdir, user=owner)
    data, log = workdir / "data", workdir / "postgres.log"
    done = subprocess.run(
        _as_owner([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8",
                   "--no-sync"], owner),
        capture_output=True, text=True, timeout=120, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr[-2000:]}")
    port = free_port()
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c max_connections={max_connections}"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    started = subprocess.run(
        _as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"], owner),
        capture_output=True, text=True, timeout=120, check=False,
    )
    server = PostgresServer(workdir=workdir, port=port, bindir=bindir, owner=owner)
    if started.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else started.stderr
        server.stop()
        raise RuntimeError(f"pg_ctl start failed ({started.returncode}): {tail}")
    deadline = time.monotonic() + 30
    wait_for_port("127.0.0.1", port, timeout=max(1.0, deadline - time.monotonic()))
    return server
