"""``lablease extend | hold | release``: an owner changes the terms of its cloud locks (docs/lab-service.md).

One request per node; every node is tried, and the exit code is the first failure's (README's table).
"""

from __future__ import annotations

from typing import Any, Optional

import typer

from lablease.client.lockclient import LockClientError
from lablease.client.support import EXIT_CODES, Session, default_owner, exit_code, open_session
from lablease.logs import LogLevelOpt

NamesArg = typer.Argument(..., help="Node names (short names get the lab_domain).")
OwnerOpt = typer.Option(None, "--owner", help="The lock's owner (default: $USER@$(hostname), as teuthology).")
JsonOpt = typer.Option(False, "--json", help="Print only JSON on stdout (errors too: {error, exit_code, status}).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print nothing but errors.")
ServerOpt = typer.Option(None, "--server", help="Lock server URL (default: $LABLEASE_SERVER, else lock_server: "
                                                "of ~/.teuthology.yaml or /etc/teuthology.yaml).")


def terms_line(node: dict[str, Any]) -> str:
    """``node1.lab.example: expires 2026-12-07 10:00:00 UTC; held until … (reason)``."""
    expires = node.get("expires_at")
    text = f"{node['name']}: " + (f"expires {expires[:19]} UTC" if expires else "does not expire")
    if node.get("hold_until"):
        text += f"; held until {node['hold_until'][:19]} UTC ({node.get('hold_reason')})"
    return text


def _each(session: Session, names: list[str], change: str, owner: str | None, **fields: Any) -> None:
    owner = owner or default_owner()
    done: list[dict[str, Any]] = []
    failed: list[LockClientError] = []
    with session.client() as client:
        for name in (session.node_name(n) for n in names):
            try:
                done.append(client.lock_terms(name, change, owner, **fields))
            except LockClientError as exc:
                failed.append(exc)
                session.err.print(f"error: {name}: {exc.reason if exc.status else exc}", markup=False,
                                  highlight=False)
    if session.as_json:
        session.emit_json(done)
    elif not session.quiet:
        for node in done:
            session.out.print(terms_line(node), markup=False, highlight=False)
    if failed:
        session.fail(exit_code(failed[0]), f"{len(failed)} of {len(names)} node(s) not changed ({change})",
                     failed[0].status)


def extend(names: list[str] = NamesArg,
           hours: float = typer.Option(..., "--hours", min=0.0, help="How much later each lock expires."),
           owner: Optional[str] = OwnerOpt, as_json: bool = JsonOpt, quiet: bool = QuietOpt,
           server: Optional[str] = ServerOpt, log_level: Optional[str] = LogLevelOpt) -> None:
    """Extend your locks of cloud nodes by HOURS, up to their machine type's lock_hours_max."""
    _each(open_session(server, as_json, quiet, log_level), names, "extend", owner, hours=hours)


def hold(name: str = typer.Argument(..., help="Node name (a short name gets the lab_domain)."),
         hours: float = typer.Option(..., "--hours", min=0.0, help="How long from now to keep it."),
         reason: str = typer.Option(..., "--reason", help="Why (shown with the node)."),
         owner: Optional[str] = OwnerOpt, as_json: bool = JsonOpt, quiet: bool = QuietOpt,
         server: Optional[str] = ServerOpt, log_level: Optional[str] = LogLevelOpt) -> None:
    """Keep your locked cloud node past its expiry for debugging, up to hold_hours_max."""
    _each(open_session(server, as_json, quiet, log_level), [name], "hold", owner, hours=hours, reason=reason)


def release(names: list[str] = NamesArg, owner: Optional[str] = OwnerOpt, as_json: bool = JsonOpt,
            quiet: bool = QuietOpt, server: Optional[str] = ServerOpt,
            log_level: Optional[str] = LogLevelOpt) -> None:
    """End the hold of your nodes; one already past its expiry is then destroyed by the next pass."""
    _each(open_session(server, as_json, quiet, log_level), names, "release", owner)


def register(app: typer.Typer) -> None:
    for name, command in (("extend", extend), ("hold", hold), ("release", release)):
        app.command(name, epilog=EXIT_CODES)(command)
