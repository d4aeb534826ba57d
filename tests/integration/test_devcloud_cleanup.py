"""devcloud without a configured workdir removes its temporary one when stopped by SIGTERM, a boot in flight."""

from __future__ import annotations

import os
import signal

import pytest

from lablease.testing.devcloud import start_devcloud

pytestmark = pytest.mark.integration


def test_devcloud_removes_its_temporary_workdir_after_sigterm_during_a_boot(tmp_path, monkeypatch):
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))  # where devcloud's temporary workdir goes
    cloud = start_devcloud(tmp_path / "dc", {"workdir": None, "boot_delay": 30})
    try:
        driver = cloud.driver()
        image = driver.list_images()[0]
        size = sorted(driver.list_sizes(), key=lambda s: s.ram)[0]
        node = driver.create_node(name="booting", image=image, size=size)
        assert driver.ex_get_node_details(node.id).state == "pending"  # BUILD: the boot is in flight
        assert [p.name[:9] for p in temp.iterdir()] == ["devcloud-"]
        os.killpg(cloud.process.proc.pid, signal.SIGTERM)
        assert cloud.process.proc.wait(timeout=20) == 128 + signal.SIGTERM
    finally:
        cloud.stop()
    assert list(temp.iterdir()) == []
