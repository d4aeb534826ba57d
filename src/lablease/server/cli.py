"""``lablease serve``: the lock API, with the lab service when the config has a ``libcloud:`` section."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lablease.config import ConfigError
from lablease.lockapi.settings import DEFAULT_PORT, LockSettings
from lablease.logs import LogLevelOpt, ServiceQuietOpt, service_level


def _fail(text: str) -> None:
    typer.echo(f"error: {text}", err=True)
    raise typer.Exit(2)


def serve(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="teuthology.yaml-style file with a lablease: section."),
    host: Optional[str] = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
    # Ranges as in the config file's lablease section: overrides bypass its validation.
    port: Optional[int] = typer.Option(None, min=1, max=65535, help=f"Port to listen on (default {DEFAULT_PORT})."),
    workers: Optional[int] = typer.Option(None, min=1, max=64, help="uvicorn worker processes (default 1)."),
    quiet: bool = ServiceQuietOpt, log_level: Optional[str] = LogLevelOpt,
) -> None:
    """Serve the paddles-compatible /nodes lock API."""
    from lablease.server.serve import serve as run

    try:
        settings = LockSettings.load(config)
    except ConfigError as exc:
        _fail(str(exc))
    overrides = {k: v for k, v in (("host", host), ("port", port), ("workers", workers)) if v is not None}
    overrides["log_level"] = service_level(quiet, log_level, settings.log_level)
    settings = settings.model_copy(update=overrides)
    try:
        run(settings)
    except ConfigError as exc:  # the database named in the config cannot be opened
        _fail(str(exc))


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``lablease`` app."""
    app.command("serve")(serve)
