"""The lock API's OpenAPI document tells the truth, and schemathesis cannot make the server break it.

schemathesis runs with every check, every phase incl. coverage (api_fuzz.CI_PHASES), a fixed seed and api_fuzz.EXAMPLES
examples per operation against `lablease serve`: on SQLite with one worker, on PostgreSQL with two workers
and an admin token (so its security scheme, 401 and 403 are exercised), and against the lab service's own
endpoints (the lab service runs as one process). Its generated text holds NUL; the hooks add unpaired
surrogates and deep nesting. bench/fuzz_apis.py runs the same with more examples and seeds.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from lablease.server.app import create_app
from lablease.lockapi.settings import LockSettings
from lablease.testing.lockserver import start_lock_server
from tests.integration.api_fuzz import (
    LAB_HALVES, LAB_RULES, LOCK_API_RULES, Run, all_checks, checks_enabled, failure_report, hostile_sent, run_all,
    start_lab,
)

pytestmark = pytest.mark.integration

TOKEN = "fuzz-admin-token"
# paddles answered these 400; lablease answers 405 with Allow (keeping paddles' message) and does not document them
WRONG_METHOD = [("GET", "/nodes/lock_many/", "POST"), ("PUT", "/nodes/lock_many/", "POST"),
                ("DELETE", "/nodes/lock_many", "POST"), ("GET", "/nodes/unlock_many/", "POST"),
                ("PUT", "/nodes/unlock_many", "POST"), ("DELETE", "/nodes/unlock_many/", "POST"),
                ("GET", "/nodes/n1.lab/lock/", "POST, PUT"), ("DELETE", "/nodes/n1.lab/lock", "POST, PUT")]


@pytest.mark.timeout(1200)  # several minutes on a busy 2-core machine
def test_schemathesis_with_every_check_and_the_stateful_phase_finds_nothing(tmp_path, postgres_url):
    """SQLite with one worker, PostgreSQL with two workers and an admin token, and the lab service, fuzzed at
    the same time (a run keeps one core busy; the lab's mostly waits on its never-ending progress stream)."""
    servers = {"sqlite": start_lock_server(tmp_path / "sqlite")}
    lab, cloud = start_lab(tmp_path / "lab", TOKEN)
    try:
        servers["postgresql"] = start_lock_server(tmp_path / "postgresql", database_url=postgres_url, workers=2,
                                                  admin_token=TOKEN)
        runs = []
        for database, server in servers.items():
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                for i in range(3):  # something for the listings and the stateful links to find
                    http.post("/nodes/", json={"name": f"n{i}.lab", "machine_type": "t", "up": True})
            runs.append(Run(f"{server.url}/openapi.json", tmp_path / f"st-{database}", LOCK_API_RULES,
                            token=TOKEN if database == "postgresql" else None))
        lab_runs = [Run(f"{lab.url}/openapi.json", tmp_path / f"st-lab-{half}", LAB_RULES, token=TOKEN, args=args)
                    for half, args in LAB_HALVES.items()]
        before = cloud.resources()
        results = run_all(*runs, *lab_runs)
        for run, done in zip(runs, results):
            assert checks_enabled(run.workdir) == all_checks()
            assert done.returncode == 0 and " errored" not in done.stdout, failure_report(done)
            assert "Stateful" in done.stdout and "12 selected / 12 total" in done.stdout, done.stdout[-3000:]
            assert "Coverage" in done.stdout and "Schema validation mismatch" not in done.stdout, done.stdout[-3000:]
            assert hostile_sent(run.workdir) >= {"surrogate", "nul", "deep"}
        for lab_done, selected in zip(results[len(runs):], ("1 selected", "9 selected")):
            assert lab_done.returncode == 0 and " errored" not in lab_done.stdout, failure_report(lab_done)
            # reconcile; and status, force-unlock, extend, hold, release, usage, progress, metrics, /lablease/
            assert selected in lab_done.stdout, lab_done.stdout[-2000:]
        after = cloud.resources()
        assert {k: v for k, v in after.items() if k != "tokens"} == {k: v for k, v in before.items() if k != "tokens"}
    finally:
        for server in [*servers.values(), lab]:
            server.stop()
        cloud.stop()
    for server in [*servers.values(), lab]:
        assert "Traceback" not in server.process.log_tail(2_000_000)


@pytest.fixture(params=[None, TOKEN], ids=["open", "admin-token"])
def document(request, tmp_path):
    settings = LockSettings.from_mapping({"lablease": {"admin_token": request.param} if request.param else {}},
                                         data_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        yield client, client.get("/openapi.json").json()


def test_every_operation_lists_the_answers_the_server_gives_and_never_422(document):
    _client, doc = document
    ids = []
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            ids.append(operation["operationId"])
            statuses = set(operation["responses"])
            assert "422" not in statuses, (method, path)
            assert {"400", "413"} <= statuses, (method, path)  # the edge's answers, on every operation
            assert "200" in statuses and operation["responses"]["200"]["content"]["application/json"]["schema"]
            for status, answer in operation["responses"].items():
                if status != "200":
                    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Message"}
    assert len(ids) == len(set(ids))
    assert {"HTTPValidationError", "ValidationError"}.isdisjoint(doc["components"]["schemas"])
    lock_many = doc["paths"]["/nodes/lock_many/"]["post"]["responses"]
    assert "503" in lock_many and "403" in doc["paths"]["/nodes/{name}/lock/"]["put"]["responses"]


def test_creating_and_deleting_declare_the_admin_token_exactly_when_the_server_has_one(document):
    client, doc = document
    has_token = client.app.state.settings.admin_token is not None
    secured = {(path, method) for path, ops in doc["paths"].items() for method, op in ops.items() if op.get("security")}
    assert secured == ({("/nodes/", "post"), ("/nodes/{name}/", "delete")} if has_token else set())
    assert ("securitySchemes" in doc["components"]) == has_token


def test_a_405_allows_exactly_the_methods_the_document_lists_for_that_path(document):
    """Starlette named only the first of the routes sharing a path (`Allow: GET` on /nodes/<name>/)."""
    client, doc = document
    for path, operations in doc["paths"].items():
        concrete = path.replace("{name}", "n1.lab")
        for method in ("OPTIONS", "PATCH"):
            response = client.request(method, concrete)
            assert response.status_code == 405 and set(response.json()) == {"message"}, (method, path)
            allowed = {m.strip().lower() for m in response.headers["allow"].split(",")}
            assert allowed == set(operations), (path, response.headers["allow"])


@pytest.mark.parametrize(("method", "path", "allow"), WRONG_METHOD)
def test_a_method_a_route_does_not_serve_is_405_with_allow_and_paddles_message(document, method, path, allow):
    client, doc = document
    client.post("/nodes/", json={"name": "n1.lab", "machine_type": "t"},
                headers={"Authorization": "Bearer " + TOKEN})
    response = client.request(method, path)
    assert response.status_code == 405 and response.headers["allow"] == allow
    assert response.json()["message"] in ("this endpoint takes POST only", "lock takes PUT or POST")
    documented = doc["paths"][path.replace("n1.lab", "{name}").rstrip("/") + "/"]
    assert set(documented) == {m.strip().lower() for m in allow.split(",")}
