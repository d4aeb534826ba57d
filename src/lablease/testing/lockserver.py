"""Start ``lablease serve`` as a subprocess on a free loopback port (tests, benchmarks, demo)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lablease.netutil import free_port
from lablease.testing.processes import ServerProcess


@dataclass
class LockServer:
    """A running lock server; ``url`` is what ``lock_server:`` points at."""

    url: str
    port: int
    config_path: Path
    process: ServerProcess

    def stop(self) -> None:
        self.process.stop()


def start_lock_server(workdir: Path, *, database_url: str | None = None, lab_domain: str | None = None,
                      admin_token: str | None = None, workers: int = 1,
                      extra: dict[str, Any] | None = None, timeout: float = 30.0,
                      env: dict[str, str] | None = None, top: dict[str, Any] | None = None) -> LockServer:
    """Write a config into ``workdir``, start ``python -m lablease serve`` and wait until it listens.

    ``env`` replaces the server's environment (the benchmark runs an older checkout via PYTHONPATH);
    ``top`` adds top-level keys (``libcloud``, ``nsupdate_url``: then it is the lab service).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    section: dict[str, Any] = {"data_dir": str(workdir / "data"), "port": port, "workers": workers,
                               **(extra or {})}
    if database_url:
        section["database_url"] = database_url
    if admin_token:
        section["admin_token"] = admin_token
    config: dict[str, Any] = {**(top or {}), "lablease": section}
    if lab_domain:
        config["lab_domain"] = lab_domain
    path = workdir / "lablease.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = ServerProcess([sys.executable, "-m", "lablease", "serve", "--config", str(path)],
                         log_path=workdir / "lockserver.log", env=env).start()
    try:
        proc.wait_for_port("127.0.0.1", port, timeout=timeout)
    except BaseException:  # Ctrl-C while it starts must not leave it running either
        proc.stop()
        raise
    return LockServer(url=f"http://127.0.0.1:{port}", port=port, config_path=path, process=proc)
