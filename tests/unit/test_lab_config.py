"""The lab config: the seed's teuthology.yaml loads unchanged, each mistake gets a named error, no secret leaks."""

from __future__ import annotations

import textwrap

import pytest
from typer.testing import CliRunner

from lablease.cli import app
from lablease.config import ConfigError
from lablease.config.lab import LabConfig, load_lab_config, parse_lab_config

SEED = textwrap.dedent("""\
    lab_domain: front.example.com
    lock_server: http://paddles.example.com/
    nsupdate_url: http://nsupdate.example.com/update
    results_server: http://results.example.com/   # teuthology's key, not ours
    libcloud:
      providers:
        ovh:
          driver: openstack
          driver_args:
            username: 'my_ovh_username'
            password: 'my_ovh_password'
            ex_force_auth_url: 'https://auth.cloud.ovh.net/v2.0/tokens'
            ex_force_auth_version: '2.0_password'
            ex_tenant_name: 'my_tenant_name'
            ex_force_service_region: 'my_region'
    """)

FULL_PROVIDER = textwrap.indent(textwrap.dedent("""\
          ssh_interface: private_ips
          exclude_image: ['.*-old']
          allow_sizes: '.*'
          exclude_sizes: 'win-.*'
          allow_networks: '.*'
          security_groups: ['default']
          userdata:
            ubuntu-22.04: {packages: [git]}
          max_parallel: 4
          launch_retries: 2
          boot_timeout: 120
          ready_timeout: 300
          ssh_user: ubuntu
          ssh_port: 22
          authorized_keys: ['ssh-ed25519 AAAA admin']
          ready_command: test -e /.teuth_provisioned
          rate: 0.1
          tags: {team: ceph}
    """), " " * 6)


def _write(tmp_path, text: str):
    path = tmp_path / "teuthology.yaml"
    path.write_text(text)
    return path


def test_the_seed_example_config_loads_unchanged(tmp_path):
    lab = load_lab_config(_write(tmp_path, SEED))
    ovh = lab.provider("ovh")
    assert lab.lab_domain == "front.example.com" and lab.nsupdate_url.endswith("/update")
    assert ovh.driver_args["password"] == "my_ovh_password"  # untouched, for the driver
    assert ovh.exclude_sizes == ["win-.*"] and ovh.launch_retries == 3 and ovh.ssh_user == "ubuntu"
    assert lab.model_extra["results_server"] == "http://results.example.com/"


def test_every_documented_provider_option_is_accepted(tmp_path):
    lab = load_lab_config(_write(tmp_path, SEED + FULL_PROVIDER))
    ovh = lab.provider("ovh")
    assert ovh.ssh_interface == "private_ips" and ovh.allow_sizes == [".*"] and ovh.security_groups == ["default"]
    assert ovh.max_parallel == 4 and ovh.rate == 0.1 and ovh.userdata["ubuntu-22.04"] == {"packages": ["git"]}


@pytest.mark.parametrize("extra, key, words", [
    ("      max_paralel: 4\n", "libcloud.providers.ovh.max_paralel", "unknown key"),
    ("      ssh_interface: floating\n", "libcloud.providers.ovh.ssh_interface", "public_ips"),
    ("      exclude_sizes: 'win-(['\n", "libcloud.providers.ovh.exclude_sizes", "regular expression"),
    ("      max_parallel: 0\n", "libcloud.providers.ovh.max_parallel", "greater than or equal to 1"),
    ("      userdata: {ubuntu: {packages: [git]}}\n", "libcloud.providers.ovh.userdata", "<os_type>-<os_version>"),
    ("      tags: {lablease-lab: x}\n", "libcloud.providers.ovh.tags", "reserved"),
    ("      ssh_key_file: /nonexistent/key\n", "libcloud.providers.ovh.ssh_key_file", "ssh-keygen"),
])
def test_each_invalid_provider_option_names_the_key_and_the_fix(tmp_path, extra, key, words):
    with pytest.raises(ConfigError) as err:
        load_lab_config(_write(tmp_path, SEED + extra))
    assert err.value.key == key, str(err.value)
    assert str(tmp_path / "teuthology.yaml") in str(err.value) and words in str(err.value)
    assert "my_ovh_password" not in str(err.value)


