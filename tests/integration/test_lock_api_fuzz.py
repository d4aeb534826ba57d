"""Requests generated from the lock API's own OpenAPI schema: never a 500, and every error is
paddles' ``{"message": ...}`` body (on SQLite and PostgreSQL)."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from lablease.testing.lockserver import start_lock_server

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_no_generated_request_fails_with_500_or_a_non_paddles_error_body(database, tmp_path, request):
    url = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    server = start_lock_server(tmp_path / "srv", database_url=url)
    try:
        with httpx.Client(base_url=server.url) as http:
            for i in range(3):
                http.post("/nodes/", json={"name": f"n{i}", "machine_type": "t", "up": True})
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {op.path for op in operations} >= {"/nodes/", "/nodes/lock_many/", "/nodes/{name}/lock/"}
        seen: set[int] = set()
        for operation in operations:
            @given(case=operation.as_strategy())
            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def check(case):
                response = case.call()
                seen.add(response.status_code)
                assert response.status_code < 500 or response.status_code == 503, (
                    f"{case.method} {case.formatted_path} -> {response.status_code} {response.text[:300]}")
                if response.status_code >= 400:
                    assert set(response.json()) == {"message"}, response.text[:300]

            check()
        assert 400 in seen and 200 in seen  # both valid and invalid requests were generated
    finally:
        server.stop()
    assert "Traceback" not in server.process.log_tail(200_000)
