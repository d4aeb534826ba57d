"""What every command that reads the lab config shares: the ``--config`` option and loading it or exiting."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from lablease.config.errors import ConfigError
from lablease.config.lab import LabConfig, default_config_path, parse_lab_config
from lablease.config.loader import load_yaml_file

ConfigOpt = typer.Option(None, "--config", "-c", help="teuthology.yaml (default: ~/.teuthology.yaml, then /etc/teuthology.yaml)")

# Exit codes of `config check`.
OK, UNREACHABLE_OR_REFUSED, BAD_CONFIG = 0, 1, 2


def load_or_exit(config: Optional[Path]) -> tuple[Path, dict[str, Any], LabConfig]:
    """The file, its mapping and its LabConfig; a ConfigError is printed and ends the command (exit 2)."""
    path = Path(config).expanduser() if config else default_config_path()
    try:
        data = load_yaml_file(path)
        return path, data, parse_lab_config(data, file=str(path))
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(BAD_CONFIG) from None


