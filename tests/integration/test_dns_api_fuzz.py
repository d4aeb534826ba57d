"""Property test of the DNS service's HTTP API from its own OpenAPI schema: no input makes it fail with a 5xx,
and every answer is one the schema documents (status, content type, body)."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.integration


def test_no_generated_request_is_answered_with_a_server_error(dns_service):
    # BIND grants every name the allow pattern admits, so any 5xx here would be a bug of ours.
    schema = schemathesis.openapi.from_url(f"{dns_service.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/update", "/delete", "/records", "/records/{name}", "/healthz"}
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            case.call_and_validate(checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                           response_schema_conformance])

        check()
    metrics = httpx.get(f"{dns_service.url}/metrics").text
    updates = [line for line in metrics.splitlines() if line.startswith('lablease_dns_request_seconds_count{operation="update"}')]
    assert updates and float(updates[0].split()[-1]) >= 20  # the generated requests did reach the service


def test_the_schema_says_what_the_server_requires_and_answers(dns_service_factory):
    # The handlers answer a missing name or address with nsupdate-web's plain-text 400, never FastAPI's 422.
    schema = httpx.get(f"{dns_service_factory(tokens=[{'id': 'lab', 'sha256': '0' * 64}]).url}/openapi.json").json()
    paths = schema["paths"]
    update = {p["name"]: p for p in paths["/update"]["get"]["parameters"]}
    assert update["name"]["required"] and update["ip"]["required"]
    assert {p["name"]: p["required"] for p in paths["/delete"]["get"]["parameters"]} == {"name": True}
    operations = [op for path in paths.values() for op in path.values()]
    assert all("422" not in op["responses"] for op in operations)
    assert set(paths["/update"]["get"]["responses"]) == {"200", "400", "401", "403", "502", "504"}
    assert set(paths["/records"]["get"]["responses"]) == {"200", "401", "502", "504"}
    assert "text/plain" in paths["/update"]["get"]["responses"]["400"]["content"]
