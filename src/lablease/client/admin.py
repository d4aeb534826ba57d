"""``lablease reconcile``: the lab service's reconciler pass, run by an operator from a shell.

It prints every action the pass planned (``--dry-run``) or took, with its reason. The pass looks
twice, ``--settle`` seconds apart, so a leak it reports is final in this one call; one pass runs
at a time across all service processes (another one running: exit 1, try again).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from lablease.client.lockclient import LockClientError
from lablease.client.nodes import ConfigOpt, ServerOpt, TokenOpt, admin_client
from lablease.client.support import EXIT_CODES, exit_code
from lablease.logs import LogLevelOpt, QuietOpt, setup_command_logging


def describe(report: dict[str, Any], dry_run: bool) -> list[str]:
    """One line per action of one provider's report, planned or done, with its reason."""
    lines = []
    for act in report.get("actions", []):
        if dry_run:
            verb = f"would {act['action']}"
        else:
            verb = act["action"] if act["done"] else f"FAILED to {act['action']}"
        node = f" (node {act['node']})" if act.get("node") and act["node"] != act["id"] else ""
        lines.append(f"{report['machine_type']}: {verb} {act['kind']} {act['id']}{node}: {act['reason']}")
    pending = sum(len(v) for v in report.get("pending", {}).values())
    if pending:
        lines.append(f"{report['machine_type']}: {pending} possible leak(s) seen once only (a create may be "
                     f"writing its record); the next pass decides")
    lines.extend(f"{report['machine_type']}: problem: {p}" for p in report.get("failed", []))
    return lines


def reconcile(
    machine_type: Optional[str] = typer.Option(None, "--machine-type", "-m", help="Only this cloud machine type."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what the pass would do; change nothing."),
    settle: float = typer.Option(3.0, "--settle", min=0, max=10,
                                 help="Seconds between the pass's two looks at the cloud (a leak must be seen twice)."),
    as_json: bool = typer.Option(False, "--json", help="The reports as JSON on stdout."),
    quiet: bool = QuietOpt, server: Optional[str] = ServerOpt, config: Optional[Path] = ConfigOpt,
    token: Optional[str] = TokenOpt, log_level: Optional[str] = LogLevelOpt,
) -> None:
    """Run one reconciler pass now (admin): delete leaked servers, volumes and DNS names, take over abandoned
    nodes, retry failed destroys; print every action with its reason."""
    setup_command_logging(quiet, log_level)
    client, _ = admin_client(server, config, token)
    try:
        with client:
            reports = client.reconcile(machine_type, dry_run=dry_run, settle=settle)
    except LockClientError as exc:
        typer.echo(f"error: {exc.reason if exc.status else exc}", err=True)
        raise typer.Exit(exit_code(exc)) from None
    if as_json:
        typer.echo(json.dumps(reports, indent=2))
        return
    lines = [line for report in reports for line in describe(report, dry_run)]
    for line in lines:
        typer.echo(line)
    if not quiet:
        done = sum(1 for r in reports for a in r.get("actions", []) if a["done"])
        planned = sum(len(r.get("actions", [])) for r in reports)
        what = f"{planned} action(s) planned" if dry_run else f"{done} of {planned} action(s) done"
        typer.echo(f"reconcile{' (dry run)' if dry_run else ''}: {len(reports)} provider(s), {what}", err=True)
    if any(a for r in reports for a in r.get("actions", []) if not a["done"] and not dry_run):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``reconcile`` to the ``lablease`` app."""
    app.command("reconcile", epilog=EXIT_CODES)(reconcile)
