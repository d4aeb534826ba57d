"""The lab's user commands: ``lablease lock-many | lock | unlock | list | summary | status``.

A client of the lab service's HTTP API (paddles' /nodes plus lablease's progress stream and
event trail); against a plain paddles server it works too, without the live view.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Optional

import typer

from lablease.client.force import force_unlock
from lablease.client.policy import register as register_policy
from lablease.client.usage import register as register_usage
from lablease.client.render import (
    LiveProgress,
    PlainProgress,
    console_logs,
    events_table,
    list_table,
    locked_table,
    record_grid,
    summary_rows,
    summary_table,
    targets_yaml,
)
from lablease.client.support import (
    CONFIG_FILES,
    EXIT_CODES,
    SERVER_ENV,
    USAGE,
    WAIT_SECONDS,
    ProgressWatcher,
    Session,
    answered,
    default_owner,
    explain_shortage,
    new_request_id,
    open_session,
)
from lablease.client.lockclient import LockClient, LockClientError
from lablease.logs import LogLevelOpt, logs_above

JsonOpt = typer.Option(False, "--json", help="Print only JSON on stdout (errors too: {error, exit_code, status}).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress; print only node names (or nothing).")
ServerOpt = typer.Option(None, "--server", help=f"Lock server URL (default: ${SERVER_ENV}, else lock_server: "
                                                f"of {' or '.join(CONFIG_FILES)}).")
OwnerOpt = typer.Option(None, "--owner", help="Who locks (default: $USER@$(hostname), as teuthology).")
UnlockOwnerOpt = typer.Option(None, "--owner", help="Who unlocks (must be the lock's owner; default: "
                                                    "$USER@$(hostname), as teuthology). With --force: who forces.")
DescOpt = typer.Option(None, "--desc", "--description", help="Description of the lock (e.g. the job).")
OsTypeOpt = typer.Option(None, "--os-type", help="e.g. ubuntu.")
OsVersionOpt = typer.Option(None, "--os-version", help="e.g. 22.04.")


@contextlib.contextmanager
def watching(session: Session, request_id: str, title: str) -> Iterator[None]:
    """Show the request's progress while it runs: live lines on a terminal, plain lines otherwise."""
    if session.quiet:
        yield
        return
    live = LiveProgress(session.err, title) if session.live else None
    if live is None:
        session.err.print(title, markup=False, highlight=False)
    # Log lines go above the live view, through its console, instead of through it.
    through = logs_above(session.err) if live else contextlib.nullcontext()
    with live or contextlib.nullcontext(), through, \
            ProgressWatcher(session.url, request_id, live or PlainProgress(session.err)):
        yield


def show_locked(session: Session, nodes: list[dict[str, Any]], owner: str, answer: Any,
                targets: str | None = None) -> None:
    """The nodes a lock gave: ``answer`` as JSON, names (quiet), teuthology's ``targets:`` block (``targets`` is
    its user: ``--targets``), or a table with addresses and host keys."""
    if session.as_json:
        session.emit_json(answer)
    elif targets is not None:
        session.out.file.write(targets_yaml(nodes, targets))
    elif session.quiet:
        for node in nodes:
            session.out.print(node["name"], markup=False, highlight=False)
    else:
        session.out.print(locked_table(session.out, nodes))
        session.out.print(f"locked {len(nodes)} node(s) for {owner}", markup=False, highlight=False)


def _full_record(client: LockClient, short: dict[str, Any]) -> dict[str, Any]:
    """The whole record of a node just locked (the lock answer is short); the short one if that fails."""
    try:
        return client.get(short["name"])
    except LockClientError:
        return short


def _still_running(owner: str) -> str:
    return f"interrupted: the server may still lock nodes for {owner}; see: lablease list --owner {owner}"


