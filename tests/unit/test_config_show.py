"""`lablease config show` prints what lablease runs with: every default filled in, no secret."""

from __future__ import annotations

import textwrap

import yaml
from typer.testing import CliRunner

from lablease.cli import app
from lablease.lockapi.settings import LabSection
from lablease.provision.hints import DEFAULTS

CONFIG = textwrap.dedent("""\
    lab_domain: lab.example
    results_server: http://results.example/
    openstack:
      machine: {ram: 16000}
      clusters: teuthology's own key
    lablease:
      admin_token: s3cret-admin-token
      database_url: postgresql://lablease:db-pa55word@db.example/lablease
    libcloud:
      providers:
        ovh:
          driver: openstack
          driver_args: {username: demo, password: demo-password, ex_force_auth_url: "http://127.0.0.1:8780"}
    """)


def _show(tmp_path, text: str) -> tuple[str, dict]:
    path = tmp_path / "teuthology.yaml"
    path.write_text(text)
    done = CliRunner().invoke(app, ["config", "show", "-c", str(path)])
    assert done.exit_code == 0, done.output
    return done.output, yaml.safe_load(done.output)


def test_config_show_fills_in_every_lablease_default_and_the_hints_a_lock_gets(tmp_path):
    text, shown = _show(tmp_path, CONFIG)
    section = shown["lablease"]
    for key, value in LabSection().model_dump(mode="json", exclude={"data_dir", "database_url", "admin_token",
                                                                     "admin_token_file"}).items():
        assert section[key] == value, key
    assert section["data_dir"] and section["database_url"].startswith("postgresql://lablease:")
    machine = shown["openstack"]["machine"]
    assert machine == {**DEFAULTS["machine"], "ram": 16000} and shown["openstack"]["volumes"] == DEFAULTS["volumes"]
    assert shown["openstack"]["clusters"] == "teuthology's own key"  # teuthology's keys are kept
    assert shown["results_server"] == "http://results.example/"


def test_config_show_without_a_lablease_section_shows_where_serve_keeps_its_database(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    _, shown = _show(tmp_path, "lab_domain: lab.example\n")
    assert shown["lablease"]["database_url"].startswith("sqlite:///") and shown["lablease"]["port"] == 8080
    assert None not in shown["openstack"]["machine"].values()


def test_config_show_redacts_the_admin_token_and_every_password(tmp_path):
    text, shown = _show(tmp_path, CONFIG)
    for secret in ("s3cret-admin-token", "db-pa55word", "demo-password"):
        assert secret not in text
    assert shown["lablease"]["admin_token"] == "***"
    assert shown["lablease"]["database_url"] == "postgresql://lablease:***@db.example/lablease"
