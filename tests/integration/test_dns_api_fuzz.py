"""Property test of the DNS service's HTTP API from its own OpenAPI schema: no input makes it fail with a 5xx."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

pytestmark = pytest.mark.integration


def test_no_generated_request_is_answered_with_a_server_error(dns_service):
    # BIND grants every name the allow pattern admits, so any 5xx here would be a bug of ours.
    schema = schemathesis.openapi.from_url(f"{dns_service.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/update", "/delete", "/records/{name}", "/healthz"}
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            case.call_and_validate(checks=[not_a_server_error])

        check()
    metrics = httpx.get(f"{dns_service.url}/metrics").text
    updates = [line for line in metrics.splitlines() if line.startswith('lablease_dns_request_seconds_count{operation="update"}')]
    assert updates and float(updates[0].split()[-1]) >= 20  # the generated requests did reach the service
