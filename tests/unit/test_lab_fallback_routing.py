"""Machine types served by several providers: the config key and its errors, which provider a node belongs to,
and the rule that sends a node to the next provider (only a quota/capacity refusal that left nothing)."""

from __future__ import annotations

import asyncio
import re
import threading
from concurrent.futures import Future
from types import SimpleNamespace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lablease.cli import app
from lablease.config import ConfigError
from lablease.config.lab import parse_lab_config
from lablease.lab.bus import ProgressBus
from lablease.lab.fallback import FallbackLock, Launch, moves_on
from lablease.lab.routing import Routes
from lablease.provision.errorkinds import ErrorKind
from lablease.provision.devlab import generate_lab_key
from lablease.provision.errors import ProvisionError
from lablease.store import NodeRecord, NodeStore

PROVIDER = {"driver": "openstack",
            "driver_args": {"username": "u", "password": "p", "ex_force_auth_url": "http://127.0.0.1:9/v2.0"}}


def config(machine_types: Any = None, providers: tuple[str, ...] = ("ovh", "aws")):  # noqa: ANN201
    libcloud: dict[str, Any] = {"providers": {p: dict(PROVIDER) for p in providers}}
    if machine_types is not None:
        libcloud["machine_types"] = machine_types
    return parse_lab_config({"libcloud": libcloud}, file="teuthology.yaml")


# -- the config key -------------------------------------------------------------------------------------


def test_a_config_without_machine_types_means_each_provider_is_its_own_machine_type():
    c = config()
    assert c.libcloud.machine_types == {}
    assert (c.providers_of("ovh"), c.providers_of("aws"), c.providers_of("plain")) == (["ovh"], ["aws"], [])


def test_a_multi_provider_type_lists_providers_in_priority_order():
    c = config({"mixed": {"providers": ["ovh", "aws"]}, "aws-first": {"providers": ["aws", "ovh"]}})
    assert c.providers_of("mixed") == ["ovh", "aws"]
    assert c.providers_of("aws-first") == ["aws", "ovh"]
    assert c.providers_of("ovh") == ["ovh"]  # its providers stay machine types of their own


@pytest.mark.parametrize(("machine_types", "says"), [
    ({"mixed": {"providers": ["ovh", "gce"]}}, "unknown provider 'gce' (known: aws, ovh)"),
    ({"ovh": {"providers": ["aws"]}}, "'ovh' is also a key of libcloud.providers"),
    ({"a": {"providers": ["b"]}, "b": {"providers": ["ovh"]}}, "'b' is itself a multi-provider type"),
    ({"a": {"providers": ["a"]}}, "'a' is itself a multi-provider type"),
    ({"mixed": {"providers": ["ovh", "ovh"]}}, "ovh listed more than once"),
    ({"x|y": {"providers": ["ovh"]}}, "must not contain '|'"),
    ({"m" * 33: {"providers": ["ovh"]}}, "at most 32 characters"),
])
def test_each_mistake_in_machine_types_is_a_config_error_that_says_what_is_wrong(machine_types, says):
    with pytest.raises(ConfigError) as err:
        config(machine_types)
    assert says in str(err.value) and "teuthology.yaml" in str(err.value)


@pytest.mark.parametrize(("entry", "key"), [
    ({"providers": []}, "libcloud.machine_types.mixed.providers"),
    ({}, "libcloud.machine_types.mixed.providers"),
    ({"providers": ["ovh"], "min_ready": {"ubuntu-22.04": 1}}, "libcloud.machine_types.mixed.min_ready"),
])
def test_a_multi_provider_type_needs_a_list_of_providers_and_has_no_other_keys(entry, key):
    with pytest.raises(ConfigError) as err:
        config({"mixed": entry})
    assert err.value.key == key


def test_the_multi_provider_example_of_docs_lab_service_md_passes_config_check_as_the_page_says(tmp_path):
    page = (Path(__file__).resolve().parents[2] / "docs" / "lab-service.md").read_text()
    block = re.search(r"<!-- doc-test: multi-provider -->\s*```yaml\n(.*?)```", page, re.DOTALL)
    assert block, "docs/lab-service.md lost its multi-provider example"
    key = generate_lab_key(tmp_path / "lab_ed25519")  # the only change: the key pair's place
    (tmp_path / "teuthology.yaml").write_text(block[1].replace("/etc/lablease/lab_ed25519", str(key)))
    done = CliRunner().invoke(app, ["config", "check", "--config", str(tmp_path / "teuthology.yaml")])
    assert done.exit_code == 0, done.output
    said = re.search(r"`lablease config check` says `([^`]*)`", page)[1]
    assert said in done.stdout


# -- which provider a node belongs to --------------------------------------------------------------------


def record(name: str, machine_type: str | None, provider: str | None = None) -> NodeRecord:
    return NodeRecord(id=1, name=name, machine_type=machine_type, provider=provider)


def test_a_node_belongs_to_its_recorded_provider_else_to_the_first_of_its_type():
    routes = Routes(config({"mixed": {"providers": ["ovh", "aws"]}}))
    assert routes.provider_of(record("n1", "mixed", "aws")) == "aws"
    assert routes.provider_of(record("n2", "mixed")) == "ovh"  # free, or not yet launched
    assert routes.provider_of(record("n3", "mixed", "gone-from-config")) == "ovh"
    assert routes.provider_of(record("n4", "ovh")) == "ovh"
    assert routes.provider_of(record("n5", "plain")) is None
    assert (routes.is_multi("mixed"), routes.is_multi("ovh"), routes.is_multi(None)) == (True, False, False)
    assert routes.types_of("aws") == ["aws", "mixed"]


