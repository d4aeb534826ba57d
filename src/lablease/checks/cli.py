"""`lablease config check [--connect]` and `lablease config show`: the lab's teuthology.yaml as lablease reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
import yaml

from lablease.config.command import BAD_CONFIG, OK, UNREACHABLE_OR_REFUSED, ConfigOpt, load_or_exit
from lablease.config.lab import LabConfig
from lablease.config.redact import redact
from lablease.logs import LogLevelOpt, QuietOpt, setup_command_logging

config_app = typer.Typer(no_args_is_help=True, help="Check and show the lab config (teuthology.yaml).")

@config_app.command("check")
def check(
    config: Optional[Path] = ConfigOpt,
    connect: bool = typer.Option(False, "--connect", help="Also authenticate to each provider, look for its default "
                                 "image and a fitting size, and ask nsupdate_url's /healthz."),
    quiet: bool = QuietOpt, log_level: Optional[str] = LogLevelOpt,
) -> None:
    """Validate the config; every error names the file, the key and the fix.

    Exit codes: 0 ok (warnings may be printed); 1 a --connect check failed; 2 the config has errors.
    """
    from lablease.checks.lab import check_lab_file

    setup_command_logging(quiet, log_level)
    path, data, lab = load_or_exit(config)
    findings = check_lab_file(data, lab, str(path))
    for finding in findings:
        if finding.level == "error" or not quiet:
            typer.echo(f"{finding.level}: {finding.text}", err=True)
    errors = sum(f.level == "error" for f in findings)
    if errors:
        typer.echo(f"{path}: {errors} error(s)", err=True)
        raise typer.Exit(BAD_CONFIG)
    if not quiet:
        providers = ", ".join(sorted(lab.libcloud.providers)) or "none"
        multi = "; ".join(f"{t} = {', '.join(m.providers)}" for t, m in sorted(lab.libcloud.machine_types.items()))
        typer.echo(f"{path}: ok (lab_domain {lab.lab_domain}; providers: {providers}"
                   f"{'; multi-provider types: ' + multi if multi else ''})")
    if connect:
        _connect(lab, quiet)


def _connect(lab: LabConfig, quiet: bool) -> None:
    from lablease.checks.connect import connect_probes

    failed = 0
    for probe in connect_probes(lab):
        failed += not probe.ok
        if not probe.ok or not quiet:
            typer.echo(probe.line())
    if failed:
        raise typer.Exit(UNREACHABLE_OR_REFUSED)


def effective(data: dict[str, Any], lab: LabConfig, file: str) -> dict[str, Any]:
    """The config as lablease runs with it: every key of ``lablease:`` with its default (data_dir and
    database_url as ``serve`` resolves them), ``openstack:`` hints merged with the defaults a lock gets,
    teuthology's own keys as they are. Secrets are not redacted here (``redact`` does that)."""
    from lablease.lockapi.settings import LockSettings
    from lablease.provision.hints import merge_hints

    shown = lab.model_dump(mode="json")
    settings = LockSettings.from_mapping(data, file=file)
    section = settings.model_dump(mode="json", exclude={"lab_domain", "config_file", "admin_token"})
    raw = data.get("lablease") or {}
    section["admin_token"] = "***" if settings.admin_token else None
    if raw.get("admin_token_file"):
        section["admin_token_file"] = str(raw["admin_token_file"])
    hints = merge_hints(lab.openstack)
    shown["lablease"] = section
    shown["openstack"] = {**shown.get("openstack", {}),
                          "machine": {"disk": hints.disk, "ram": hints.ram, "cpus": hints.cpus},
                          "volumes": {"count": hints.volume_count, "size": hints.volume_size}}
    return shown


@config_app.command("show")
def show(config: Optional[Path] = ConfigOpt, quiet: bool = QuietOpt, log_level: Optional[str] = LogLevelOpt) -> None:
    """Print the config as lablease understands it, defaults filled in and secrets redacted."""
    from lablease.config import ConfigError
    from lablease.provision.hints import HintsError

    setup_command_logging(quiet, log_level)
    path, data, lab = load_or_exit(config)
    try:
        shown = effective(data, lab, str(path))
    except (ConfigError, HintsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(BAD_CONFIG) from None
    # teuthology's own keys are kept too (extra="allow"), so nothing of the file is lost.
    typer.echo(yaml.safe_dump(redact(shown), sort_keys=False, default_flow_style=False), nl=False)


def register(app: typer.Typer) -> None:
    """Add ``config`` to the ``lablease`` app."""
    app.add_typer(config_app, name="config")