def lock_many(
    count: int = typer.Argument(..., min=1, help="How many nodes."),
    machine_type: str = typer.Option(..., "--machine-type", "-m", help="Machine type to lock."),
    os_type: Optional[str] = OsTypeOpt, os_version: Optional[str] = OsVersionOpt,
    arch: Optional[str] = typer.Option(None, "--arch", help="e.g. x86_64."),
    desc: Optional[str] = DescOpt, owner: Optional[str] = OwnerOpt,
    targets: bool = typer.Option(False, "--targets", help=(
        "Print teuthology's targets: block (YAML, user@name: host key, as teuthology-lock --lock-many and a "
        "job's yaml have it) on stdout instead of the table.")),
    user: str = typer.Option("ubuntu", "--user", help="The user of --targets' user@name keys (teuthology's "
                             "default; '' for bare names)."),
    as_json: bool = JsonOpt, quiet: bool = QuietOpt, server: Optional[str] = ServerOpt,
    log_level: Optional[str] = LogLevelOpt,
) -> None:
    """Lock COUNT nodes of a machine type, all or none; cloud nodes are created first, shown as they come up."""
    if targets and as_json:
        typer.echo("error: --targets and --json each choose what stdout holds: give one", err=True)
        raise typer.Exit(USAGE)
    session = open_session(server, as_json, quiet, log_level)
    owner = owner or default_owner()
    request_id = new_request_id()
    with answered(session, _still_running(owner)), session.client() as client:
        try:
            with watching(session, request_id, f"locking {count} {machine_type} node(s) for {owner}"):
                nodes = client.lock_many(count, machine_type, owner, desc, wait=WAIT_SECONDS, os_type=os_type,
                                         os_version=os_version, arch=arch, request_id=request_id)
        except LockClientError as exc:
            raise explain_shortage(client, exc, machine_type, count) from None
    show_locked(session, nodes, owner, nodes, user if targets else None)


def lock(
    name: str = typer.Argument(..., help="Node name (a short name gets the lab_domain)."),
    desc: Optional[str] = DescOpt, os_type: Optional[str] = OsTypeOpt, os_version: Optional[str] = OsVersionOpt,
    owner: Optional[str] = OwnerOpt,
    as_json: bool = JsonOpt, quiet: bool = QuietOpt, server: Optional[str] = ServerOpt,
    log_level: Optional[str] = LogLevelOpt,
) -> None:
    """Lock one node by name; a cloud node is created first."""
    session = open_session(server, as_json, quiet, log_level)
    owner, name = owner or default_owner(), session.node_name(name)
    request_id = new_request_id()
    with answered(session, _still_running(owner)), session.client() as client:
        with watching(session, request_id, f"locking {name} for {owner}"):
            short = client.lock_one(name, owner, desc, wait=WAIT_SECONDS, os_type=os_type, os_version=os_version,
                                    request_id=request_id)
        node = _full_record(client, short)
    show_locked(session, [node], owner, node)


def unlock(
    names: list[str] = typer.Argument(..., help="Node names (short names get the lab_domain)."),
    owner: Optional[str] = UnlockOwnerOpt,
    desc: Optional[str] = typer.Option(None, "--desc", "--description", help="Must match the lock's, if given."),
    force: bool = typer.Option(False, "--force", help=(
        "Admin: destroy and free cloud nodes in any state, whoever holds them (a lock abandoned by a dead "
        "process, a stuck provisioning, a failed destroy); needs the admin token. --owner is named in the "
        "nodes' events as who forced them.")),
    token: Optional[str] = typer.Option(None, "--token", help=(
        "Admin token for --force (or set LABLEASE_ADMIN_TOKEN; or lablease.admin_token in the config).")),
    as_json: bool = JsonOpt, quiet: bool = QuietOpt, server: Optional[str] = ServerOpt,
    log_level: Optional[str] = LogLevelOpt,
) -> None:
    """Unlock nodes, all or none; cloud nodes are destroyed first. --force (admin) frees them in any state."""
    session = open_session(server, as_json, quiet, log_level)
    owner, full = owner or default_owner(), [session.node_name(n) for n in names]
    if force:
        force_unlock(session, full, owner, token)
        return
    busy = session.err.status(f"unlocking {len(full)} node(s)") if session.live else contextlib.nullcontext()
    with answered(session, "interrupted: the server goes on unlocking; see: lablease list"), \
            session.client() as client, busy:
        done = client.unlock_many(full, owner, desc, wait=WAIT_SECONDS)
    if session.as_json:
        session.emit_json(done)
    elif not quiet:
        session.out.print(f"unlocked {len(done)} node(s): {', '.join(n['name'] for n in done)}",
                          markup=False, highlight=False)


