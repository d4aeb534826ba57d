"""Real OpenSSH per ACTIVE server: keys from cloud-config, delays, readiness marker, clean stop."""

from __future__ import annotations

import getpass
import os
import signal
import socket
from pathlib import Path

import paramiko
import pytest

from lablease.testing.waiting import wait_until

pytestmark = pytest.mark.integration

READY = 'test -e "${DEVCLOUD_ROOT:-}/.teuth_provisioned"'
SSH = {"ssh": {"enabled": True, "delay": 0.5, "runcmd_delay": 3.0}, "boot_delay": 2.0}


def user_data(public_key: str) -> str:
    return ("#cloud-config\nuser: ubuntu\nssh_authorized_keys:\n  - " + public_key + "\n"
            "runcmd:\n  - [passwd, -d, ubuntu]\n  - touch /.teuth_provisioned\n")


def refused(address: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((address, port)) != 0


def login(address: str, port: int, key: paramiko.PKey) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(address, port=port, username=getpass.getuser(), pkey=key, look_for_keys=False,
                   allow_agent=False, timeout=5, banner_timeout=5, auth_timeout=5)
    return client


def run(client: paramiko.SSHClient, command: str) -> int:
    _, stdout, _ = client.exec_command(command, timeout=5)
    return stdout.channel.recv_exit_status()


def test_server_accepts_its_cloud_config_key_only_after_boot_and_shows_the_marker_after_runcmd(devcloud_factory):
    cloud = devcloud_factory(SSH)
    key = paramiko.RSAKey.generate(2048)
    other = paramiko.RSAKey.generate(2048)
    driver = cloud.driver()
    node = driver.create_node(name="ssh1", size=driver.list_sizes()[0], image=driver.list_images()[0],
                              ex_userdata=user_data(f"{key.get_name()} {key.get_base64()} test@devcloud"))
    address, port = driver.ex_get_node_details(node.id).public_ips[0], cloud.ssh_port
    assert driver.ex_get_node_details(node.id).extra["vm_state"] == "building"
    assert refused(address, port)  # before boot
    root = Path(cloud.server_internals(node.id)["root"])
    assert not (root / ".teuth_provisioned").exists()

    wait_until(lambda: not refused(address, port), what="sshd to listen", timeout=20)
    assert driver.ex_get_node_details(node.id).state == "running"  # sshd only comes after ACTIVE

    with pytest.raises(paramiko.AuthenticationException):
        login(address, port, other)
    client = login(address, port, key)
    try:
        assert run(client, READY) == 1  # booted, but cloud-init's runcmd has not run yet
        wait_until(lambda: run(client, READY) == 0, what="cloud-init's runcmd to finish", timeout=20, interval=0.1)
        assert run(client, 'test -n "$DEVCLOUD_ROOT" && test -d "$DEVCLOUD_ROOT"') == 0
        # A fresh node's home, not the host account's (whose shell start-up files cost 0.2 s a command).
        assert run(client, 'test "$HOME" = "$DEVCLOUD_ROOT"') == 0
    finally:
        client.close()

    driver.destroy_node(node)
    assert refused(address, port)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_no_sshd_survives_devcloud_stopping(devcloud_factory, how):
    cloud = devcloud_factory({**SSH, "ssh": {"enabled": True, "delay": 0, "runcmd_delay": 0}, "boot_delay": 0.1})
    driver = cloud.driver()
    node = driver.create_node(name="s", size=driver.list_sizes()[0], image=driver.list_images()[0],
                              ex_userdata=user_data("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMu8pNzZ5Ww0 x"))
    wait_until(lambda: cloud.server_internals(node.id)["ssh_up"], what="the server's sshd to be up",
               timeout=20)
    pid_file = Path(cloud.server_internals(node.id)["root"]).parent / "ssh" / "sshd.pid"
    wait_until(lambda: pid_file.exists(), what="sshd's pid file", timeout=5)
    pid = int(pid_file.read_text())
    os.kill(pid, 0)  # running
    if how == "SIGKILL":  # no clean shutdown: the parent-death signal must still stop sshd
        os.killpg(cloud.process.proc.pid, signal.SIGKILL)
    cloud.stop()
    def sshd_gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(sshd_gone, what="sshd to end with devcloud", timeout=5)


# A deliberate skip, not a missing component: only a root sshd can switch to another account, and CI runs as root.
@pytest.mark.skipif(os.geteuid() != 0, reason="only a root sshd can log in other accounts (CI runs as root)")
def test_as_root_the_user_data_user_may_log_in_if_that_account_exists(devcloud_factory):
    cloud = devcloud_factory({"ssh": {"enabled": True, "delay": 0, "runcmd_delay": 0}, "boot_delay": 0.1})
    key = paramiko.RSAKey.generate(2048)
    driver = cloud.driver()
    ud = f"#cloud-config\nuser: nobody\nssh_authorized_keys: ['{key.get_name()} {key.get_base64()}']\n"
    node = driver.create_node(name="u", size=driver.list_sizes()[0], image=driver.list_images()[0], ex_userdata=ud)
    address = driver.ex_get_node_details(node.id).public_ips[0]
    wait_until(lambda: not refused(address, cloud.ssh_port), what="sshd to listen", timeout=20)

    def authenticates(user: str) -> bool:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(address, port=cloud.ssh_port, username=user, pkey=key, look_for_keys=False,
                           allow_agent=False, timeout=5, banner_timeout=5, auth_timeout=5)
            return True
        except paramiko.AuthenticationException:
            return False
        finally:
            client.close()

    assert authenticates("nobody")  # named in user-data and exists here
    assert authenticates("root")  # devcloud's own account
    assert not authenticates("daemon")  # exists, but the user-data does not name it


def _processes_with_root(root: str) -> list[int]:
    marker = b"\0DEVCLOUD_ROOT=" + root.encode() + b"\0"
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in b"\0" + (entry / "environ").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_commands_left_running_on_a_node_die_with_the_node(devcloud_factory):
    cloud = devcloud_factory({"ssh": {"enabled": True, "delay": 0, "runcmd_delay": 0}, "boot_delay": 0.1})
    key = paramiko.RSAKey.generate(2048)
    driver = cloud.driver()
    node = driver.create_node(name="busy", size=driver.list_sizes()[0], image=driver.list_images()[0],
                              ex_userdata=user_data(f"{key.get_name()} {key.get_base64()} t"))
    address = driver.ex_get_node_details(node.id).public_ips[0]
    wait_until(lambda: not refused(address, cloud.ssh_port), what="sshd to listen", timeout=20)
    root = cloud.server_internals(node.id)["root"]
    client = login(address, cloud.ssh_port, key)
    client.exec_command("sleep 600")  # a session shell sits in a session of its own, not in sshd's group
    client.close()  # closing the channel does not stop it: no pty, no SIGHUP
    wait_until(lambda: _processes_with_root(root), what="the command to start", timeout=5)

    driver.destroy_node(node)
    wait_until(lambda: not _processes_with_root(root), what="no command outliving its node", timeout=10)
