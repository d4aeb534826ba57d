"""Start devcloud as a subprocess on a free loopback port and drive its admin API (tests, demo, bench)."""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from lablease.netutil import free_port
from lablease.testing.components import require_file
from lablease.testing.processes import ServerProcess

ADMIN = "/devcloud/admin"
# The private-network shape (docs/devcloud.md): servers on a network whose addresses never answer SSH, and a floating
# IP pool "ext-net" whose addresses do once associated. start_devcloud gives each its own random 127.x.y.0/24.
PRIVATE_NETWORK: dict[str, Any] = {"networks": [{"name": "private", "public": False, "reachable": False},
                                                {"name": "ext-net", "external": True}]}


@dataclass
class DevcloudHandle:
    """A running devcloud: where it is, how libcloud reaches it, and its admin operations."""

    url: str  # http://127.0.0.1:PORT
    config: dict[str, Any]
    workdir: Path
    process: ServerProcess = field(repr=False)
    username: str = "demo"
    password: str = field(default="demo-password", repr=False)
    project: str = "demo"
    region: str = "RegionOne"

    @property
    def auth_url_v2(self) -> str:
        """What libcloud's ex_force_auth_url needs for 2.0_password: the base URL (libcloud appends /v2.0/tokens)."""
        return self.url

    @property
    def auth_url_v3(self) -> str:
        """What libcloud's ex_force_auth_url needs for 3.x_password: the base URL (libcloud appends /v3/auth/tokens)."""
        return self.url

    def driver_args(self, auth_version: str = "2.0_password", api_version: str | None = None) -> dict[str, Any]:
        """A seed-style `driver_args` dict for libcloud's OpenStack driver."""
        args: dict[str, Any] = {
            "username": self.username, "password": self.password,
            "ex_force_auth_url": self.auth_url_v3 if auth_version.startswith("3") else self.auth_url_v2,
            "ex_force_auth_version": auth_version, "ex_tenant_name": self.project,
            "ex_force_service_region": self.region,
        }
        if api_version is not None:
            args["api_version"] = api_version
        return args

    def driver(self, auth_version: str = "2.0_password", api_version: str | None = None, **extra: Any):
        """A libcloud OpenStack driver built from driver_args (username and password positional); ``extra``
        adds or replaces driver_args (``ex_domain_name``, ``ex_tenant_domain_id``, ``username``...)."""
        from libcloud.compute.providers import get_driver
        from libcloud.compute.types import Provider

        args = {**self.driver_args(auth_version, api_version), **extra}
        return get_driver(Provider.OPENSTACK)(args.pop("username"), args.pop("password"), **args)

    @property
    def ssh_port(self) -> int:
        return int((self.config.get("ssh") or {}).get("port", 2222))

    def _admin(self, method: str, path: str, json: Any = None) -> httpx.Response:
        resp = httpx.request(method, f"{self.url}{ADMIN}{path}", json=json, timeout=10)
        resp.raise_for_status()
        return resp

    def resources(self) -> dict[str, Any]:
        return self._admin("GET", "/resources").json()

    def request_counts(self) -> dict[str, int]:
        return self._admin("GET", "/requests").json()["counts"]

    def reset_counts(self) -> None:
        self._admin("DELETE", "/requests")

    def set_faults(self, spec: dict[str, Any]) -> None:
        self._admin("PUT", "/faults", json=spec)

    def clear_faults(self) -> None:
        self._admin("DELETE", "/faults")

    def revoke_tokens(self) -> None:
        """Forget every token: each client's next call answers 401 and it must authenticate again."""
        self._admin("DELETE", "/tokens")

    def server_internals(self, server_id: str) -> dict[str, Any]:
        """devcloud's view of one server: its root directory (readiness markers), ssh state, addresses (and
        ``ssh_addresses``: where its sshd listens, floating IPs included)."""
        return self._admin("GET", f"/servers/{server_id}").json()

    def floating_ips(self) -> list[dict[str, Any]]:
        """Every floating IP allocated (any project): id, address, server_id, description, status."""
        return self.resources()["floating_ips"]

    def log_tail(self, chars: int = 4000) -> str:
        return self.process.log_tail(chars)

    def stop(self) -> None:
        self.process.stop()


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def start_devcloud(workdir: Path, config: dict[str, Any] | None = None, timeout: float = 30.0) -> DevcloudHandle:
    """Run `python -m lablease devcloud serve --config <file> --port <free>` and wait until it answers.

    With SSH on, a missing sshd raises MissingComponent (naming openssh-server) before anything starts.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = _merge({"workdir": str(workdir / "state")}, config or {})
    # Devclouds of parallel test runs must not hand out the same address: their sshd processes would fight over
    # ADDRESS:PORT. A random /24 inside 127/8 keeps them apart: for the default network, and for each configured
    # network that names no cidr (a private network and its floating IP pool, say).
    rnd = random.SystemRandom()
    second, third = rnd.randint(101, 254), rnd.randint(0, 250)
    if "networks" not in cfg:
        cfg["networks"] = [{"name": "public"}]
    cfg["networks"] = [net if "cidr" in net else {**net, "cidr": f"127.{second}.{third + i}.0/24"}
                       for i, net in enumerate(cfg["networks"])]
    ssh = cfg.get("ssh") or {}
    if ssh.get("enabled"):  # else every server's sshd would fail in devcloud's log and the test time out
        require_file(ssh.get("sshd_path", "/usr/sbin/sshd"), package="openssh-server",
                     what="OpenSSH's sshd (devcloud runs one per server)")
    config_file = workdir / "devcloud.yaml"
    config_file.write_text(yaml.safe_dump(cfg))
    port = free_port()
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    proc = ServerProcess([sys.executable, "-m", "lablease", "devcloud", "serve", "--config", str(config_file),
                          "--host", "127.0.0.1", "--port", str(port)], log_path=workdir / "devcloud.log", env=env)
    proc.start()
    try:
        proc.wait_for_port("127.0.0.1", port, timeout=timeout)
    except BaseException:  # Ctrl-C while it starts must not leave it running either
        proc.stop()
        raise
    user = (cfg.get("users") or [{}])[0]
    handle = DevcloudHandle(url=f"http://127.0.0.1:{port}", config=cfg, workdir=workdir, process=proc)
    if user.get("name"):
        handle.username, handle.password = user["name"], user.get("password", "")
        handle.project = (user.get("projects") or ["demo"])[0]
    if cfg.get("regions"):
        handle.region = cfg["regions"][0]
    return handle
