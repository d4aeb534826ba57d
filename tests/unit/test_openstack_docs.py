"""docs/openstack-clouds.md's configurations pass `lablease config check` as written (a lab key added), and
the page explains every key lablease added for OpenStack clouds that are not OVH."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lablease.cli import app
from lablease.config.lab import ProviderConfig
from lablease.provision.devlab import generate_lab_key

PAGE = Path(__file__).resolve().parents[2] / "docs" / "openstack-clouds.md"
BLOCK = re.compile(r"<!-- doc-test: (?P<name>[\w.-]+) -->\s*```[^\n]*\n(?P<body>.*?)```", re.DOTALL)
NEW_KEYS = ("floating_ip_pool", "boot_from_volume", "availability_zone", "networks", "key_name", "config_drive")


def blocks() -> dict[str, str]:
    return {m["name"]: m["body"] for m in BLOCK.finditer(PAGE.read_text())}


def _check(tmp_path, monkeypatch, text: str):
    monkeypatch.setenv("HOME", str(tmp_path))
    data = yaml.safe_load(text)
    for provider in data["libcloud"]["providers"].values():
        provider["ssh_key_file"] = str(generate_lab_key(tmp_path / "lab_key"))
    path = tmp_path / "teuthology.yaml"
    path.write_text(yaml.safe_dump(data))
    return CliRunner().invoke(app, ["config", "check", "--config", str(path)])


@pytest.mark.parametrize("name", ["ovh", "private", "boot-from-volume"])
def test_each_documented_cloud_configuration_passes_config_check(name, tmp_path, monkeypatch):
    result = _check(tmp_path, monkeypatch, blocks()[name])
    assert result.exit_code == 0, result.output


def test_config_check_refuses_the_private_cloud_configuration_without_the_2x_driver(tmp_path, monkeypatch):
    text = blocks()["private"].replace("        api_version: '2.0'\n", "")
    result = _check(tmp_path, monkeypatch, text)
    assert result.exit_code == 2 and "driver_args.api_version" in result.output, result.output


def test_the_page_explains_every_new_provider_key_and_each_is_a_key_of_the_provider():
    table = PAGE.read_text().split("## The keys", 1)[1].split("## OVH", 1)[0]
    for key in NEW_KEYS:
        assert f"| `{key}` |" in table and key in ProviderConfig.model_fields
