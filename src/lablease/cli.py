"""The `lablease` command: each component registers its own sub-commands."""

from __future__ import annotations

import typer

from lablease import __version__

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Lend cloud test nodes to a test lab.")


@app.callback()
def main() -> None:
    """Lend cloud test nodes to a test lab."""


@app.command()
def version() -> None:
    """Print lablease's version."""
    typer.echo(__version__)


def _register_components() -> None:
    # Each component owns its commands; registration keeps this module free of their details.
    from lablease.devcloud.cli import register as register_devcloud
    from lablease.dns.cli import register as register_dns
    from lablease.checks.cli import register as register_config
    from lablease.client.admin import register as register_reconcile
    from lablease.client.commands import register as register_lab
    from lablease.client.nodes import register as register_nodes
    from lablease.provision.cli import register as register_provision
    from lablease.server.cli import register as register_serve

    for register in (register_devcloud, register_dns, register_lab, register_serve, register_nodes, register_provision,
                     register_config, register_reconcile):
        register(app)


_register_components()
