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


# The longest files (seconds of a full run on 2 cores, 2026-12-07) start first: `make test` hands files to
# its 4 xdist workers in collection order (--dist loadfile), and a long file handed out last is the tail
# of the whole run. The soak runs its own 2-minute clock, so it goes first of all.
LONGEST_FIRST = (
    "test_devcloud_api_fuzz.py", "test_soak.py", "test_provision_faults.py", "test_lock_api_fuzz.py",
    "test_lab_service.py", "test_lock_concurrency.py", "test_lab_ec2.py", "test_devcloud_demo.py",
    "test_lab_policy.py", "test_lab_pool_faults.py", "test_provision_devcloud.py", "test_lab_crash.py",
    "test_lab_reconciler.py", "test_teuthology_client.py", "test_lab_fallback.py",
)


def pytest_collection_modifyitems(items: list) -> None:
    """Order test files longest first (a stable sort: tests keep their order inside a file)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
