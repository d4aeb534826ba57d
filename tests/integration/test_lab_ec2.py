"""An EC2 machine type beside an OpenStack one in one `lablease serve`: teuthology 1.3.0's unmodified
`teuthology-lock` locks, lists and unlocks nodes of both (SQLite and PostgreSQL), and a lab service killed
with SIGKILL in the middle of provisioning EC2 nodes is healed by the next one's reconciler.

Real parts only: a real moto server behind the moto harness (a real sshd per running instance on 127.x),
devcloud with SSH, the DNS service in front of a real BIND, libcloud's stock drivers over HTTP. One of each
serves the whole module (moto: the test worker's shared harness, the ``moto_ec2`` fixture, reset around each
test); each test checks that it leaves nothing behind in any of them.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess

import httpx
import pytest
import yaml

from lablease.provision.devlab import devcloud_lab_data, ec2_lab_data, generate_lab_key
from lablease.provision.models import TAG_LAB
from lablease.testing.lockserver import start_lock_server
from lablease.testing.moto_ec2 import READY_COMMAND
from lablease.testing.waiting import wait_until
from tests.integration.test_teuthology_client import commands, teuthology_venv

pytestmark = pytest.mark.integration

DOMAIN = "lab.example"
OWNER = "tester@lab"
CLOUD = {"boot_delay": 0.3, "volume_delay": 0.1, "ssh": {"enabled": True, "delay": 0.2, "runcmd_delay": 0.1}}
TIMEOUTS = {"boot_timeout": 30, "ready_timeout": 30, "volume_timeout": 20, "delete_timeout": 20}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """devcloud (OpenStack), BIND and the DNS service for the module."""
    from lablease.testing.bind import start_bind
    from lablease.testing.devcloud import _merge, start_devcloud
    from lablease.testing.dns import start_dns_service
    from tests.fixtures.devcloud import TEST_DEFAULTS

    work = tmp_path_factory.mktemp("ec2-lab")
    cloud = start_devcloud(work / "devcloud", _merge(TEST_DEFAULTS, CLOUD))
    bind = start_bind(work / "bind", DOMAIN, f"*.{DOMAIN}.")
    dns = start_dns_service(work / "dns", bind, allow_pattern=r"(aws|ovh)[0-9]+")
    yield cloud, bind, dns
    dns.stop()
    bind.stop()
    cloud.stop()


def lab_config(ec2, stack, key) -> dict:  # noqa: ANN001
    """Machine type ``aws`` on moto and ``ovh`` on devcloud, one 1 GB volume per node (the lab's hints)."""
    cloud, _, dns = stack
    top = ec2_lab_data(ec2, key, nsupdate_url=dns.update_url, lab_domain=DOMAIN, ready_command=READY_COMMAND,
                       api_timeout=5, **TIMEOUTS)
    ovh = devcloud_lab_data(cloud, key, lab_domain=DOMAIN, machine_type="ovh", **TIMEOUTS)
    top["libcloud"]["providers"]["ovh"] = ovh["libcloud"]["providers"]["ovh"]
    top["openstack"] = {"volumes": {"count": 1, "size": 1}}
    return top


def live_instances(ec2) -> list[dict]:  # noqa: ANN001
    return [i for i in ec2.instances() if i["state"] != "terminated"]


def lablease_volumes(ec2) -> list[dict]:  # noqa: ANN001
    return [v for v in ec2.volumes() if TAG_LAB in v["tags"]]


def assert_nothing_left(ec2, stack, shorts: list[str]) -> None:  # noqa: ANN001
    cloud, bind, _ = stack
    assert live_instances(ec2) == [] and ec2.volumes() == [], (live_instances(ec2), ec2.volumes())
    assert cloud.resources()["servers"] == [] and cloud.resources()["volumes"] == []
    assert {s: bind.addresses(s) for s in shorts} == {s: set() for s in shorts}


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def venv():
    return teuthology_venv()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_teuthology_lock_gets_ssh_ready_ec2_and_openstack_nodes_from_one_service_and_unlock_leaves_nothing(
        stack, moto_ec2, venv, tmp_path, database, request):
    ec2, (cloud, bind, _) = moto_ec2, stack
    db_url = request.getfixturevalue("postgres_url") if database == "postgresql" else \
        f"sqlite:///{tmp_path / 'lab.db'}"
    key = generate_lab_key(tmp_path / "lab_key")
    server = start_lock_server(tmp_path / "server", database_url=db_url, lab_domain=DOMAIN,
                               top=lab_config(ec2, stack, key))
    home = tmp_path / "home"
    (home / ".cache").mkdir(parents=True)
    (home / ".teuthology.yaml").write_text(yaml.safe_dump({"lock_server": server.url, "lab_domain": DOMAIN}))
    lablease, tl = commands(home, venv)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for short in ("aws001", "aws002", "ovh001", "ovh002"):
                added = http.post("/nodes/", json={"name": f"{short}.{DOMAIN}", "machine_type": short[:3],
                                                   "is_vm": True, "up": True})
                assert added.status_code == 200, added.text

        aws = yaml.safe_load(ok(tl("--lock-many", "2", "-m", "aws", "--os-type", "ubuntu", "--os-version", "22.04",
                                   "--owner", OWNER, "--desc", "teuthology job on EC2")))["targets"]
        assert sorted(aws) == [f"aws001.{DOMAIN}", f"aws002.{DOMAIN}"]
        instances = {i["private_ip"]: i for i in live_instances(ec2)}
        assert len(instances) == 2 and all(i["state"] == "running" for i in instances.values())
        for name, host_key in aws.items():
            (address,) = bind.addresses(name.split(".")[0])
            assert host_key == instances[address]["host_key"]  # ssh_pub_key: the key the instance's sshd presents
            assert instances[address]["tags"]["Name"] == name.split(".")[0]
        assert sorted(v["attached_to"] for v in lablease_volumes(ec2)) == sorted(i["id"] for i in instances.values())

        ovh = yaml.safe_load(ok(tl("--lock-many", "2", "-m", "ovh", "--owner", OWNER, "--desc", "job on OpenStack")))
        ovh = ovh["targets"]
        assert sorted(ovh) == [f"ovh001.{DOMAIN}", f"ovh002.{DOMAIN}"]
        assert sorted(s["name"] for s in cloud.resources()["servers"]) == ["ovh001", "ovh002"]
        assert all(bind.addresses(n.split(".")[0]) for n in ovh)

        listed = {n["name"]: n for n in json.loads(ok(tl("--list", "--owner", OWNER)))}
        assert sorted(listed) == sorted([*aws, *ovh])
        assert all(n["locked"] and n["state"] == "ready" for n in listed.values())
        assert {n: listed[n]["machine_type"] for n in listed} == {**{n: "aws" for n in aws}, **{n: "ovh" for n in ovh}}

        # teuthology's --unlock of one EC2 node (it spends ~25 s trying to SSH to a name only this test's BIND
        # knows), once: on SQLite; lablease's CLI for the rest (on PostgreSQL for all: the database is not what
        # teuthology's --unlock exercises).
        rest = sorted([*aws, *ovh])
        if database == "sqlite":
            first = rest.pop(0)
            ok(tl("--unlock", "--owner", OWNER, first))
            assert [i["tags"]["Name"] for i in live_instances(ec2)] == ["aws002"]
            assert bind.addresses("aws001") == set()
        ok(lablease("unlock", "--server", server.url, "--owner", OWNER, *rest))
        assert_nothing_left(ec2, stack, ["aws001", "aws002", "ovh001", "ovh002"])
        after = {n["name"]: n for n in httpx.get(f"{server.url}/nodes/", timeout=30).json()}
        assert all(not after[n]["locked"] and after[n]["state"] == "idle" for n in [*aws, *ovh])
        shown = httpx.get(f"{server.url}/lab/status/", timeout=30).text + server.process.log_tail(10 ** 7)
        assert "aws" in shown and ec2.driver_args()["secret"] not in shown  # the EC2 secret key is never shown
    finally:
        server.stop()


def test_a_service_killed_mid_provision_on_ec2_is_healed_and_its_reconciler_deletes_only_this_labs_leaks(
        stack, moto_ec2, tmp_path):
    ec2 = moto_ec2
    key = generate_lab_key(tmp_path / "lab_key")
    top = lab_config(ec2, stack, key)
    db_url = f"sqlite:///{tmp_path / 'lab.db'}"
    first = start_lock_server(tmp_path / "first", database_url=db_url, lab_domain=DOMAIN, top=top,
                              extra={"reconcile_interval": 0})
    second = None
    ec2.admin.set_delays(pending=30)  # a long boot to die in
    try:
        http = httpx.Client(base_url=first.url, timeout=120)
        names = [f"aws00{i}.{DOMAIN}" for i in (1, 2)]
        for name in names:
            assert http.post("/nodes/", json={"name": name, "machine_type": "aws", "is_vm": True,
                                              "up": True}).status_code == 200
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(http.post, "/nodes/lock_many/", json={"count": 2, "machine_type": "aws", "locked_by": OWNER,
                                                               "description": "killed"})
            wait_until(lambda: len(live_instances(ec2)) == 2 and len(lablease_volumes(ec2)) == 2,
                       what="2 instances and their volumes in moto", timeout=60)
            os.killpg(first.process.proc.pid, signal.SIGKILL)
            first.process.proc.wait(timeout=10)
        http.close()
        ec2.admin.set_delays(pending=0.5)
        assert {i["state"] for i in live_instances(ec2)} == {"pending"}  # left behind by the killed service

        second = start_lock_server(tmp_path / "second", database_url=db_url, lab_domain=DOMAIN, top=top,
                                   extra={"reconcile_interval": 60})
        with httpx.Client(base_url=second.url, timeout=30) as again:
            def healed() -> bool:
                nodes = [again.get(f"/nodes/{n}/").json() for n in names]
                return (all(n["state"] == "idle" and not n["locked"] for n in nodes) and live_instances(ec2) == []
                        and ec2.volumes() == [])
            wait_until(healed, what="every node free and nothing left in moto after the restart", timeout=90,
                       interval=0.5)
            events = again.get(f"/nodes/{names[0]}/events/").json()
        assert any(e["who"] == "reconciler" for e in events), events
        assert_nothing_left(ec2, stack, ["aws001", "aws002"])

        planted = _plant_leaks(ec2, top)
        with httpx.Client(base_url=second.url, timeout=60) as again:
            first_pass, second_pass = (_reconcile_aws(again) for _ in range(2))
        assert first_pass["pending"]["servers"] == [planted["ours"]] and first_pass["deleted"]["servers"] == []
        assert second_pass["deleted"]["servers"] == [planted["ours"]]
        assert second_pass["deleted"]["volumes"] == [planted["our_volume"]]
        assert {i["id"] for i in live_instances(ec2)} == {planted["other_labs"], planted["untagged"]}
        driver = ec2.driver()
        for node in driver.list_nodes():
            driver.destroy_node(node)
    finally:
        ec2.admin.set_delays(pending=0.5)
        first.stop()
        if second is not None:
            second.stop()


def _plant_leaks(ec2, top: dict) -> dict[str, str]:  # noqa: ANN001
    """Made straight in moto: an instance and a volume tagged as this lab's that no record owns, another lab's
    instance of the same name, and an untagged one."""
    from lablease.config.lab import ProviderConfig
    from lablease.provision.adapters import adapter_for
    from lablease.provision.models import TAG_ATTEMPT, TAG_NODE

    driver = ec2.driver()
    image = driver.list_images(ex_owner="099720109477")[0]
    size = next(s for s in driver.list_sizes() if s.id == "t3.micro")
    ours = {TAG_LAB: DOMAIN, TAG_NODE: "aws009", TAG_ATTEMPT: "1-dead"}

    def instance(tags: dict[str, str]) -> str:
        return driver.create_node(name="aws009", image=image, size=size, ex_metadata=tags).id

    planted = {"ours": instance(ours), "other_labs": instance({**ours, TAG_LAB: "other.example"}),
               "untagged": instance({})}
    adapter = adapter_for(ProviderConfig.model_validate(top["libcloud"]["providers"]["aws"]))
    planted["our_volume"] = adapter.create_volume("aws009_0", 1, ours).id
    return planted


def _reconcile_aws(http: httpx.Client) -> dict:
    answer = http.post("/lab/reconcile/")
    assert answer.status_code == 200, answer.text
    [report] = [r for r in answer.json() if r["machine_type"] == "aws"]
    return report
