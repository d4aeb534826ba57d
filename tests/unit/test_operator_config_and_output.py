"""An operator's first hour, without a cloud: config checks that mean "ok", output a person can read,
secrets that never show, token cache entries that belong to one set of credentials only.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import stat
import textwrap

import pytest
import typer
from libcloud.common.openstack_identity import OpenStackAuthenticationCacheKey, OpenStackAuthenticationContext
from rich.console import Console
from typer.testing import CliRunner

from lablease.cli import app
from lablease.config import ConfigError
from lablease.config.redact import redact, redact_text
from lablease.lockapi.settings import LockSettings
from lablease.logs import setup_logging
from lablease.provision.devlab import generate_lab_key
from lablease.provision.errors import ProvisionError, Stage
from lablease.provision.models import Outcome, ProgressEvent
from lablease.provision.progress import progress_display, summary
from lablease.provision.tokencache import FileTokenCache, ScopedTokenCache, credential_scope

PROVIDER = textwrap.dedent("""\
    lab_domain: lab.example
    nsupdate_url: http://127.0.0.1:8053/update
    libcloud:
      providers:
        ovh:
          driver: openstack
          driver_args:
            username: demo
            password: demo-password
            ex_force_auth_url: http://127.0.0.1:8780
            ex_tenant_name: demo
    """)


@pytest.fixture
def check(tmp_path, monkeypatch):
    """Run `lablease config check` on ``text`` (HOME is an empty directory: no ~/.ssh keys)."""
    monkeypatch.setenv("HOME", str(tmp_path))

    def run(text: str, *args: str):
        path = tmp_path / "teuthology.yaml"
        path.write_text(text)
        return CliRunner().invoke(app, ["config", "check", "--config", str(path), *args])

    return run


def _keyed(tmp_path, text: str = PROVIDER) -> str:
    return text + f"      ssh_key_file: {generate_lab_key(tmp_path / 'lab_key')}\n"


# -- config check ---------------------------------------------------------------------------------

def test_config_check_fails_on_a_provider_with_no_usable_ssh_key_naming_the_key_and_the_fix(check):
    result = check(PROVIDER)
    assert result.exit_code == 2, result.output
    assert "libcloud.providers.ovh.ssh_key_file: no SSH key pair" in result.output
    assert "set ssh_key_file" in result.output and ": ok" not in result.output


def test_config_check_fails_on_an_unknown_key_in_the_lablease_section_naming_the_key_it_resembles(check, tmp_path):
    result = check(_keyed(tmp_path) + "lablease:\n  worker: 2\n")
    assert result.exit_code == 2, result.output
    assert "lablease.worker: unknown key (did you mean 'workers'?" in result.output


def test_lablease_serve_refuses_an_unknown_key_in_its_section_as_config_check_does():
    with pytest.raises(ConfigError, match=r"lablease\.acess_log: unknown key \(did you mean 'access_log'"):
        LockSettings.from_mapping({"lablease": {"acess_log": False}}, file="t.yaml")
    assert LockSettings.from_mapping({"lablease": {"access_log": False}}).access_log is False


def test_config_check_warns_naming_the_intended_key_for_near_misses_of_lablease_top_level_keys(check, tmp_path):
    text = _keyed(tmp_path) + "libclod: {}\nnsupdate_uri: http://x/update\nresults_server: http://r/\nqueue_host: q\n"
    result = check(text)
    assert result.exit_code == 0, result.output
    assert "libclod: not a key lablease reads; did you mean 'libcloud'?" in result.output
    assert "nsupdate_uri: not a key lablease reads; did you mean 'nsupdate_url'?" in result.output
    assert "results_server" not in result.output and "queue_host" not in result.output  # teuthology's own


def test_config_check_says_plainly_that_nodes_get_no_dns_name_when_dns_is_configured_nowhere(check, tmp_path):
    result = check(_keyed(tmp_path).replace("nsupdate_url: http://127.0.0.1:8053/update\n", ""))
    assert result.exit_code == 0, result.output
    assert "nsupdate_url is not set, so nodes of ovh will get no DNS name" in result.output


def test_config_check_warns_about_driver_args_the_cloud_driver_ignores_naming_the_likely_key(check, tmp_path):
    result = check(_keyed(tmp_path).replace("ex_tenant_name: demo", "ex_tennant_name: demo"))
    assert "ignores 'ex_tennant_name' (did you mean 'ex_tenant_name'?)" in result.output


def test_config_check_quiet_prints_nothing_when_all_is_well(check, tmp_path):
    result = check(_keyed(tmp_path), "-q")
    assert result.exit_code == 0 and result.output == ""


# -- every command: -q and --log-level ------------------------------------------------------------

def _commands(group, prefix: str = ""):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (typer carries its own click)
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def test_every_command_but_version_takes_quiet_and_log_level():
    missing = {}
    for name, command in _commands(typer.main.get_command(app)):
        options = {opt for param in command.params for opt in getattr(param, "opts", [])}
        lacking = {"-q", "--quiet", "--log-level"} - options
        if lacking and name != "version":  # version prints one word; it lives in lablease/cli.py
            missing[name] = sorted(lacking)
    assert missing == {}


def test_a_bad_log_level_is_a_usage_error_naming_the_levels(tmp_path):
    result = CliRunner().invoke(app, ["config", "show", "--log-level", "loud", "-c", str(tmp_path / "x.yaml")])
    assert result.exit_code == 2 and "DEBUG, INFO, WARNING, ERROR" in result.output


# -- logs ---------------------------------------------------------------------------------------------

@pytest.fixture
def log_stream():
    """lablease's log handler on a fresh stream for this test (the handler of an earlier test is put back after)."""
    root = logging.getLogger()
    before = [h for h in root.handlers if getattr(h, "_lablease", False)]
    for handler in before:
        root.removeHandler(handler)
    stream = io.StringIO()
    setup_logging("WARNING", stream=stream)
    yield stream
    for handler in [h for h in root.handlers if getattr(h, "_lablease", False)]:
        root.removeHandler(handler)
    for handler in before:
        root.addHandler(handler)


