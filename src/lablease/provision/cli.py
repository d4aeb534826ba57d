"""Commands of the provision component: `lablease provision create|destroy|list` (and it registers `config`).

Results go to stdout (one JSON line per created node, one line per destroyed node); progress, the
closing summary, warnings and errors go to stderr. ``-q`` leaves only results and errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from lablease.config import ConfigError, redact_text
from lablease.config.command import ConfigOpt, load_or_exit
from lablease.logs import LogLevelOpt, QuietOpt, setup_command_logging

provision_app = typer.Typer(no_args_is_help=True, help="Create and destroy cloud nodes directly (operators).")

REFUSED, USAGE = 1, 2


def _provisioner(config: Optional[Path], machine_type: str, quiet: bool, log_level: Optional[str]):
    return _build(_lab(config, machine_type, quiet, log_level), machine_type)


def _lab(config: Optional[Path], machine_type: str, quiet: bool, log_level: Optional[str]):  # noqa: ANN202
    """The lab config, with logging set up and ``machine_type``'s provider checked (exit 2 when it is not there)."""
    setup_command_logging(quiet, log_level)
    path, _, lab = load_or_exit(config)
    try:
        lab.provider(machine_type, file=str(path))
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(USAGE) from None
    return lab


def _build(lab, machine_type: str, on_progress=None):  # noqa: ANN001, ANN202
    """The Provisioner of ``machine_type``, telling ``on_progress`` of every stage (exit 2 on a config error)."""
    from lablease.provision.engine import provisioner_from_config

    try:
        return provisioner_from_config(lab, machine_type, on_progress=on_progress)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(USAGE) from None


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
        raise typer.Exit(USAGE) from None
    return parsed


def _fail(text: str, code: int = REFUSED) -> None:
    typer.echo(redact_text(f"error: {text}"), err=True)
    raise typer.Exit(code)


def _existing(prov, names: list[str]) -> dict[str, list]:
    """The servers already in the cloud under each of ``names`` (short name -> servers), from one listing."""
    from lablease.provision.errors import ProvisionError, Stage

    wanted = set()
    for name in names:
        try:
            wanted.add(prov.node_name(name, Stage.CREATE))
        except ProvisionError:
            continue  # create_many reports the bad name, per node
    try:
        prov.prepare()
        servers = prov.caller.call(Stage.CREATE, None, prov.adapter.list_servers, what="list servers")
    except ProvisionError as exc:
        _fail(str(exc))
    found: dict[str, list] = {}
    for server in servers:
        if server.name.lower() in wanted and server.state != "deleted":
            found.setdefault(server.name.lower(), []).append(server)
    return found


def _refuse_existing(prov, existing: dict[str, list], replace: bool) -> None:
    """Exit naming the servers in the way, unless --replace may destroy them (never another lab's)."""
    from lablease.provision.models import TAG_LAB

    def describe(found: dict[str, list]) -> str:
        def one(server) -> str:
            lab = server.metadata.get(TAG_LAB)
            return f"server {server.id} (state {server.state}{f', lab {lab}' if lab else ', untagged'})"

        return "; ".join(f"{n}: {', '.join(one(s) for s in servers)}" for n, servers in sorted(found.items()))

    foreign = {n: [s for s in servers if s.metadata.get(TAG_LAB, prov.lab) != prov.lab]
               for n, servers in existing.items()}
    foreign = {n: s for n, s in foreign.items() if s}
    if foreign:
        _fail(f"already in the cloud and belonging to another lab: {describe(foreign)}; lablease never touches "
              "another lab's servers, pick other names")
    if existing and not replace:
        _fail(f"already in the cloud: {describe(existing)}; nothing created. Pass --replace to destroy and create "
              f"them again, or destroy them first: lablease provision destroy {' '.join(sorted(existing))} "
              f"-m {prov.machine_type}")


