"""Console logs of failed boots and usage reports end to end (issue 22): `lablease serve` on devcloud (real sshd per
server), the DNS service and BIND, over HTTP and through the `lablease` command.

devcloud writes each server's boot log and serves it as Nova's os-getConsoleOutput; its boot_error fault makes
the servers named node9 panic and go to ERROR. One devcloud, BIND and DNS service serve the whole module; each
test starts its own lab service on its own database.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lablease.provision.devlab import devcloud_lab_data, generate_lab_key
from lablease.testing.lockserver import start_lock_server
from tests.integration.test_lab_service import Lab

pytestmark = pytest.mark.integration

DOMAIN = "lab.example"
OWNER = "alice@lab"
PANIC = "Kernel panic - not syncing: VFS: Unable to mount root fs; db_password: hunter2"
CLOUD = {"boot_delay": 0.1, "volume_delay": 0.05, "ssh": {"enabled": True, "delay": 0.05, "runcmd_delay": 0.05},
         "faults": {"boot_error": {"match_name": "node9", "console": PANIC}}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from lablease.testing.bind import start_bind
    from lablease.testing.devcloud import _merge, start_devcloud
    from lablease.testing.dns import start_dns_service
    from tests.fixtures.devcloud import TEST_DEFAULTS

    work = tmp_path_factory.mktemp("console-usage")
    cloud = start_devcloud(work / "devcloud", _merge(TEST_DEFAULTS, CLOUD))
    bind = start_bind(work / "bind", DOMAIN, f"*.{DOMAIN}.")
    dns = start_dns_service(work / "dns", bind, allow_pattern=r"node[0-9]+")
    key = generate_lab_key(work / "lab_key")
    yield cloud, bind, dns, key
    dns.stop()
    bind.stop()
    cloud.stop()


@pytest.fixture
def lab(stack, tmp_path):
    cloud, bind, dns, key = stack
    top = devcloud_lab_data(cloud, key, nsupdate_url=dns.update_url, lab_domain=DOMAIN, machine_type="dev",
                            boot_timeout=30, ready_timeout=30, delete_timeout=10, launch_retries=1)
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    server = start_lock_server(tmp_path / "lab", database_url=url, lab_domain=DOMAIN, top=top)
    yield Lab(server.url, cloud, bind, key, url, server)
    server.stop()


def lablease(home, *args: str) -> subprocess.CompletedProcess:  # noqa: ANN001
    return subprocess.run([sys.executable, "-m", "lablease", *args], env={**os.environ, "HOME": str(home)},
                          capture_output=True, text=True, timeout=120)


def test_a_failed_boot_keeps_the_servers_console_log_in_its_failure_event_and_lablease_status_shows_it(
        lab, tmp_path):
    [name] = lab.add("node9")
    answer = lab.lock_many(1)
    assert answer.status_code == 503 and "ERROR" in answer.json()["message"], answer.text
    failed = [e["new"] for e in lab.http.get(f"/nodes/{name}/events/").json()
              if e["action"] == "stage" and (e["new"] or {}).get("status") == "failed"]
    assert [f["stage"] for f in failed] == ["boot"], failed
    console = failed[0]["console"]
    assert "Linux version" in console and "Kernel panic - not syncing" in console  # the boot log, to its end
    assert "hunter2" not in console and "db_password: ***" in console  # no secret is kept
    assert len(console.encode()) <= 4096
    out = lablease(tmp_path, "status", name, "--server", lab.url)
    assert out.returncode == 0 and "console of boot failed" in out.stdout, out.stderr
    assert "Kernel panic - not syncing" in out.stdout and "hunter2" not in out.stdout
    page = lab.http.get(f"/ui/nodes/{name}")
    assert page.status_code == 200 and "Console log of a failed boot" in page.text and "Kernel panic" in page.text
    lab.assert_nothing_left([name])
