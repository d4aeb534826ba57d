"""devcloud's small parts: cloud-config parsing, config validation, address pool, keypair fingerprints."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lablease.config import ConfigError
from lablease.devcloud.config import DevcloudConfig, load_config
from lablease.devcloud.keypairs import fingerprint
from lablease.devcloud.state import AddressPool
from lablease.devcloud.userdata import parse_user_data


def test_cloud_config_gives_keys_users_and_touch_targets_in_string_and_list_form():
    ud = parse_user_data(
        "#cloud-config\nuser: ubuntu\nssh_authorized_keys: ['ssh-ed25519 AAAA a@b']\n"
        "users:\n  - name: ceph\n    ssh_authorized_keys: ['ssh-rsa BBBB c@d']\n"
        "runcmd:\n  - passwd -d ubuntu\n  - touch /.teuth_provisioned\n  - [touch, /var/ready, /tmp/x]\n"
        "  - touch ../../escape\n")
    assert ud.users == ["ubuntu", "ceph"]
    assert ud.authorized_keys == ["ssh-ed25519 AAAA a@b", "ssh-rsa BBBB c@d"]
    assert ud.touch_paths == ["/.teuth_provisioned", "/var/ready", "/tmp/x", "/escape"]


@pytest.mark.parametrize("text", [None, "", "#!/bin/sh\ntouch /x\n", "#cloud-config\n: : :\n", "#cloud-config\n- a\n"])
def test_user_data_that_is_not_a_cloud_config_mapping_is_ignored(text):
    ud = parse_user_data(text)
    assert (ud.authorized_keys, ud.users, ud.touch_paths) == ([], [], [])


def test_default_config_is_the_documented_default_cloud():
    cfg = DevcloudConfig()
    assert [(u.name, u.password, u.projects) for u in cfg.users] == [("demo", "demo-password", ["demo"])]
    assert cfg.regions == ["RegionOne"] and cfg.security_groups == ["default"] and len(cfg.networks) == 1
    assert len({(f.ram, f.disk, f.vcpus) for f in cfg.flavors}) >= 4
    assert any(f.name.startswith("win-") for f in cfg.flavors)
    assert {"Ubuntu 22.04", "ubuntu-20.04-server", "CentOS-9-Stream"} <= {i.name for i in cfg.images}
    assert "demo-password" not in repr(cfg.users[0])


@pytest.mark.parametrize("yaml_text,key", [
    ("networks: [{name: n, cidr: 10.0.0.0/24}]", "networks.0.cidr"),
    ("boot_delay: -1", "boot_delay"),
    ("bogus: 1", "bogus"),
    ("faults: {errors: [{probability: 3}]}", "faults.errors.0.probability"),
    ("ssh: {port: 0}", "ssh.port"),
])
def test_bad_config_names_the_key_without_echoing_values(tmp_path, yaml_text, key):
    path = tmp_path / "devcloud.yaml"
    path.write_text(yaml_text + "\nusers: [{name: u, password: s3cret-value, projects: [demo]}]\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert key in str(err.value) and "s3cret-value" not in str(err.value)


def test_serve_refuses_a_bad_config_file_with_exit_2_and_the_key(tmp_path):
    from lablease.cli import app

    path = tmp_path / "devcloud.yaml"
    path.write_text("regions: []\n")
    result = CliRunner().invoke(app, ["devcloud", "serve", "--config", str(path)])
    assert result.exit_code == 2
    assert "regions" in result.output


def test_address_pool_skips_network_gateway_and_broadcast_and_reuses_released_addresses():
    pool = AddressPool("127.55.0.0/29")
    got = [pool.allocate() for _ in range(5)]
    assert got == ["127.55.0.2", "127.55.0.3", "127.55.0.4", "127.55.0.5", "127.55.0.6"]
    assert pool.allocate() is None
    pool.release("127.55.0.4")
    assert pool.allocate() == "127.55.0.4"


def test_fingerprint_is_nova_style_md5_and_rejects_non_keys():
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJmZ2Jpb2Jpb2Jpb2Jpb2Jpb2Jpb2Jpb2Jpb2Jp x@y"
    assert len(fingerprint(key).split(":")) == 16
    with pytest.raises(ValueError):
        fingerprint("not a key")


def test_serve_refuses_to_listen_outside_loopback():
    from lablease.cli import app

    result = CliRunner().invoke(app, ["devcloud", "serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "loopback only" in result.output


def test_the_cloud_shapes_in_docs_devcloud_md_are_valid_configs():
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "docs" / "devcloud.md").read_text()
    shapes = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)
              if block.startswith(("networks:", "domains:"))]
    assert len(shapes) == 2
    for shape in shapes:
        DevcloudConfig.model_validate(shape)


@pytest.mark.parametrize("change,key", [
    ({"networks": [{"name": "ext", "external": True}]}, "networks"),
    ({"availability_zones": []}, "availability_zones"),
    ({"projects": [{"name": "lab", "domain": "nowhere"}], "users": []}, "projects"),
    ({"users": [{"name": "u", "password": "p", "domain": "nowhere"}]}, "users"),
    ({"page_size": 0}, "page_size"),
])
def test_cloud_shape_settings_that_cannot_work_are_refused_naming_the_key(change, key):
    with pytest.raises(ValueError, match=key):
        DevcloudConfig.model_validate(change)
