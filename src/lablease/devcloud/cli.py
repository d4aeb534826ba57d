"""Commands of the devcloud component: `lablease devcloud serve`."""

from __future__ import annotations

import shutil
import signal
import tempfile
from pathlib import Path
from typing import Optional

import typer

from lablease.logs import LogLevelOpt, ServiceQuietOpt, service_level

devcloud_app = typer.Typer(no_args_is_help=True, help="devcloud: an OpenStack-compatible local cloud.")


@devcloud_app.command()
def serve(
    config: Optional[Path] = typer.Option(None, "--config", help="YAML config file (default: the documented default cloud)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (keep it on loopback)"),
    port: int = typer.Option(8780, "--port", help="port for every API (Keystone, Nova, Cinder, Glance, Neutron)"),
    quiet: bool = ServiceQuietOpt, log_level: Optional[str] = LogLevelOpt,
) -> None:
    """Serve devcloud until interrupted; every API on one port."""
    import uvicorn

    from lablease.config import ConfigError
    from lablease.devcloud.app import create_app
    from lablease.devcloud.config import load_config
    from lablease.logs import announcing, setup_logging

    if not _is_loopback(host):
        typer.echo(f"error: --host {host}: devcloud serves loopback only (its admin API has no authentication); "
                   "use an address in 127.0.0.0/8", err=True)
        raise typer.Exit(2)
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    setup_logging(service_level(quiet, log_level, cfg.log_level))
    workdir = Path(cfg.workdir) if cfg.workdir else Path(tempfile.mkdtemp(prefix="devcloud-"))
    workdir.mkdir(parents=True, exist_ok=True)
    # uvicorn shuts down on SIGTERM, then raises the signal again under the handler it found: with the default
    # one the process died there, before the temporary workdir below was removed. This one ends it through
    # the finally instead (exit 143).
    signal.signal(signal.SIGTERM, _terminated)
    try:
        # Idle connections are kept 75 s, as a cloud's load balancer does: with uvicorn's 5 s a
        # client that waited longer (200 nodes booting on a busy machine) races the close and gets
        # "connection reset" on a request that may not be repeated (an attach, a create).
        config = uvicorn.Config(create_app(cfg, workdir), host=host, port=port, log_config=None, access_log=False,
                                timeout_keep_alive=75)
        announcing(uvicorn.Server, "lablease devcloud serve", f"http://{host}:{port}")(config).run()
    finally:
        if not cfg.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(app: typer.Typer) -> None:
    """Add this component's commands to the `lablease` app."""
    app.add_typer(devcloud_app, name="devcloud")
