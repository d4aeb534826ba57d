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
    assert "Coverage" in done.stdout and "Schema validation mismatch" not in done.stdout, done.stdout[-3000:]
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


def test_names_and_addresses_have_the_form_the_service_applies_and_405_names_every_method(dns_service):
    """The document's name pattern and address formats are the service's rules (coverage found plain strings the
    service refused), and a 405 lists every method of the path (Starlette's named only the first route's)."""
    import re

    paths = httpx.get(f"{dns_service.url}/openapi.json").json()["paths"]
    name = {p["name"]: p for p in paths["/update"]["get"]["parameters"]}["name"]["schema"]
    patterns = [(choice["pattern"], choice["maxLength"]) for choice in name["anyOf"]]
    for good in ("node1", "node1.lab.example", "node1.lab.example.", "a-b." * 50 + "c", "x" * 63):
        assert any(re.fullmatch(p, good) and len(good) <= n for p, n in patterns), good
        assert httpx.get(f"{dns_service.url}/delete", params={"name": good}).status_code in (200, 403), good
    for bad in ("", "-a", "a-", "a..b", ".a", "a_b", "a b", "*.x", "x" * 64, "a.b\n", "a." * 127 + "bc"):
        assert not any(re.fullmatch(p, bad) and len(bad) <= n for p, n in patterns), bad
        assert httpx.get(f"{dns_service.url}/delete", params={"name": bad}).status_code == 400, bad
    ip = {p["name"]: p for p in paths["/update"]["get"]["parameters"]}["ip"]["schema"]["items"]
    assert [choice["format"] for choice in ip["anyOf"]] == ["ipv4", "ipv6"]
    for bad in ("10.0.0.256", "010.0.0.1", "fe80::1%eth0", "[::1]", "10.0.0.1:80"):
        answer = httpx.get(f"{dns_service.url}/update", params={"name": "node1", "ip": bad})
        assert answer.status_code == 400, bad
    for method in ("PUT", "OPTIONS", "PATCH"):
        answer = httpx.request(method, f"{dns_service.url}/records/node1")
        assert answer.status_code == 405 and answer.headers["allow"] == "DELETE, GET", method
        assert answer.headers["content-type"].startswith("text/plain")
    assert set(paths["/records/{name}"]) == {"get", "delete"}
