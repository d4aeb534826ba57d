"""Commands of the dns component: `lablease dns serve --config dns.yaml` and `lablease dns hash-token`."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import typer

from lablease.config import ConfigError

dns_app = typer.Typer(no_args_is_help=True, help="The DNS update service (nsupdate-web compatible).")

_CONFIG_ENV = "LABLEASE_DNS_CONFIG"


def app_from_env():
    """uvicorn factory for multi-worker mode: each worker process loads the config itself."""
    from lablease.dns.config import load_dns_config
    from lablease.dns.service import create_app

    return create_app(load_dns_config(os.environ[_CONFIG_ENV]))


@dns_app.command()
def serve(config: Path = typer.Option(..., "--config", "-c", help="dns.yaml")) -> None:
    """Serve the DNS update API until interrupted."""
    import uvicorn

    from lablease.dns.config import load_dns_config
    from lablease.dns.service import create_app
    from lablease.logs import setup_logging

    try:
        cfg = load_dns_config(config)
        app = create_app(cfg)  # also proves the key and token files are readable before we listen
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    setup_logging(cfg.log_level)
    common = dict(host=cfg.listen_host, port=cfg.listen_port, access_log=False, log_level=cfg.log_level.lower(),
                  log_config=None, timeout_graceful_shutdown=5)
    if cfg.workers == 1:
        uvicorn.run(app, **common)
    else:
        _serve_workers(cfg, config, common)


def _serve_workers(cfg, config_path: Path, common: dict) -> None:
    """Several uvicorn worker processes sharing one listening socket.

    uvicorn's own bind makes a socket with protocol 0, and asyncio then leaves TCP_NODELAY off on
    accepted connections, so every answer waits ~40 ms for a delayed ACK: bind it ourselves.
    """
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

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
    try:
        Multiprocess(uv_config, sockets=[sock]).run()
    finally:
        sock.close()


@dns_app.command("hash-token")
def hash_token() -> None:
    """Read a token on stdin and print its SHA-256, the value for `tokens[].sha256` in dns.yaml."""
    token = sys.stdin.readline().strip()
    if not token:
        typer.echo("error: no token on stdin (printf %s TOKEN | lablease dns hash-token)", err=True)
        raise typer.Exit(2)
    typer.echo(hashlib.sha256(token.encode()).hexdigest())


def register(app: typer.Typer) -> None:
    """Add this component's commands to the `lablease` app."""
    app.add_typer(dns_app, name="dns")
