"""The lab service's additions to the lock API (/lab/progress/, /lab/status/, /lab/reconcile/, /metrics,
/lablease/) under hand-written hostile requests: documented answers only, and neither the cloud nor the node
table moves; a cloud that is down is a 502. schemathesis fuzzes these endpoints in test_lock_api_fuzz.py,
alongside the lock server's runs. The lab service runs as one process (it refuses `workers` > 1).
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.api_fuzz import start_lab

pytestmark = pytest.mark.integration

TOKEN = "lab-fuzz-token"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    server, cloud = start_lab(tmp_path_factory.mktemp("lab-hostile"), TOKEN)
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
            server.http = http  # type: ignore[attr-defined]
            server.cloud = cloud  # type: ignore[attr-defined]
            yield server
    finally:
        server.stop()
        cloud.stop()
    assert "Traceback" not in server.process.log_tail(2_000_000)


def state(lab) -> tuple:  # noqa: ANN001
    """The cloud's resources and every node: what a refused request must leave as it was."""
    resources = lab.cloud.resources()
    resources.pop("tokens")
    return resources, lab.http.get("/nodes/").json()


def test_hostile_requests_to_the_lab_endpoints_get_documented_answers(lab):
    http = lab.http
    before = state(lab)
    doc = http.get("/openapi.json").json()["paths"]
    anonymous = httpx.Client(base_url=lab.url, timeout=30)
    cases = [
        (http, "GET", "/lab/progress/?request=%00", None, 400),
        (http, "GET", "/lab/progress/?node=" + "n" * 300, None, 400),
        (http, "GET", "/lab/progress/?request=" + "r" * 65, None, 400),
        (http, "GET", "/lab/progress/?node=%ED%A0%80", None, 400),
        (http, "GET", "/lab/status/?x=%FF", None, 400),
        (http, "GET", "/metrics?%00=1", None, 400),
        (http, "POST", "/lab/reconcile/?machine_type=plain", None, 400),
        (http, "POST", "/lab/reconcile/?machine_type=%00", None, 400),
        (http, "POST", "/lab/reconcile/?machine_type=" + "m" * 40, None, 400),
        (http, "POST", "/lab/reconcile/?dry_run=maybe", None, 400),
        (http, "POST", "/lab/reconcile/", b"[" * 10_000 + b"]" * 10_000, 400),
        (http, "POST", "/lab/reconcile/", json.dumps({"x": "\ud800"}).encode(), 400),
        (http, "POST", "/lab/reconcile/", b"x" * (10 * 1024 * 1024), 413),
        (anonymous, "POST", "/lab/reconcile/", None, 401),
        (httpx.Client(base_url=lab.url, headers={"Authorization": "Bearer wrong"}), "POST", "/lab/reconcile/", None,
         403),
        (http, "PATCH", "/lab/status/", None, 405),
        (http, "DELETE", "/metrics", None, 405),
    ]
    for client, method, path, body, status in cases:
        response = client.request(method, path, content=body)
        assert response.status_code == status, (method, path, response.status_code, response.text[:200])
        assert set(response.json()) == {"message"} and response.headers["content-type"] == "application/json"
        documented = doc.get(path.split("?")[0], {}).get(method.lower(), {}).get("responses", {})
        assert status == 405 or str(status) in documented, (method, path, status)
    assert http.get("/lab/status/").status_code == 200
    dry = http.post("/lab/reconcile/", params={"dry_run": "true", "machine_type": "dev"})
    assert dry.status_code == 200 and dry.json()[0]["machine_type"] == "dev"
    assert state(lab) == before


def test_a_reconcile_while_the_cloud_is_down_is_an_honest_503(lab):
    """The cloud is a dependency: when it cannot be reached the answer is 503 naming it (the error kind's status,
    provision/errorkinds.py), documented, never a 500 (runs last: it stops it)."""
    lab.cloud.stop()
    response = lab.http.post("/lab/reconcile/", params={"machine_type": "dev"})
    assert response.status_code == 503, response.text
    assert response.json()["message"].startswith("the cloud did not answer as expected")
    assert "cloud unreachable" in response.json()["message"]
    documented = lab.http.get("/openapi.json").json()["paths"]["/lab/reconcile/"]["post"]["responses"]
    assert "cannot be reached" in documented["503"]["description"]
    assert lab.http.get("/lab/status/").status_code == 200