def test_library_info_lines_stay_out_of_the_log_unless_debug_and_their_debug_lines_never_show(log_stream):
    setup_logging("INFO")
    try:
        for name in ("paramiko.transport", "httpx", "libcloud"):
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        setup_logging("DEBUG")
        assert logging.getLogger("paramiko.transport").isEnabledFor(logging.INFO)
        assert not logging.getLogger("libcloud").isEnabledFor(logging.DEBUG)  # request bodies: passwords
    finally:
        setup_logging("WARNING")


def test_log_lines_hide_the_password_of_any_url(log_stream):
    logging.getLogger("lablease.test").error("cannot open %s", "postgresql+psycopg://lablease:pw-1@db/x")
    assert "pw-1" not in log_stream.getvalue()
    assert "cannot open postgresql+psycopg://lablease:***@db/x" in log_stream.getvalue()


def test_redaction_hides_url_passwords_and_secret_keys_but_shows_where_a_secret_is_kept():
    shown = redact({"database_url": "postgresql+psycopg://lablease:pw@db:5432/lablease", "admin_token": "t",
                    "admin_token_file": "/etc/lablease/admin-token", "my_api_token": "x", "db_password_2": "y"})
    assert shown == {"database_url": "postgresql+psycopg://lablease:***@db:5432/lablease", "admin_token": "***",
                     "admin_token_file": "/etc/lablease/admin-token", "my_api_token": "***", "db_password_2": "***"}
    assert redact_text("see http://u:p%40ss@h/update and sqlite:////tmp/x.db") == \
        "see http://u:***@h/update and sqlite:////tmp/x.db"


# -- progress without a terminal ----------------------------------------------------------------------

def test_progress_without_a_terminal_is_plain_lines_without_spinner_glyphs_then_a_summary():
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with progress_display(["node1", "node2"], console=console) as on_progress:
        on_progress(ProgressEvent("node1", "boot", "start", 1))
        on_progress(ProgressEvent("node1", "create", "made", 1, "server s1"))  # a resource note: not shown
        on_progress(ProgressEvent("node2", "ssh", "retry", 2, "port 22 closed"))
        on_progress(ProgressEvent("node1", "ready", "done", 1))
    assert out.getvalue().splitlines() == ["node1: boot start", "node2: ssh retry (attempt 2): port 22 closed",
                                           "node1: ready done"]
    assert not any(ch in out.getvalue() for ch in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏━")
    outcomes = [Outcome("node1", True), Outcome("node2", False, error=ProvisionError(Stage.SSH, "node2", "timeout"))]
    assert summary(outcomes, "created") == "created 1 of 2 node(s): node1; failed: node2 (ssh)"


def test_on_a_terminal_log_lines_are_printed_above_the_live_lines_not_through_them(log_stream):
    usual = log_stream
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with progress_display(["node1"], console=console) as on_progress:
        on_progress(ProgressEvent("node1", "boot", "start", 1))
        logging.getLogger("lablease.provision.engine").warning("create failed node=node1")
    assert "create failed node=node1" in out.getvalue() and usual.getvalue() == ""
    logging.getLogger("lablease.provision.engine").warning("after the display")
    assert "after the display" in usual.getvalue()  # the usual handler is back


def test_quiet_progress_shows_nothing():
    out = io.StringIO()
    with progress_display(["node1"], quiet=True, console=Console(file=out)) as on_progress:
        on_progress(ProgressEvent("node1", "boot", "start", 1))
    assert out.getvalue() == ""


# -- token cache: one entry per set of credentials ----------------------------------------------------

KEY = OpenStackAuthenticationCacheKey("http://127.0.0.1:5000", "demo", "project", "demo", "Default", "default")


def _context() -> OpenStackAuthenticationContext:
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    return OpenStackAuthenticationContext("tok-123", expiration=expires, user={"id": "u"}, urls={})


def test_a_token_cached_for_one_password_is_not_found_with_another_or_another_region(tmp_path):
    right = credential_scope("demo", "demo-password", "http://127.0.0.1:5000", "demo", "RegionOne")
    ScopedTokenCache(FileTokenCache(tmp_path), right).put(KEY, _context())
    assert ScopedTokenCache(FileTokenCache(tmp_path), right).get(KEY).token == "tok-123"
    for other in (credential_scope("demo", "wrong", "http://127.0.0.1:5000", "demo", "RegionOne"),
                  credential_scope("demo", "demo-password", "http://127.0.0.1:5000", "demo", "RegionTwo")):
        assert ScopedTokenCache(FileTokenCache(tmp_path), other).get(KEY) is None
    assert all("demo-password" not in p.read_text() and "demo-password" not in p.name
               for p in tmp_path.iterdir() if p.is_file())


def test_token_cache_files_and_their_directory_are_their_owners_only_even_a_directory_made_before(tmp_path):
    directory = tmp_path / "tokens"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    ScopedTokenCache(FileTokenCache(directory), credential_scope("demo", "pw")).put(KEY, _context())
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert [stat.S_IMODE(p.stat().st_mode) for p in directory.glob("*.json")] == [0o600]