def list_nodes(
    machine_type: Optional[str] = typer.Option(None, "--machine-type", "-m", help="Type, or types as a|b."),
    owner: Optional[str] = typer.Option(None, "--owner", help="Only nodes locked by this owner."),
    state: Optional[str] = typer.Option(None, "--state", help="Only nodes in this state (idle, ready, …)."),
    locked: Optional[bool] = typer.Option(None, "--locked/--unlocked", help="Only locked or only free nodes."),
    as_json: bool = JsonOpt, quiet: bool = QuietOpt, server: Optional[str] = ServerOpt,
    log_level: Optional[str] = LogLevelOpt,
) -> None:
    """List nodes: type, state, owner, how long locked, description, os, address."""
    session = open_session(server, as_json, quiet, log_level)
    with answered(session), session.client() as client:
        nodes = client.list(machine_type=machine_type, locked_by=owner, locked=locked)
    nodes = [n for n in nodes if state is None or n.get("state") == state]
    if session.as_json:
        session.emit_json(nodes)
    elif quiet:
        for node in sorted(nodes, key=lambda n: n["name"]):
            session.out.print(node["name"], markup=False, highlight=False)
    else:
        session.out.print(list_table(session.out, nodes))


def summary(
    machine_type: Optional[str] = typer.Option(None, "--machine-type", "-m", help="Type, or types as a|b."),
    as_json: bool = JsonOpt, quiet: bool = QuietOpt, server: Optional[str] = ServerOpt,
    log_level: Optional[str] = LogLevelOpt,
) -> None:
    """Count nodes by machine type and state, with how many are up and locked (as teuthology-lock --summary)."""
    session = open_session(server, as_json, quiet, log_level)
    with answered(session), session.client() as client:
        rows = summary_rows(client.list(machine_type=machine_type))
    if session.as_json:
        session.emit_json(rows)
    else:
        session.out.print(summary_table(session.out, rows))


def _events(client: LockClient, name: str) -> list[dict[str, Any]]:
    """The node's events; none from a server without the event trail (paddles answers 404)."""
    try:
        return client.events(name)
    except LockClientError as exc:
        if exc.status == 404:
            return []
        raise


def status(
    name: str = typer.Argument(..., help="Node name (a short name gets the lab_domain)."),
    as_json: bool = JsonOpt, quiet: bool = QuietOpt, server: Optional[str] = ServerOpt,
    log_level: Optional[str] = LogLevelOpt,
) -> None:
    """Show one node's record and its events (time, action, who, old → new, error)."""
    session = open_session(server, as_json, quiet, log_level)
    name = session.node_name(name)
    with answered(session), session.client() as client:
        node = client.get(name)
        events = _events(client, name)
    if session.as_json:
        session.emit_json({"node": node, "events": events})
    elif quiet:
        session.out.print(node.get("state") or ("locked" if node.get("locked") else "unlocked"),
                          markup=False, highlight=False)
    else:
        session.out.print(record_grid(node))
        session.out.print(events_table(session.out, events) if events else "no events", markup=False)
        for heading, text in console_logs(events):
            session.out.print(heading, markup=False, highlight=False)
            session.out.print(text.rstrip("\n"), markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add the lab user commands to the ``lablease`` app, each with the exit codes in its help."""
    for name, command in (("lock-many", lock_many), ("lock", lock), ("unlock", unlock), ("list", list_nodes),
                          ("summary", summary), ("status", status)):
        app.command(name, epilog=EXIT_CODES)(command)
    register_policy(app)  # extend, hold, release (client/policy.py)
    register_usage(app)  # usage (client/usage.py)
