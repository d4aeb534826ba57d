"""Commands of the dns component: `lablease dns serve --config dns.yaml` and `lablease dns hash-token`."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from lablease.config import ConfigError
from lablease.logs import LogLevelOpt, QuietOpt, ServiceQuietOpt, service_level, setup_command_logging

dns_app = typer.Typer(no_args_is_help=True, help="The DNS update service (nsupdate-web compatible).")

_CONFIG_ENV = "LABLEASE_DNS_CONFIG"
_LEVEL_ENV = "LABLEASE_DNS_LOG_LEVEL"  # --log-level, which the config file does not hold


def _app(cfg):
    """The service's ASGI app for ``cfg``, with one access line per request unless ``access_log: false``."""
    from lablease.dns.service import create_app
    from lablease.logs import AccessLog, successful_read

    def quiet(method: str, path: str, status: int) -> bool:
        # nsupdate-web's GET /update changes a record: it stays at INFO with the service's other changes.
        return successful_read(method, path, status) and path.rstrip("/") != "/update"

    app = create_app(cfg)
    return AccessLog(app, quiet=quiet) if cfg.access_log else app


def app_from_env():
    """uvicorn factory for multi-worker mode: each worker process loads the config itself."""
    from lablease.dns.config import load_dns_config
    from lablease.logs import setup_logging

    cfg = load_dns_config(os.environ[_CONFIG_ENV])
    setup_logging(os.environ.get(_LEVEL_ENV) or cfg.log_level)  # a worker is a fresh process
    return _app(cfg)


@dns_app.command()
def serve(config: Path = typer.Option(..., "--config", "-c", help="dns.yaml"),
          quiet: bool = ServiceQuietOpt, log_level: Optional[str] = LogLevelOpt) -> None:
    """Serve the DNS update API until interrupted."""
    import uvicorn

    from lablease.dns.config import load_dns_config
    from lablease.logs import announcing, setup_logging

    try:
        cfg = load_dns_config(config)
        app = _app(cfg)  # also proves the key and token files are readable before we listen
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    level = service_level(quiet, log_level, cfg.log_level)
    setup_logging(level)
    common = dict(host=cfg.listen_host, port=cfg.listen_port, access_log=False, log_config=None,
                  timeout_graceful_shutdown=5)
    url = f"http://{cfg.listen_host}:{cfg.listen_port}{cfg.base_path}"
    if cfg.workers == 1:
        announcing(uvicorn.Server, "lablease dns serve", url)(uvicorn.Config(app, **common)).run()
    else:
        os.environ[_LEVEL_ENV] = level
        _serve_workers(cfg, config, common, url)


def _serve_workers(cfg, config_path: Path, common: dict, url: str) -> None:
    """Several uvicorn worker processes sharing one listening socket.

    uvicorn's own bind makes a socket with protocol 0, and asyncio then leaves TCP_NODELAY off on
    accepted connections, so every answer waits ~40 ms for a delayed ACK: bind it ourselves.
    """
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from lablease.logs import announce

    os.environ[_CONFIG_ENV] = str(config_path.resolve())
    uv_config = uvicorn.Config("lablease.dns.cli:app_from_env", factory=True, workers=cfg.workers, **common)
    family = socket.AF_INET6 if ":" in cfg.listen_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.listen_host, cfg.listen_port))
    except OSError as exc:
        sock.close()
        typer.echo(f"error: cannot listen on {cfg.listen_host}:{cfg.listen_port}: {exc.strerror} "
                   "(change listen_host/listen_port or stop what uses the port)", err=True)
        raise typer.Exit(2) from None
    sock.set_inheritable(True)
    announce("lablease dns serve", url)
    try:
        Multiprocess(uv_config, sockets=[sock]).run()
    finally:
        sock.close()


@dns_app.command("hash-token")
def hash_token(quiet: bool = QuietOpt, log_level: Optional[str] = LogLevelOpt) -> None:
    """Read a token on stdin and print its SHA-256, the value for `tokens[].sha256` in dns.yaml."""
    setup_command_logging(quiet, log_level)
    token = sys.stdin.readline().strip()
    if not token:
        typer.echo("error: no token on stdin (printf %s TOKEN | lablease dns hash-token)", err=True)
        raise typer.Exit(2)
    typer.echo(hashlib.sha256(token.encode()).hexdigest())


def register(app: typer.Typer) -> None:
    """Add this component's commands to the `lablease` app."""
    app.add_typer(dns_app, name="dns")
