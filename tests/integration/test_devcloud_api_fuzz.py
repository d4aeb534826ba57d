"""devcloud's OpenAPI document (/devcloud/openapi.json) tells the truth: schemathesis with every check, the
examples, coverage, fuzzing and stateful phases (api_fuzz.CI_PHASES), a fixed seed and api_fuzz.EXAMPLES examples per
operation finds nothing, and the cloud still lists.

The document is cut in two halves of about the same cost, fuzzed at the same time (Nova's servers with Cinder,
whose links the stateful phase follows; Keystone, the rest of Nova, Glance, Neutron and the admin API): each run
keeps one core busy. Left out: PUT /devcloud/admin/faults and DELETE /devcloud/admin/tokens (faults it set
would make every later answer an injected one, a revocation every later answer a 401; test_devcloud_faults.py
covers them) and the second spellings of routes
fuzzed under their first (Cinder v2, the doubled token paths; bench/fuzz_apis.py runs those too).
"""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.testclient import TestClient

from lablease.devcloud.app import create_app
from lablease.devcloud.config import DevcloudConfig
from lablease.testing.devcloud import start_devcloud
from tests.integration.api_fuzz import (
    DEVCLOUD_ALIAS_PATHS, DEVCLOUD_ALIASES, DEVCLOUD_RULES, DEVCLOUD_SKIP, Run, failure_report, hostile_sent,
    keystone_token, run_all,
)

pytestmark = pytest.mark.integration

SERVERS_AND_VOLUMES = r"^/(compute/v2\.1/servers|volume)(/|$)"
HALVES = {"servers-volumes": ("--include-path-regex", SERVERS_AND_VOLUMES,
                              "--exclude-path-regex", DEVCLOUD_ALIAS_PATHS),
          "the-rest": ("--exclude-path-regex", f"{SERVERS_AND_VOLUMES}|{DEVCLOUD_ALIAS_PATHS}")}


def operations(url: str) -> list[str]:
    doc = httpx.get(f"{url}/devcloud/openapi.json").json()
    return [f"{method.upper()} {path}" for path, ops in doc["paths"].items() for method in ops]


@pytest.mark.timeout(1200)  # several minutes on a busy 2-core machine
def test_schemathesis_finds_nothing_and_the_cloud_still_lists(tmp_path):
    cloud = start_devcloud(tmp_path / "cloud", {"boot_delay": 0.1, "volume_delay": 0.05, "ssh": {"enabled": False},
                                                "networks": [{"name": "public"}, {"name": "ext-net", "external": True}]})
    try:
        token = keystone_token(cloud.url)
        extra = f'[auth.openapi.keystoneToken]\napi_key = "{token}"\n'
        left_out = [arg for name in DEVCLOUD_SKIP + DEVCLOUD_ALIASES for arg in ("--exclude-name", name)]
        runs = [Run(f"{cloud.url}/devcloud/openapi.json", tmp_path / half, DEVCLOUD_RULES, extra=extra,
                    args=(*paths, *left_out))
                for half, paths in HALVES.items()]
        results = run_all(*runs)
        for done in results:
            assert done.returncode == 0 and " errored" not in done.stdout, failure_report(done)
            assert "Stateful" in done.stdout, done.stdout[-3000:]
        selected = [int(re.search(r"(\d+) selected / (\d+) total", done.stdout).group(1)) for done in results]
        every = operations(cloud.url)
        aliases = [op for op in every if op in DEVCLOUD_ALIASES or re.match(DEVCLOUD_ALIAS_PATHS, op.split()[1])]
        assert sum(selected) == len(every) - len(DEVCLOUD_SKIP) - len(aliases)
        assert set().union(*(hostile_sent(run.workdir) for run in runs)) >= {"surrogate", "nul", "deep"}
        with httpx.Client(base_url=cloud.url, headers={"X-Auth-Token": token}) as http:
            for path in ("/compute/v2.1/servers/detail", "/compute/v2.1/os-keypairs", "/compute/v2.1/os-volumes"):
                assert http.get(path).status_code == 200, path
    finally:
        cloud.stop()
    assert "Traceback" not in cloud.log_tail(5_000_000)


def test_the_document_lists_every_route_and_answers_as_openstack_does(tmp_path):
    app = create_app(DevcloudConfig(), tmp_path)
    with TestClient(app) as client:
        doc = client.get("/devcloud/openapi.json").json()
        for path, operations in doc["paths"].items():
            for method, operation in operations.items():
                statuses = set(operation["responses"])
                assert "422" not in statuses and {"400", "413"} <= statuses, (method, path)
                if "security" in operation:  # (the token endpoints answer 401 to wrong credentials too)
                    assert "401" in statuses, (method, path)
                concrete = path.replace("{", "").replace("}", "")
                response = client.request("PATCH", concrete)
                allowed = {m.strip().lower() for m in response.headers.get("allow", "").split(",") if m.strip()}
                assert response.status_code == 405 and allowed == set(operations), (path, allowed)
        server = doc["paths"]["/compute/v2.1/servers"]["post"]
        assert server["requestBody"]["content"]["application/json"]["schema"]["required"] == ["server"]


def test_revoking_every_token_makes_old_ones_401_until_the_client_authenticates_again(tmp_path):
    """DELETE /devcloud/admin/tokens, which the fuzz run leaves out (every later answer would be a 401)."""
    with TestClient(create_app(DevcloudConfig(), tmp_path)) as client:
        token = keystone_token("", client)
        assert client.get("/compute/v2.1/servers", headers={"X-Auth-Token": token}).status_code == 200
        assert client.delete("/devcloud/admin/tokens").status_code == 204
        assert client.get("/compute/v2.1/servers", headers={"X-Auth-Token": token}).status_code == 401
        fresh = keystone_token("", client)
        assert client.get("/compute/v2.1/servers", headers={"X-Auth-Token": fresh}).status_code == 200