def test_an_unsupported_driver_lists_the_supported_ones(tmp_path):
    with pytest.raises(ConfigError, match="supports: openstack, ec2") as err:
        load_lab_config(_write(tmp_path, SEED.replace("driver: openstack", "driver: gce")))
    assert err.value.key == "libcloud.providers.ovh.driver"


def test_missing_openstack_credentials_are_named_without_echoing_the_others(tmp_path):
    text = SEED.replace("        username: 'my_ovh_username'\n", "")
    with pytest.raises(ConfigError) as err:
        load_lab_config(_write(tmp_path, text))
    assert "username" in str(err.value) and "my_ovh_password" not in str(err.value)
    assert err.value.key == "libcloud.providers.ovh"


def test_bad_global_hints_name_their_key():
    with pytest.raises(ConfigError) as err:
        parse_lab_config({"openstack": {"machine": {"ram": "lots"}}}, file="t.yaml")
    assert err.value.key == "openstack.machine.ram"


def test_teuthology_keys_of_the_global_openstack_section_are_kept():
    lab = parse_lab_config({"openstack": {"clusters": {"x": 1}, "machine": {"ram": 4000}}})
    assert lab.openstack.machine.ram == 4000 and lab.openstack.model_extra["clusters"] == {"x": 1}


def test_an_unknown_machine_type_lists_the_known_ones():
    lab = LabConfig.model_validate({"libcloud": {"providers": {}}})
    with pytest.raises(ConfigError, match="known machine types: none"):
        lab.provider("ovh")


def _with_key(tmp_path, text: str) -> str:
    """``text`` with a usable lab key for the provider (config check refuses a provider without one)."""
    from lablease.provision.devlab import generate_lab_key

    return text + f"      ssh_key_file: {generate_lab_key(tmp_path / 'lab_key')}\n"


def test_config_check_reports_ok_and_config_show_redacts_every_secret(tmp_path):
    path = _write(tmp_path, _with_key(tmp_path, SEED))
    runner = CliRunner()
    result = runner.invoke(app, ["config", "check", "--config", str(path)])
    assert result.exit_code == 0 and "ok" in result.output and "ovh" in result.output
    path.write_text(path.read_text() + "      ssh_key_passphrase: s3cret-phrase\n")
    result = runner.invoke(app, ["config", "show", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "my_ovh_password" not in result.output and "s3cret-phrase" not in result.output
    assert "password: '***'" in result.output and "results_server" in result.output
    assert "exclude_sizes:\n" in result.output  # defaults are shown


def test_config_check_fails_with_the_named_error_and_exit_code_2(tmp_path):
    path = _write(tmp_path, SEED + "      colour: blue\n")
    result = CliRunner().invoke(app, ["config", "check", "--config", str(path)])
    assert result.exit_code == 2
    assert "libcloud.providers.ovh.colour: unknown key" in result.output


def test_config_defaults_to_the_users_teuthology_yaml(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".teuthology.yaml").write_text(_with_key(tmp_path, SEED))
    result = CliRunner().invoke(app, ["config", "check"])
    assert result.exit_code == 0 and str(tmp_path / ".teuthology.yaml") in result.output


@pytest.mark.parametrize("hints, words", [("{ram: 4000}", "Expecting property name"),
                                          ('{"machine": {"ram": "lots"}}', "machine.ram")])
def test_provision_create_rejects_bad_hints_with_exit_code_2_before_touching_the_cloud(tmp_path, hints, words):
    path = _write(tmp_path, SEED)
    result = CliRunner().invoke(app, ["provision", "create", "node1", "-m", "ovh", "--config", str(path),
                                      "--hints", hints])
    assert result.exit_code == 2 and "--hints" in result.output and words in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_repr_of_the_config_shows_no_password_or_passphrase(tmp_path):
    lab = load_lab_config(_write(tmp_path, SEED + "      ssh_key_passphrase: s3cret-phrase\n"))
    for shown in (repr(lab), str(lab), repr(lab.provider("ovh")), f"{lab.provider('ovh')!s}"):
        assert "my_ovh_password" not in shown and "s3cret-phrase" not in shown
    assert lab.provider("ovh").driver_args["password"] == "my_ovh_password"
