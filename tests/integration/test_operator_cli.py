"""The operator's commands against devcloud, the DNS service and BIND, run as a person runs them (a real
process, no terminal): `config check --connect`, `provision create` of a name the cloud already has,
plain progress lines and a summary, an empty `provision list`, `-q`.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from lablease.provision.devlab import devcloud_lab_data, generate_lab_key

pytestmark = pytest.mark.integration

# The lablease under test when it is not the installed one (a worktree run with PYTHONPATH=src).
SOURCES = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}
CLOUD = {"boot_delay": 0.3, "volume_delay": 0.1, "ssh": {"enabled": True, "delay": 0.2, "runcmd_delay": 0.1}}


@pytest.fixture
def operator(devcloud_factory, dns_service, tmp_path):
    """``run(*args, config=...)`` runs `lablease ARGS -c teuthology.yaml` with HOME in tmp_path; yields (run, cloud, bind, data)."""
    cloud = devcloud_factory(CLOUD)
    data = devcloud_lab_data(cloud, generate_lab_key(tmp_path / "lab_key"), nsupdate_url=dns_service.update_url)

    def run(*args: str, config: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
        path = tmp_path / "teuthology.yaml"
        path.write_text(yaml.safe_dump(config or data))
        return subprocess.run([sys.executable, "-m", "lablease", *args, "-c", str(path)], capture_output=True,
                              text=True, timeout=timeout, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", **SOURCES})

    return run, cloud, dns_service.bind, data


def test_config_check_connect_reports_auth_image_size_and_dns_health_one_line_each(operator):
    run, _, _, _ = operator
    out = run("config", "check", "--connect")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].endswith(": ok (lab_domain lab.example; providers: dev)")
    assert [line.split(":")[0] for line in lines[1:]] == ["ok    dev"] * 4 + ["ok    nsupdate_url"]
    assert "auth: authenticated as demo (project demo, region RegionOne)" in lines[1]
    assert "image: 'Ubuntu 22.04' for ubuntu 22.04" in lines[2] and "size: 'm1.large'" in lines[3]
    assert "quota: the project's quota holds 5 node(s) of 'm1.large' at once (cores 20 / 4 a node); " \
           "dev has 0 record(s)" in lines[4]
    assert lines[5].endswith("/healthz answered 200")


def test_config_check_connect_warns_when_the_records_times_the_flavor_exceed_the_clouds_quota(operator, tmp_path):
    """devcloud's default quota (20 cores) holds 5 nodes of the 4-cpu flavor the default hints pick: 6 records
    of the type cannot all be nodes at once."""
    from lablease.store import NodeStore

    run, _, _, data = operator
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    store = NodeStore.open(url)
    for n in range(1, 7):
        store.create(f"dev00{n}.lab.example", {"machine_type": "dev", "up": True})
    store.close()
    out = run("config", "check", "--connect", config={**data, "lablease": {"database_url": url}})
    assert out.returncode == 0, out.stdout + out.stderr  # a warning, not a failure
    quota = next(line for line in out.stdout.splitlines() if "dev: quota" in line)
    assert quota.startswith("warn  dev: quota: 6 records of dev x 'm1.large' exceed it: the project's quota holds "
                            "5 node(s) of 'm1.large' at once (cores 20 / 4 a node)"), quota


def test_config_check_connect_names_the_misspelt_driver_args_key_not_libclouds_endpoint_error(operator):
    run, _, _, data = operator
    args = data["libcloud"]["providers"]["dev"]["driver_args"]
    args["ex_tennant_name"] = args.pop("ex_tenant_name")
    data["nsupdate_url"] = "http://127.0.0.1:9/update"
    data["openstack"] = {"machine": {"ram": 999999}}
    out = run("config", "check", "--connect", config=data)
    assert out.returncode == 1
    assert "ignores 'ex_tennant_name' (did you mean 'ex_tenant_name'?)" in out.stderr  # the file check warns
    auth = next(line for line in out.stdout.splitlines() if "dev: auth" in line)
    assert auth.startswith("FAIL  dev: auth: authenticate: the cloud's service catalog gave no compute endpoint")
    assert "likely cause: driver_args has keys libcloud's OpenStack driver ignores: 'ex_tennant_name' " \
           "(did you mean 'ex_tenant_name'?)" in auth
    assert "FAIL  nsupdate_url: http://127.0.0.1:9/healthz unreachable" in out.stdout
    del data["nsupdate_url"]
    args["ex_tenant_name"] = args.pop("ex_tennant_name")
    out = run("config", "check", "--connect", config=data)
    assert out.returncode == 1 and "FAIL  dev: size: no size fits ram>=999999MB" in out.stdout
    assert "nodes of dev will get no DNS name" in out.stderr


def test_provision_create_refuses_a_name_the_cloud_already_has_unless_replace(operator):
    run, cloud, bind, _ = operator
    first = run("provision", "create", "node1", "-m", "dev")
    assert first.returncode == 0, first.stderr[-3000:]
    [server] = cloud.resources()["servers"]
    again = run("provision", "create", "Node1", "node2", "-m", "dev")
    assert again.returncode == 1
    assert f"already in the cloud: node1: server {server['id']} (state running, lab lab.example)" in again.stderr
    assert "--replace" in again.stderr and again.stdout == ""
    assert [s["id"] for s in cloud.resources()["servers"]] == [server["id"]]  # nothing created, node2 neither
    replaced = run("provision", "create", "node1", "-m", "dev", "--replace")
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    [new] = cloud.resources()["servers"]
    assert new["id"] != server["id"] and bind.addresses("node1") == {yaml.safe_load(replaced.stdout)["address"]}
    assert run("provision", "destroy", "node1", "-m", "dev").returncode == 0


def test_without_a_terminal_progress_is_plain_lines_on_stderr_then_a_summary_and_stdout_holds_only_results(operator):
    run, _, _, _ = operator
    out = run("provision", "create", "node1", "-m", "dev")
    assert out.returncode == 0, out.stderr[-3000:]
    assert [yaml.safe_load(line)["name"] for line in out.stdout.splitlines()] == ["node1"]
    err = out.stderr.splitlines()
    assert "node1: boot start" in err and "node1: ssh start" in err and "node1: ready done" in err
    assert err[-1] == "created 1 of 1 node(s): node1"
    assert not any(ch in out.stderr for ch in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏━")
    assert "paramiko" not in out.stderr and "httpx" not in out.stderr and "INFO" not in out.stderr
    destroyed = run("provision", "destroy", "node1", "-m", "dev", "--log-level", "INFO")
    assert destroyed.stdout == "node1: destroyed\n"
    assert "INFO lablease.provision.confirm: node destroyed node=node1" in destroyed.stderr  # confirmed by a listing
    empty = run("provision", "list", "-m", "dev")
    assert empty.returncode == 0 and empty.stdout == ""
    assert "no servers or volumes of lab lab.example" in empty.stderr
    quiet = run("provision", "list", "-m", "dev", "-q")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_a_dns_refusal_before_anything_was_registered_is_not_called_rollback_incomplete(operator):
    run, cloud, _, _ = operator
    out = run("provision", "create", "other1", "-m", "dev")  # the DNS service admits node[0-9]+ only
    assert out.returncode == 1
    error = yaml.safe_load(out.stdout)["error"]
    assert "403" in error and "rollback incomplete" not in error
    assert cloud.resources()["servers"] == []
