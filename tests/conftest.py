"""Shared pytest configuration: fixture modules that start real servers on loopback."""

pytest_plugins = [
    "tests.fixtures.devcloud",
    "tests.fixtures.bind",
    "tests.fixtures.dns_service",
    "tests.fixtures.postgres",
]