def test_each_provider_looks_after_its_own_type_and_the_multi_type_nodes_it_made(tmp_path):
    routes = Routes(config({"mixed": {"providers": ["ovh", "aws"]}}))
    store = NodeStore.open(f"sqlite:///{tmp_path / 's.db'}")
    try:
        for name, machine_type in (("a1", "ovh"), ("b1", "aws"), ("m1", "mixed"), ("m2", "mixed"), ("p1", "plain")):
            store.create(f"{name}.lab.example", {"machine_type": machine_type})
        store.note_attempt("m2.lab.example", provider="aws")
        mine = {p: sorted(r.name.split(".")[0] for r in routes.records_for(store, p)) for p in ("ovh", "aws")}
        assert mine == {"ovh": ["a1", "m1"], "aws": ["b1", "m2"]}
    finally:
        store.close()


# -- going to the next provider --------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "moves"), [
    (ErrorKind.QUOTA, True), (ErrorKind.LEFTOVER, False), (ErrorKind.FATAL, False), (ErrorKind.CONFIG, False),
    (ErrorKind.CANCELLED, False), (ErrorKind.TIMEOUT, False), (ErrorKind.UNREACHABLE, False),
])
def test_only_a_quota_refusal_whose_rollback_left_nothing_sends_a_node_to_the_next_provider(kind, moves):
    assert moves_on(ProvisionError("create", "n1", "no", kind=kind)) is moves
    assert moves_on(RuntimeError("a bug")) is False


class FakeWorker:
    """A provider whose launches answer from a script: an exception to raise, or a NodeInfo."""

    def __init__(self, name: str, answer: BaseException | None):
        self.name, self.answer, self.launched = name, answer, []

    def launch(self, record, os_type, os_version, hints, request, cancel) -> Future:  # noqa: ANN001, PLR0913
        self.launched.append(record)
        done: Future = Future()
        if self.answer is None:
            done.set_result(SimpleNamespace(name=record, made_by=self.name))  # a NodeInfo in the real worker
        else:
            done.set_exception(self.answer)
        return done


class FakeStore:
    def __init__(self) -> None:
        self.stages: list[tuple[str, str, str, str]] = []

    def record_stage(self, name: str, stage: str, status: str, attempt: int, message: str, *, who: str,
                     console: str = "") -> None:
        self.stages.append((name, stage, status, message))


def place(answers: dict[str, BaseException | None]) -> tuple[tuple[str, Any], FakeStore, list[Any]]:
    workers = {p: FakeWorker(p, a) for p, a in answers.items()}
    bus, events = ProgressBus(), []
    bus.subscribe(events.append)
    lab = SimpleNamespace(workers=workers, store=FakeStore(), bus=bus)
    launch = Launch("ubuntu", "22.04", None, "r1", threading.Event())
    got = asyncio.run(FallbackLock(lab)._place(record("n1.lab.example", "mixed"), list(answers), launch))
    return got, lab.store, events


def quota(provider: str) -> ProvisionError:
    return ProvisionError("create", "n1", f"Quota exceeded for instances in {provider}", kind=ErrorKind.QUOTA)


def test_a_node_the_first_provider_refuses_for_quota_is_made_by_the_next_and_its_events_say_why():
    (provider, result), store, events = place({"ovh": quota("ovh"), "aws": None})
    assert provider == "aws" and result.made_by == "aws"
    (name, stage, status, why), = store.stages
    assert (name, stage, status) == ("n1.lab.example", "provider", "fallback")
    assert why.startswith("ovh could not give it (quota: Quota exceeded") and why.endswith("trying aws")
    assert [(e.stage, e.status, e.made) for e in events] == [("provider", "fallback", {"from": "ovh", "to": "aws"})]


def test_a_node_the_first_provider_gives_never_touches_the_next():
    (provider, result), store, _ = place({"ovh": None, "aws": quota("aws")})
    assert provider == "ovh" and result.made_by == "ovh" and store.stages == []


def test_any_other_failure_ends_the_node_at_the_provider_where_it_happened():
    boom = ProvisionError("boot", "n1", "server went to ERROR", kind=ErrorKind.FATAL)
    (provider, result), store, _ = place({"ovh": boom, "aws": None})
    assert (provider, result, store.stages) == ("ovh", boom, [])


def test_when_every_provider_refuses_the_last_refusal_is_the_nodes_failure():
    last = quota("aws")
    (provider, result), store, _ = place({"ovh": quota("ovh"), "aws": last})
    assert (provider, result) == ("aws", last) and len(store.stages) == 1


# -- the provider column ---------------------------------------------------------------------------------


def test_migration_0006_gives_existing_nodes_an_empty_provider_and_its_downgrade_removes_the_column(tmp_path):
    from alembic import command
    from sqlalchemy import inspect

    from lablease.store.migrate import alembic_config, migrate

    store = NodeStore.open(f"sqlite:///{tmp_path / 'old.db'}", run_migrations=False)
    try:
        migrate(store.engines, "0005")
        with store.engines.write.begin() as conn:  # a node as 0005 stored it
            conn.exec_driver_sql("INSERT INTO nodes (name, machine_type, is_vm, locked, state, dns_written, created_at, "
                                 "updated_at) VALUES ('n1.lab.example', 'ovh', 0, 0, 'idle', 0, '2026-12-01 00:00:00', "
                                 "'2026-12-01 00:00:00')")
        migrate(store.engines)
        assert store.get("n1.lab.example").provider is None
        assert store.note_attempt("n1.lab.example", provider="aws").provider == "aws"
        cfg = alembic_config()
        with store.engines.write.connect() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0005")
            conn.commit()
            assert "provider" not in {c["name"] for c in inspect(conn).get_columns("nodes")}
    finally:
        store.close()
