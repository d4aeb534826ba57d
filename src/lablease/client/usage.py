"""``lablease usage [--since DATE] [--by owner|type] [--json]``: node-hours per owner or machine type."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from lablease.client.policy import JsonOpt, QuietOpt, ServerOpt
from lablease.client.render import new_table
from lablease.client.support import EXIT_CODES, answered, open_session
from lablease.logs import LogLevelOpt


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}"


def usage_table(console: Console, answer: dict[str, Any]) -> Table:
    """One row per owner or machine type, then the total: node-hours, provisioning hours, locks, cost."""
    table = new_table(console, "owner" if answer["by"] == "owner" else "machine type", "node-hours",
                      "provisioning hours", "locks", "cost")
    for row in [*answer["rows"], {**answer["total"], "key": "total"}]:
        table.add_row(row["key"], hours(row["node_seconds"]), hours(row["provisioning_seconds"]), str(row["locks"]),
                      "—" if row["cost"] is None else f"{row['cost']:.2f}")
    return table


def usage(since: Optional[str] = typer.Option(None, "--since", help="A date or ISO time, UTC (default: 30 days "
                                                                     "ago)."),
          by: str = typer.Option("owner", "--by", help="owner or type (machine type)."),
          as_json: bool = JsonOpt, quiet: bool = QuietOpt, server: Optional[str] = ServerOpt,
          log_level: Optional[str] = LogLevelOpt) -> None:
    """Node-hours of cloud nodes per owner or machine type: in use from a lock's answer to its unlock, provisioning
    apart, and their cost where a provider has a price_per_hour."""
    session = open_session(server, as_json, quiet, log_level)
    if by not in ("owner", "type"):
        session.fail(2, f"--by must be owner or type, not {by!r}", None)
    with answered(session), session.client() as client:
        answer = client.usage(since, by)
    if session.as_json:
        session.emit_json(answer)
    elif not quiet:
        session.out.print(f"usage since {answer['since']} UTC until {answer['until']} UTC", markup=False,
                          highlight=False)
        session.out.print(usage_table(session.out, answer))


def register(app: typer.Typer) -> None:
    app.command("usage", epilog=EXIT_CODES)(usage)
