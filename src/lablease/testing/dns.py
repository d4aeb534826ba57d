"""Run `lablease dns serve` as a subprocess against a BindServer, for tests, benchmarks and the demo."""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lablease.netutil import free_port
from lablease.testing.bind import BindServer
from lablease.testing.processes import ServerProcess


@dataclass
class DnsServiceHandle:
    """A running DNS service: ``url`` is its base URL, ``update_url`` teuthology's `nsupdate_url`."""

    url: str
    bind: BindServer
    config_path: Path
    config: dict[str, Any]
    process: ServerProcess = field(repr=False)

    @property
    def update_url(self) -> str:
        return f"{self.url}/update"

    def log_text(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.stop()


def dns_service_config(bind: BindServer, **overrides: Any) -> dict[str, Any]:
    """A dns.yaml mapping pointing at ``bind``; ``overrides`` replace or add keys."""
    config: dict[str, Any] = {
        "listen_host": "127.0.0.1",
        "listen_port": free_port(),
        "zone": bind.zone,
        "server": bind.host,
        "server_port": bind.port,
        "key_file": str(bind.key_file),
        "allow_pattern": r"node[0-9]+",
        "timeout": 2.0,
    }
    config.update(overrides)
    return config


def _wait_until_listening(process: ServerProcess, host: str, port: int, timeout: float) -> None:
    """Wait for the port, but fail at once (with its log) if the service exits, e.g. on a bad config."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if not process.alive():
            raise RuntimeError(f"lablease dns serve exited: {process.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"lablease dns serve not listening on {host}:{port} after {timeout:.0f}s: {process.log_tail()}")
        time.sleep(0.05)


def start_dns_service(workdir: Path, bind: BindServer, **config: Any) -> DnsServiceHandle:
    """Write a config into ``workdir`` and start `python -m lablease dns serve` on a free loopback port."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data = dns_service_config(bind, **config)
    config_path = workdir / f"dns-{data['listen_port']}.yaml"
    config_path.write_text(yaml.safe_dump(data))
    argv = [sys.executable, "-m", "lablease", "dns", "serve", "--config", str(config_path)]
    process = ServerProcess(argv, log_path=workdir / f"dns-{data['listen_port']}.log").start()
    try:
        _wait_until_listening(process, data["listen_host"], data["listen_port"], timeout=20)
    except BaseException:
        process.stop()
        raise
    base = data.get("base_path", "").rstrip("/")
    url = f"http://{data['listen_host']}:{data['listen_port']}{base}"
    return DnsServiceHandle(url=url, bind=bind, config_path=config_path, config=data, process=process)
