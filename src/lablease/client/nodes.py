"""The lock server's inventory, from its client: ``lablease nodes add|remove|list``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table

from lablease.config import ConfigError, load_yaml_file
from lablease.hostnames import HostNameError, fold_name, inventory_name, numbered_names
from lablease.client.lockclient import LockClient, LockClientError
from lablease.client.support import EXIT_CODES, INTERRUPTED, REFUSED, USAGE, exit_code
from lablease.lockapi.settings import DEFAULT_PORT, LockSettings
from lablease.logs import LogLevelOpt, QuietOpt, setup_command_logging

nodes_app = typer.Typer(no_args_is_help=True, help="Manage the node inventory of a lock server (as its client).")
USER_CONFIG = Path("~/.teuthology.yaml")
TOKEN_ENV = "LABLEASE_ADMIN_TOKEN"


def _fail(text: str, code: int = USAGE) -> NoReturn:
    """Say why on stderr and exit ``code`` (the README's: 1 refused, 2 usage, 3 unavailable, 4 unreachable)."""
    typer.echo(f"error: {text}", err=True)
    raise typer.Exit(code)


def _refused(exc: LockClientError, text: str | None = None) -> NoReturn:
    """A request the server refused (1; 401/403 too), could not serve (3, 503) or never answered (4)."""
    _fail(text or str(exc), exit_code(exc))


def _full_names(names: list[str], lab_domain: Optional[str]) -> list[str]:
    """The inventory names of ``names`` (lower case, in the lab domain, each once); a malformed name is a usage error."""
    try:
        # dict keeps order: 'Node1 node1' is one node, named once.
        return list(dict.fromkeys(inventory_name(n, lab_domain) for n in names))
    except HostNameError as exc:
        _fail(str(exc))
    raise AssertionError  # pragma: no cover


def _user_config(config: Optional[Path]) -> tuple[dict[str, Any], Optional[str]]:
    path = (config or USER_CONFIG).expanduser()
    if config is None and not path.exists():
        return {}, None
    try:
        return load_yaml_file(path), str(path)
    except ConfigError as exc:
        _fail(str(exc))
    raise AssertionError  # pragma: no cover


def admin_client(server: Optional[str], config: Optional[Path], token: Optional[str]) -> tuple[LockClient, Optional[str]]:
    """A client for ``--server``, else the config's ``lock_server``; the token from flag, env or config."""
    data, file = _user_config(config)
    url = server or data.get("lock_server") or f"http://127.0.0.1:{DEFAULT_PORT}"
    if token is None:
        token = os.environ.get(TOKEN_ENV)
    if token is None and data.get("lablease"):
        try:
            settings = LockSettings.from_mapping(data, file=file)
        except ConfigError as exc:
            _fail(str(exc))
        token = settings.admin_token.get_secret_value() if settings.admin_token else None
    client = LockClient(url, admin_token=token)
    # Without a lab_domain of its own the client takes the server's, so `nodes add -m T` makes the same
    # T001.<domain> names the server's users lock (not a bare T001 beside them).
    return client, data.get("lab_domain") or client.server_lab_domain()


ServerOpt = typer.Option(None, "--server", help="Lock server URL (default: lock_server of the config).")
ConfigOpt = typer.Option(None, "--config", "-c", help="Config file (default ~/.teuthology.yaml).")
TokenOpt = typer.Option(None, "--token", help=f"Admin token (or set {TOKEN_ENV}; or lablease.admin_token in the config).")


def _delete_all(client: LockClient, names: list[str]) -> list[str]:
    """Delete every one of ``names`` (undoing an add); return those that could not be deleted."""
    left = []
    for name in names:
        try:
            client.delete(name)
        except LockClientError:
            left.append(name)
    return left


def _undo_add(client: LockClient, created: list[str], reason: str, code: int) -> NoReturn:
    """Remove the nodes a failed or interrupted add created, then exit ``code`` saying what is left."""
    left = _delete_all(client, created)
    if left:
        text = (f"{reason}; could not remove {len(left)} of the node(s) created before it, "
                f"remove them by hand: {', '.join(left)}")
    else:
        text = reason + (f"; removed the {len(created)} node(s) created before it" if created else "; nothing added")
    typer.echo(f"error: {text}", err=True)
    raise typer.Exit(code)


@nodes_app.command("add", epilog=EXIT_CODES)
def add(
    names: list[str] = typer.Argument(None, help="Node names; or use --count with --machine-type."),
    machine_type: Optional[str] = typer.Option(None, "--machine-type", "-m"),
    count: Optional[int] = typer.Option(None, help="Create MACHINE_TYPE001 … MACHINE_TYPE<count>."),
    start: int = typer.Option(1, help="First number with --count."),
    vm: bool = typer.Option(False, "--vm/--no-vm", help="Mark the nodes as virtual machines (is_vm)."),
    up: bool = typer.Option(True, "--up/--down", help="Lockable right away (up) or not (down)."),
    os_type: Optional[str] = typer.Option(None), os_version: Optional[str] = typer.Option(None),
    arch: Optional[str] = typer.Option(None), description: Optional[str] = typer.Option(None),
    server: Optional[str] = ServerOpt, config: Optional[Path] = ConfigOpt, token: Optional[str] = TokenOpt,
    quiet: bool = QuietOpt, log_level: Optional[str] = LogLevelOpt,
) -> None:
    """Create nodes in the lab domain; all of them or none (created ones are removed on failure)."""
    from lablease.interrupts import rollback_on_signal

    setup_command_logging(quiet, log_level)

    if count is not None:
        if names:
            _fail("give node names or --count, not both")
        if not machine_type:
            _fail("--count needs --machine-type: names are <machine type>001, <machine type>002, …")
        try:
            names = numbered_names(machine_type, count, start=start)
        except ValueError as exc:
            _fail(str(exc))
    if not names:
        _fail("nothing to add: give node names or --machine-type TYPE --count N")
    client, lab_domain = admin_client(server, config, token)
    full = _full_names(names, lab_domain)
    fields = {k: v for k, v in dict(machine_type=machine_type, is_vm=vm, up=up, os_type=os_type,
                                     os_version=os_version, arch=arch, description=description).items()
              if v is not None}
    with client:
        try:
            # Folded: a record written in another case before names were lowered is the same node.
            existing = {fold_name(n["name"]) for n in client.list()}
        except LockClientError as exc:
            _refused(exc)
        clash = sorted(set(full) & existing)
        if clash:
            listed = f"{', '.join(clash[:10])}{' …' if len(clash) > 10 else ''}"
            _fail(f"already in the inventory: {listed}; nothing added", REFUSED)
        created: list[str] = []
        # Ctrl-C or SIGTERM stops adding and undoes the add (exit 130/143); a second one cannot cut that short.
        with rollback_on_signal() as interrupts:
            try:
                for name in full:
                    if interrupts.interrupted:
                        break
                    client.create(name, **fields)
                    created.append(name)
            except LockClientError as exc:
                _undo_add(client, created, str(exc), exit_code(exc))
            except KeyboardInterrupt:
                _undo_add(client, created, "interrupted", INTERRUPTED)
            if interrupts.exit_code is not None:
                _undo_add(client, created, "interrupted", interrupts.exit_code)
    if not quiet:
        typer.echo(f"added {len(full)} node(s): {full[0]}" + (f" … {full[-1]}" if len(full) > 1 else ""))


@nodes_app.command("remove", epilog=EXIT_CODES)
def remove(
    names: list[str] = typer.Argument(..., help="Node names (short names get the lab domain)."),
    force: bool = typer.Option(False, help="Also remove locked nodes."),
    server: Optional[str] = ServerOpt, config: Optional[Path] = ConfigOpt, token: Optional[str] = TokenOpt,
    quiet: bool = QuietOpt, log_level: Optional[str] = LogLevelOpt,
) -> None:
    """Delete nodes; refuses (and deletes nothing) when one is missing or locked, unless --force."""
    setup_command_logging(quiet, log_level)
    client, lab_domain = admin_client(server, config, token)
    full = _full_names(names, lab_domain)
    with client:
        try:
            known = {fold_name(n["name"]): n for n in client.list()}
        except LockClientError as exc:
            _refused(exc)
        missing = [n for n in full if n not in known]
        if missing:
            _fail(f"not in the inventory: {', '.join(missing)}; nothing removed", REFUSED)
        locked = [n for n in full if known[n]["locked"]]
        if locked and not force:
            _fail(f"locked: {', '.join(locked)}; unlock them first or pass --force; nothing removed", REFUSED)
        for done, name in enumerate(full):
            try:
                client.delete(known[name]["name"])  # as the server spells it, which may predate lowering
            except LockClientError as exc:
                # Deleted nodes cannot be put back as they were: say exactly what is gone and what is not.
                gone = f"removed before it: {', '.join(full[:done])}" if done else "nothing removed"
                _refused(exc, f"{exc}; {gone}; not removed: {', '.join(full[done:])}")
    if not quiet:
        typer.echo(f"removed {len(full)} node(s)")


@nodes_app.command("list", epilog=EXIT_CODES)
def list_nodes(
    machine_type: Optional[str] = typer.Option(None, "--machine-type", "-m"),
    locked: Optional[bool] = typer.Option(None, "--locked/--unlocked", help="Only locked or only free nodes."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON records."),
    server: Optional[str] = ServerOpt, config: Optional[Path] = ConfigOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the node names."),
    log_level: Optional[str] = LogLevelOpt,
) -> None:
    """List nodes with their lock and provisioning state."""
    setup_command_logging(quiet, log_level)
    client, _ = admin_client(server, config, None)
    with client:
        try:
            rows = client.list(machine_type=machine_type, locked=locked)
        except LockClientError as exc:
            _refused(exc)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if quiet:
        typer.echo("\n".join(n["name"] for n in rows), nl=bool(rows))
        return
    if not rows:
        typer.echo("no nodes" + (f" of machine type {machine_type}" if machine_type else "")
                   + (" matching --locked/--unlocked" if locked is not None else ""))
        return
    table = Table("name", "type", "up", "locked by", "since", "state", "description")
    for n in rows:
        table.add_row(n["name"], n.get("machine_type") or "", str(n.get("up")), n.get("locked_by") or "",
                      n.get("locked_since") or "", n.get("state") or "", n.get("description") or "")
    Console(width=200).print(table)


def register(app: typer.Typer) -> None:
    """Add ``nodes`` to the ``lablease`` app."""
    app.add_typer(nodes_app, name="nodes")
