"""A moto EC2 endpoint that answers as EC2 does, on loopback, for tests, the demo and benchmarks.

``start_moto_ec2(workdir, settings)`` runs ``python -m lablease.testing.moto_serve`` (moto's own WSGI
app behind the harness's middleware, see ``moto_fixes``) on a free 127.0.0.1 port and returns a
``MotoEc2Handle``:

- ``endpoint`` / ``host`` / ``port``; ``driver_args()`` for ``libcloud: providers: X: {driver: ec2,
  driver_args: ...}`` (stock EC2NodeDriver, SigV4); ``driver()`` builds one.
- ``admin``: delays (``set_delays``), fault rules by EC2 Action (``add_fault``, ``set_faults``,
  ``clear_faults``), request counts.
- ``instances()`` / ``volumes()``: what moto holds (terminated instances too), with each running
  instance's sshd state, root directory and host key.
- ``network``: the VPC and the 127.x subnet every instance lives in; ``ssh_port``.
- ``stop()``: stops every sshd, the process, and removes its directory. Stopping the test
  process with SIGTERM stops it too (it runs in its own process group; ``ServerProcess``).

Every address the harness hands out or listens on is in 127.0.0.0/8 (``require_loopback``).
The readiness command for its instances is ``READY_COMMAND`` (the marker inside the instance's
root directory, as for devcloud).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lablease.netutil import free_port
from lablease.testing.components import MissingComponent, require_file
from lablease.testing.moto_settings import MotoSettings, require_loopback
from lablease.testing.processes import ServerProcess

ADMIN = "/moto-harness/admin"
READY_COMMAND = 'test -e "${DEVCLOUD_ROOT:-}/.teuth_provisioned"'
ACCESS_KEY = "AKIAMOTOHARNESS00001"
SECRET_KEY = "moto-harness-secret"  # moto checks no signature; a fixed pair keeps configs simple


class MotoAdmin:
    """The harness's admin API (``moto_admin``): delays, faults, request counts."""

    def __init__(self, url: str):
        self.url = url

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        resp = httpx.request(method, f"{self.url}{ADMIN}{path}", json=json, timeout=10)
        if resp.status_code >= 400:
            raise RuntimeError(f"moto harness admin {method} {path}: {resp.status_code} {resp.text}")
        return resp.json()

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def set_delays(self, pending: float | None = None, volume_creating: float | None = None) -> dict[str, float]:
        """Seconds a new instance answers ``pending`` / a new volume ``creating`` (from now on: those
        already waiting keep the delay they were made with; ``finish_waits`` ends theirs)."""
        body: dict[str, float] = {}
        if pending is not None:
            body["pending_seconds"] = pending
        if volume_creating is not None:
            body["volume_creating_seconds"] = volume_creating
        return self._call("PUT", "/delays", body)

    def finish_waits(self) -> None:
        """Every instance still pending runs now (its sshd follows), every volume still creating is available.

        With a long delay, a test holds them there, looks, then lets them go: no timed assertion.
        """
        self._call("POST", "/delays/finish")

    def add_fault(self, action: str, kind: str, *, count: int | None = None, probability: float = 1.0,
                  mode: str = "reset", message: str | None = None) -> dict[str, Any]:
        """One more fault rule (see ``moto_faults.FaultRule``): e.g. ``add_fault("RunInstances", "throttle", count=2)``.

        kinds: throttle, capacity, instance_limit, volume_limit, bad_ami, bad_parameter, internal,
        unavailable, and lost (the action is carried out; mode "reset" cuts the connection, "error"
        answers 500 InternalError).
        """
        rule = {"action": action, "kind": kind, "count": count, "probability": probability, "mode": mode,
                "message": message}
        return self._call("POST", "/faults", rule)

    def set_faults(self, rules: list[dict[str, Any]], seed: int | None = None) -> dict[str, Any]:
        return self._call("PUT", "/faults", {"rules": rules, "seed": seed})

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "/faults")

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def request_counts(self) -> dict[str, int]:
        return self._call("GET", "/requests")["counts"]

    def reset_counts(self) -> None:
        self._call("DELETE", "/requests")