@provision_app.command("create")
def create(
    names: list[str] = typer.Argument(..., help="node names (short or in the lab domain)"),
    machine_type: str = typer.Option(..., "--machine-type", "-m", help="a key of libcloud.providers"),
    os_type: str = typer.Option("ubuntu", "--os-type"),
    os_version: str = typer.Option("22.04", "--os-version"),
    hints: Optional[str] = typer.Option(None, "--hints", help='JSON, e.g. {"machine": {"ram": 4000}, "volumes": {"count": 2, "size": 10}}'),
    replace: bool = typer.Option(False, "--replace", help="Destroy a server that already has one of the names "
                                 "(with its volumes and DNS name) before creating it again; without it such a name "
                                 "is refused."),
    config: Optional[Path] = ConfigOpt, quiet: bool = QuietOpt, log_level: Optional[str] = LogLevelOpt,
) -> None:
    """Create nodes in parallel and print what came up (JSON lines on stdout, progress on stderr).

    A name that already exists in the cloud is refused (exit 1, nothing created) unless --replace.
    Ctrl-C or SIGTERM cancels: nothing new starts, waits stop, everything made is removed, and the
    exit code is 130 (SIGINT) or 143 (SIGTERM); a second signal does not cut the rollback short.
    """
    from lablease.interrupts import rollback_on_signal
    from lablease.provision.models import CreateRequest
    from lablease.provision.progress import progress_display, summary

    parsed = _parse_hints(hints)
    lab = _lab(config, machine_type, quiet, log_level)
    with progress_display(names, quiet=quiet) as on_progress, _build(lab, machine_type, on_progress) as prov, \
            rollback_on_signal(prov.cancel) as interrupts:
        existing = _existing(prov, names)
        _refuse_existing(prov, existing, replace)
        if existing and not interrupts.interrupted:
            stuck = [o for o in prov.destroy_many(sorted(existing)) if not o.ok]
            if stuck:
                _fail("--replace: could not destroy the existing "
                      + "; ".join(f"{o.name}: {o.error}" for o in stuck) + "; nothing created")
        outcomes = [] if interrupts.interrupted else \
            prov.create_many([CreateRequest(n, os_type, os_version, parsed) for n in names])
    for o in outcomes:
        if o.ok:
            typer.echo(json.dumps({"name": o.name, "server_id": o.node.server_id, "address": o.node.address,
                                   "host_key": o.node.host_key, "volumes": o.node.volume_ids}))
        else:
            typer.echo(json.dumps({"name": o.name, "error": redact_text(str(o.error)), "stage": o.error.stage.value}))
    if not quiet:
        typer.echo(summary(outcomes, "created"), err=True)
    if interrupts.exit_code is not None:
        raise typer.Exit(interrupts.exit_code)
    raise typer.Exit(REFUSED if any(not o.ok for o in outcomes) else 0)


@provision_app.command("destroy")
def destroy(
    names: list[str] = typer.Argument(...),
    machine_type: str = typer.Option(..., "--machine-type", "-m"),
    config: Optional[Path] = ConfigOpt, quiet: bool = QuietOpt, log_level: Optional[str] = LogLevelOpt,
) -> None:
    """Destroy nodes: volumes, every server of the name, the DNS record."""
    with _provisioner(config, machine_type, quiet, log_level) as prov:
        outcomes = prov.destroy_many(names)
    failed = 0
    for o in outcomes:
        if not (quiet and o.ok):
            typer.echo(f"{o.name}: destroyed" if o.ok else redact_text(f"{o.name}: {o.error}"))
        failed += not o.ok
    raise typer.Exit(REFUSED if failed else 0)


@provision_app.command("list")
def list_owned(
    machine_type: str = typer.Option(..., "--machine-type", "-m"),
    config: Optional[Path] = ConfigOpt, quiet: bool = QuietOpt, log_level: Optional[str] = LogLevelOpt,
) -> None:
    """List the servers, volumes and floating IPs in the cloud tagged as this lab's."""
    with _provisioner(config, machine_type, quiet, log_level) as prov:
        owned = prov.list_owned()
    for s in owned.servers:
        typer.echo(f"server {s.id} name={s.name} node={s.node} attempt={s.attempt} state={s.state}")
    for v in owned.volumes:
        typer.echo(f"volume {v.id} name={v.name} node={v.node} attempt={v.attempt} state={v.state}")
    for f in owned.floating_ips:
        typer.echo(f"floating-ip {f.id} address={f.address} node={f.node} attempt={f.attempt} "
                   f"port={f.port_id or 'none (free)'}")
    if not (owned.servers or owned.volumes or owned.floating_ips or quiet):
        typer.echo(f"no servers or volumes of lab {prov.lab} in machine type {machine_type}'s cloud", err=True)


def register(app: typer.Typer) -> None:
    """Add ``provision`` to the ``lablease`` app."""
    app.add_typer(provision_app, name="provision")
