"""Commands of the provision component: `lablease config check|show` and `lablease provision ...`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
import yaml

from lablease.config import ConfigError, load_yaml_file, redact
from lablease.config.lab import default_config_path, parse_lab_config

config_app = typer.Typer(no_args_is_help=True, help="Check and show the lab config (teuthology.yaml).")
provision_app = typer.Typer(no_args_is_help=True, help="Create and destroy cloud nodes directly (operators).")

ConfigOpt = typer.Option(None, "--config", "-c", help="teuthology.yaml (default: ~/.teuthology.yaml, then /etc/teuthology.yaml)")


def _path(config: Optional[Path]) -> Path:
    return Path(config).expanduser() if config else default_config_path()


def _load(config: Optional[Path]):
    path = _path(config)
    try:
        data = load_yaml_file(path)
        return path, data, parse_lab_config(data, file=str(path))
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@config_app.command("check")
def check(config: Optional[Path] = ConfigOpt) -> None:
    """Validate the config; every error names the file, the key and the fix."""
    path, _, lab = _load(config)
    providers = ", ".join(sorted(lab.libcloud.providers)) or "none"
    typer.echo(f"{path}: ok (lab_domain {lab.lab_domain}; providers: {providers})")


@config_app.command("show")
def show(config: Optional[Path] = ConfigOpt) -> None:
    """Print the config as lablease understands it, defaults filled in and secrets redacted."""
    _, _, lab = _load(config)
    # model_dump keeps teuthology's own keys too (extra="allow"), so nothing of the file is lost.
    typer.echo(yaml.safe_dump(redact(lab.model_dump(mode="json")), sort_keys=False, default_flow_style=False), nl=False)


def _provisioner(config: Optional[Path], machine_type: str):
    from lablease.logs import setup_logging
    from lablease.provision.engine import provisioner_from_config

    setup_logging("INFO")
    path, _, lab = _load(config)
    try:
        lab.provider(machine_type, file=str(path))
        return provisioner_from_config(lab, machine_type)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _parse_hints(hints: Optional[str]):
    """The --hints JSON, checked before anything is created: one clear error instead of one per node."""
    from lablease.provision.hints import HintsError, merge_hints

    if not hints:
        return None
    try:
        parsed = json.loads(hints)
        merge_hints(parsed)
    except (json.JSONDecodeError, HintsError) as exc:
        typer.echo(f"error: --hints: {exc} (give JSON such as "
                   '\'{"machine": {"ram": 4000}, "volumes": {"count": 2, "size": 10}}\')', err=True)
        raise typer.Exit(2) from None
    return parsed


@provision_app.command("create")
def create(
    names: list[str] = typer.Argument(..., help="node names (short or in the lab domain)"),
    machine_type: str = typer.Option(..., "--machine-type", "-m", help="a key of libcloud.providers"),
    os_type: str = typer.Option("ubuntu", "--os-type"),
    os_version: str = typer.Option("22.04", "--os-version"),
    hints: Optional[str] = typer.Option(None, "--hints", help='JSON, e.g. {"machine": {"ram": 4000}, "volumes": {"count": 2, "size": 10}}'),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Create nodes in parallel and print what came up (JSON lines).

    Ctrl-C or SIGTERM cancels: nothing new starts, waits stop, everything made is removed, and the
    exit code is 130 (SIGINT) or 143 (SIGTERM); a second signal does not cut the rollback short.
    """
    from lablease.interrupts import rollback_on_signal
    from lablease.provision.models import CreateRequest
    from lablease.provision.progress import rich_progress

    parsed = _parse_hints(hints)
    with _provisioner(config, machine_type) as prov, rich_progress(names) as on_progress, \
            rollback_on_signal(prov.cancel) as interrupts:
        prov.emit = on_progress
        outcomes = prov.create_many([CreateRequest(n, os_type, os_version, parsed) for n in names])
    failed = 0
    for o in outcomes:
        if o.ok:
            typer.echo(json.dumps({"name": o.name, "server_id": o.node.server_id, "address": o.node.address,
                                   "host_key": o.node.host_key, "volumes": o.node.volume_ids}))
        else:
            failed += 1
            typer.echo(json.dumps({"name": o.name, "error": str(o.error), "stage": o.error.stage.value}))
    if interrupts.exit_code is not None:
        raise typer.Exit(interrupts.exit_code)
    raise typer.Exit(1 if failed else 0)


@provision_app.command("destroy")
def destroy(
    names: list[str] = typer.Argument(...),
    machine_type: str = typer.Option(..., "--machine-type", "-m"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Destroy nodes: volumes, every server of the name, the DNS record."""
    with _provisioner(config, machine_type) as prov:
        outcomes = prov.destroy_many(names)
    failed = 0
    for o in outcomes:
        typer.echo(f"{o.name}: {'destroyed' if o.ok else o.error}")
        failed += not o.ok
    raise typer.Exit(1 if failed else 0)


@provision_app.command("list")
def list_owned(machine_type: str = typer.Option(..., "--machine-type", "-m"), config: Optional[Path] = ConfigOpt) -> None:
    """List the servers and volumes in the cloud tagged as this lab's."""
    with _provisioner(config, machine_type) as prov:
        owned = prov.list_owned()
    for s in owned.servers:
        typer.echo(f"server {s.id} name={s.name} node={s.node} attempt={s.attempt} state={s.state}")
    for v in owned.volumes:
        typer.echo(f"volume {v.id} name={v.name} node={v.node} attempt={v.attempt} state={v.state}")


def register(app: typer.Typer) -> None:
    """Add this component's commands to the `lablease` app."""
    app.add_typer(config_app, name="config")
    app.add_typer(provision_app, name="provision")
