"""Shared pytest configuration: fixture modules that start real servers on loopback."""

pytest_plugins = [
    "tests.fixtures.devcloud",
    "tests.fixtures.bind",
    "tests.fixtures.dns_service",
    "tests.fixtures.postgres",
    "tests.fixtures.moto_ec2",
]


import logging  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _root_log_handlers_are_the_tests_own():
    """Handlers a test adds to the root logger (a CLI run in-process sets up logging on the stderr of
    typer's CliRunner, closed when the run ends) are removed after it: a later test's background thread
    (paramiko's transport) must not log into a closed stream ("--- Logging error ---")."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in before:
            root.removeHandler(handler)
    root.setLevel(level)
