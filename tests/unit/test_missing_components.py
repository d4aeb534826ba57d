"""A component the tests need that is not installed makes them fail, saying what is missing and how to install
it; nothing is skipped for it. A skipped test passes CI having tested nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lablease.testing.bind import bind_programs
from lablease.testing.components import MissingComponent, require_file, require_program
from lablease.testing.devcloud import start_devcloud
from lablease.testing.postgres import postgres_bindir
from lablease.testing.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
HOW = "make system-packages"


def test_a_program_missing_from_path_names_itself_the_package_and_how_to_install_it(tmp_path):
    with pytest.raises(MissingComponent) as err:
        require_program("named", package="bind9", what="BIND 9", path=str(tmp_path))
    assert f"BIND 9 is not installed: no named on PATH={tmp_path}" in str(err.value)
    assert "bind9" in str(err.value) and HOW in str(err.value)


def test_a_program_on_path_is_found_and_a_missing_file_is_named(tmp_path):
    program = tmp_path / "named"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    assert require_program("named", package="bind9", what="BIND 9", path=str(tmp_path)) == str(program)
    with pytest.raises(MissingComponent, match=r"chromium is not installed: /nowhere/chromium does not exist.*"
                                               r"Debian package chromium"):
        require_file("/nowhere/chromium", package="chromium", what="chromium")


def test_bind_without_named_on_path_is_an_error_naming_bind9(tmp_path):
    with pytest.raises(MissingComponent, match=r"BIND 9 is not installed: no named .*package bind9"):
        bind_programs(path=str(tmp_path))


def test_postgresql_without_initdb_is_an_error_naming_the_postgresql_package(tmp_path):
    with pytest.raises(MissingComponent, match=r"PostgreSQL is not installed: no initdb .*package postgresql"):
        postgres_bindir(root=str(tmp_path), path=str(tmp_path))


def test_devcloud_with_ssh_and_no_sshd_is_an_error_naming_openssh_server_before_it_starts(tmp_path):
    with pytest.raises(MissingComponent, match=r"sshd.*/nowhere/sshd does not exist.*package openssh-server"):
        start_devcloud(tmp_path, {"ssh": {"enabled": True, "sshd_path": "/nowhere/sshd"}})
    assert not (tmp_path / "devcloud.log").exists()  # nothing was started


def test_the_browser_tests_error_without_chromium_instead_of_skipping(tmp_path):
    from tests.browser.conftest import require_browser

    with pytest.raises(MissingComponent, match=r"(chromium|playwright).*not installed"):
        require_browser(chromium=str(tmp_path / "chromium"))


def test_a_test_needing_postgresql_errors_and_is_not_skipped_when_postgresql_is_missing(tmp_path):
    """The postgres fixture end to end, in a pytest of its own whose PostgreSQL lookup finds nothing."""
    (tmp_path / "test_needs_postgres.py").write_text(textwrap.dedent("""
        import lablease.testing.postgres as pg

        pg.postgres_bindir.__defaults__ = ("/nowhere", "/nowhere")  # as on a machine without PostgreSQL

        def test_needs_postgres(postgres_url):
            pass
        """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                           "-p", "tests.fixtures.postgres", "test_needs_postgres.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    # pytest adds "(h:mm:ss)" past a minute (a loaded machine); "skipped" must not appear
    assert re.fullmatch(r"1 error in [\d.]+s( \(\d+:\d\d:\d\d\))?", done.stdout.strip().splitlines()[-1]), done.stdout
    assert "MissingComponent: PostgreSQL is not installed" in done.stdout, done.stdout


def test_the_make_target_ci_runs_fails_when_pytest_fails_or_collects_nothing():
    """`make test` runs pytest as the recipe's last command with nothing that forgives its exit status, so an
    exit 5 (no tests collected) fails CI as any other non-zero status does."""
    recipe = (ROOT / "Makefile").read_text().split("\ntest: ", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    assert [line.strip() for line in recipe] == [
        "$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)"]
    assert "make test" in (ROOT / ".ci" / "run").read_text() and "set -euo pipefail" in (ROOT / ".ci" / "run").read_text()


def test_wait_until_returns_the_first_truthy_value_as_soon_as_it_comes():
    calls = iter([None, 0, "", "here", "later"])
    assert wait_until(lambda: next(calls), what="a value", timeout=5, interval=0.001) == "here"


def test_wait_until_fails_naming_what_it_waited_for_and_the_last_value_seen():
    start = time.monotonic()
    with pytest.raises(AssertionError, match=r"timed out after 0.2s waiting for the log line 'ready' \(last: \[\]\)"):
        wait_until(lambda: [], what="the log line 'ready'", timeout=0.2, interval=0.05)
    assert 0.2 <= time.monotonic() - start < 5


def test_wait_until_treats_the_exceptions_it_is_told_to_ignore_as_not_yet_and_reports_the_last():
    with pytest.raises(AssertionError, match=r"waiting for the port \(last: ConnectionRefusedError\('refused'\)\)"):
        wait_until(lambda: (_ for _ in ()).throw(ConnectionRefusedError("refused")), what="the port", timeout=0.05,
                   ignoring=(OSError,))
    with pytest.raises(ZeroDivisionError):  # any other exception is a failure at once
        wait_until(lambda: 1 / 0, what="a number", timeout=5, ignoring=(OSError,))
