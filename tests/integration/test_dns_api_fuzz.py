"""The DNS service's OpenAPI document tells the truth, and schemathesis cannot make the service break it.

schemathesis (its CLI, as for the lock server and devcloud: tests/integration/api_fuzz.py) runs with every
check, the stateful phase, a fixed seed and api_fuzz.EXAMPLES examples per operation against `lablease dns
serve` in front of a real BIND; generated text holds NUL. The zone's names are what the service itself
wrote, so BIND grants every change the allow pattern admits: any 5xx would be a bug of ours.
"""

from __future__ import annotations

import httpx
import pytest

from tests.integration.api_fuzz import DNS_RULES, Run, all_checks, checks_enabled, failure_report, run_all

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)
def test_schemathesis_with_every_check_and_the_stateful_phase_finds_nothing(dns_service, tmp_path):
    run = Run(f"{dns_service.url}/openapi.json", tmp_path / "st-dns", DNS_RULES)
    done = run_all(run)[0]
    assert checks_enabled(run.workdir) == all_checks()
    assert done.returncode == 0 and " errored" not in done.stdout, failure_report(done)
    assert "Stateful" in done.stdout and "7 selected / 7 total" in done.stdout, done.stdout[-3000:]
    metrics = httpx.get(f"{dns_service.url}/metrics").text
    updates = [line for line in metrics.splitlines()
               if line.startswith('lablease_dns_request_seconds_count{operation="update"}')]
    assert updates and float(updates[0].split()[-1]) >= 50  # the generated requests did reach the service
    assert "Traceback" not in dns_service.log_text()


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