@dataclass
class MotoEc2Handle:
    """A running harness: where it is, how libcloud reaches it, what moto holds."""

    host: str
    port: int
    settings: MotoSettings
    workdir: Path
    network: dict[str, Any]
    moto_version: str
    process: ServerProcess = field(repr=False)
    base_settings: MotoSettings = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.base_settings = self.settings

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def admin(self) -> MotoAdmin:
        return MotoAdmin(self.endpoint)

    @property
    def region(self) -> str:
        return self.settings.region

    @property
    def ssh_port(self) -> int:
        return self.settings.ssh_port

    @property
    def images(self) -> list[dict[str, Any]]:
        return self.settings.amis

    def driver_args(self) -> dict[str, Any]:
        """Seed-style ``driver_args`` for libcloud's stock EC2NodeDriver (SigV4, plain HTTP on loopback)."""
        return {"key": ACCESS_KEY, "secret": SECRET_KEY, "region": self.region, "host": self.host,
                "port": self.port, "secure": False, "signature_version": "4"}

    def driver(self) -> Any:
        from libcloud.compute.drivers.ec2 import EC2NodeDriver

        args = self.driver_args()
        return EC2NodeDriver(args.pop("key"), args.pop("secret"), **args)

    def instances(self) -> list[dict[str, Any]]:
        """Every instance moto holds (terminated ones too): id, state, addresses, tags, volumes, sshd, host key."""
        return self.admin._call("GET", "/instances")

    def volumes(self) -> list[dict[str, Any]]:
        return self.admin._call("GET", "/volumes")

    def reset(self, **overrides: Any) -> None:
        """Back to the state just after start: moto emptied, a new VPC and subnet (same 127.x cidr), every
        sshd stopped, faults, delays and request counts as in the settings.

        ``overrides`` (public_ips, pending_seconds, volume_creating_seconds, faults, seed, max_instances) hold until
        the next reset, e.g. ``reset(public_ips="loopback")``.
        """
        resp = httpx.post(f"{self.endpoint}{ADMIN}/reset", json=overrides, timeout=30)
        if resp.status_code >= 400:
            raise RuntimeError(f"moto harness reset: {resp.status_code} {resp.text}")
        self.network = resp.json()
        self.settings = dataclasses.replace(self.base_settings, **overrides)

    def alive(self) -> bool:
        return self.process.alive()

    def log_tail(self, chars: int = 4000) -> str:
        return self.process.log_tail(chars)

    def stop(self) -> None:
        """Stop the harness (its sshds first: SIGTERM) and remove its directory."""
        self.process.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_moto_ec2(workdir: Path, settings: MotoSettings | None = None, timeout: float = 60.0) -> MotoEc2Handle:
    """Start the harness in ``workdir`` and wait until its admin API answers.

    MissingComponent when moto (``moto[server]``, the test extras) or, with SSH on, sshd is missing.
    """
    settings = settings or MotoSettings()
    try:
        import moto  # noqa: F401  (checked here: the harness process would only die with it)
        import flask  # noqa: F401
    except ImportError as exc:
        raise MissingComponent(f"moto's server is not installed ({exc}); run `make install` "
                               "(pip install -e '.[test]' installs moto[server])") from exc
    if settings.ssh:
        require_file(settings.sshd_path, package="openssh-server", what="OpenSSH's sshd (one per running instance)")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "settings.json").write_text(settings.to_json())
    host = require_loopback("127.0.0.1", "harness address")
    port = free_port(host)
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    src = str(Path(__file__).resolve().parents[2])  # the harness process imports this same lablease
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    proc = ServerProcess([sys.executable, "-m", "lablease.testing.moto_serve", "--settings",
                          str(workdir / "settings.json"), "--workdir", str(workdir), "--host", host,
                          "--port", str(port), "--parent-pid", str(os.getpid())], log_path=workdir / "moto.log", env=env)
    proc.start()
    try:
        proc.wait_for_port(host, port, timeout=timeout)
        health = MotoAdmin(f"http://{host}:{port}").health()
    except BaseException:  # Ctrl-C while it starts must not leave it running either
        proc.stop()
        raise
    return MotoEc2Handle(host=host, port=port, settings=settings, workdir=workdir, network=health["network"],
                         moto_version=health["moto"], process=proc)
