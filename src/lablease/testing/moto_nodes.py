"""Inside the harness process: instances answer ``pending`` for a while, then ``running`` with a real sshd.

One ticker thread watches moto's backend directly: a pending instance whose delay is over becomes
running; a running instance gets an OpenSSH sshd on its 127.x address(es) (devcloud's SshdManager:
host key, the user data's ``ssh_authorized_keys`` and the key pair's key, ``DEVCLOUD_ROOT`` set to
the instance's own root directory), and what cloud-init's runcmd would ``touch`` there (the
readiness marker ``/.teuth_provisioned``); an instance that is no longer running loses its sshd and
its directory.
"""

from __future__ import annotations

import base64
import logging
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from lablease.devcloud.sshd import SshdManager, login_users
from lablease.devcloud.userdata import parse_user_data
from lablease.netutil import wait_for_port
from lablease.testing.moto_settings import require_loopback
from lablease.testing.moto_world import World

log = logging.getLogger(__name__)
TICK = 0.05


def user_data_text(instance: Any) -> str | None:
    """moto keeps user data base64-encoded, as EC2's DescribeInstanceAttribute answers it."""
    raw = getattr(instance, "user_data", None)
    if not raw:
        return None
    raw = raw[0] if isinstance(raw, list) else raw
    try:
        return base64.b64decode(str(raw)).decode("utf-8", "replace")
    except ValueError:
        return str(raw)


def host_public_key(ssh_dir: Path) -> str | None:
    """The OpenSSH public line of the host key sshd presents ("ssh-ed25519 AAAA...")."""
    path = ssh_dir / "ssh_host_ed25519_key"
    if not path.exists():
        return None
    key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


class Nodes:
    """pending -> running after the world's delay, and one sshd per running instance."""

    def __init__(self, world: World, workdir: Path):
        self.world = world
        self.workdir = workdir
        settings = world.settings
        self.ssh = settings.ssh
        self.sshd = SshdManager(settings.sshd_path, settings.ssh_port)
        self.sshd_public = SshdManager(settings.sshd_path, settings.ssh_port)
        self.due: dict[str, float] = {}  # instance id -> monotonic time it runs (the delay at its launch)
        self.errors: dict[str, str] = {}  # instance id -> why its sshd did not start (admin /instances)
        self.known: set[str] = set()  # launched through the harness (moto makes them running before that)
        self.ssh_up: dict[str, bool] = {}  # instance id -> sshd started (False: starting)
        self.lock = threading.Lock()
        self._stop = threading.Event()
        # sshd processes die with the thread that started them (parent-death signal): these
        # threads live as long as the harness.
        self._starter = ThreadPoolExecutor(max_workers=2, thread_name_prefix="moto-sshd")
        self._thread = threading.Thread(target=self._run, name="moto-nodes", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._starter.shutdown(wait=True)
        self.sshd.stop_all()
        self.sshd_public.stop_all()

    def reset(self) -> None:
        """Stop every sshd and forget every instance (the world is reset with it)."""
        with self.lock:
            self.due.clear()
            self.known.clear()
            self.ssh_up.clear()
            self.errors.clear()
        self.sshd.stop_all()
        self.sshd_public.stop_all()
        shutil.rmtree(self.workdir / "instances", ignore_errors=True)

    def launched(self, instance_ids: list[str]) -> None:
        """After a RunInstances: ``pending`` for the delay, then running (the ticker)."""
        delay = self.world.pending_seconds
        for instance_id in instance_ids:
            inst = self.world.instance(instance_id)
            with self.lock:
                if delay > 0 and inst._state.name == "running":
                    inst._state.name, inst._state.code = "pending", 0
                    self.due[instance_id] = time.monotonic() + delay
                self.known.add(instance_id)

    def finish_pending(self) -> None:
        """Every instance still pending runs at the next tick."""
        with self.lock:
            for instance_id in self.due:
                self.due[instance_id] = 0.0

    def directory(self, instance_id: str) -> Path:
        return self.workdir / "instances" / instance_id

    def details(self, instance_id: str) -> dict[str, Any]:
        with self.lock:
            up = self.ssh_up.get(instance_id, False)
            error = self.errors.get(instance_id)
        ssh_dir = self.directory(instance_id) / "ssh"
        return {"ssh_up": up, "ssh_port": self.world.settings.ssh_port if self.ssh else None,
                "root": str(self.directory(instance_id) / "root"),
                "host_key": host_public_key(ssh_dir) if up else None, "ssh_error": error}

    # --- the ticker ---------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(TICK):
            try:
                self._tick()
            except Exception:  # one bad pass must not end the ticker; it is in the harness log
                log.exception("moto harness ticker pass failed")

    def _tick(self) -> None:
        now = time.monotonic()
        for reservation in list(self.world.backend.reservations.values()):
            for inst in list(reservation.instances):
                state = inst._state.name
                with self.lock:
                    if inst.id not in self.known:
                        continue
                    due = self.due.get(inst.id)
                    if due is not None and now >= due:
                        del self.due[inst.id]
                        if state == "pending":
                            inst._state.name, inst._state.code = "running", 16
                            state = "running"
                            log.info("instance running id=%s", inst.id)
                    known = inst.id in self.ssh_up
                    if self.ssh and state == "running" and not known:
                        self.ssh_up[inst.id] = False
                        self._starter.submit(self._start_sshd_logged, inst.id)
                    elif known and state != "running":
                        del self.ssh_up[inst.id]
                        self._starter.submit(self._stop_sshd, inst.id)

    def _start_sshd_logged(self, instance_id: str) -> None:
        try:
            self._start_sshd(instance_id)
        except Exception as exc:
            log.exception("sshd start failed instance=%s", instance_id)
            with self.lock:
                self.errors[instance_id] = f"{type(exc).__name__}: {exc}"

    def _start_sshd(self, instance_id: str) -> None:
        inst = self.world.instance(instance_id)
        private = require_loopback(inst.private_ip, "instance private address")
        nic = inst.nics.get(0)
        public = require_loopback(nic.public_ip, "instance public address") if nic is not None and nic.public_ip else None
        ud = parse_user_data(user_data_text(inst))
        keys = list(ud.authorized_keys)
        pair = self.world.backend.key_pairs.get(inst.key_name) if inst.key_name else None
        material = getattr(pair, "material_public", None) or b""
        material = (material.decode() if isinstance(material, bytes) else str(material)).strip()
        if material and material not in keys:  # the key pair's key, as EC2 puts it in authorized_keys
            keys.append(material)
        base = self.directory(instance_id)
        root = base / "root"
        root.mkdir(parents=True, exist_ok=True)
        users = login_users(ud.users)
        self.sshd.start(instance_id, private, base / "ssh", keys, users, root)
        if public is not None:  # same host key on the public address, as on one machine
            (base / "ssh-public").mkdir(parents=True, exist_ok=True)
            shutil.copy2(base / "ssh" / "ssh_host_ed25519_key", base / "ssh-public" / "ssh_host_ed25519_key")
            self.sshd_public.start(instance_id, public, base / "ssh-public", keys, users, root)
        for address in filter(None, (private, public)):  # ssh_up means listening, as a client would find it
            wait_for_port(address, self.world.settings.ssh_port, timeout=20)
        for path in ud.touch_paths:  # cloud-init's runcmd `touch`, inside the instance's root
            target = root / path.lstrip("/")
            if root.resolve() in target.resolve().parents:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
        with self.lock:
            if instance_id in self.ssh_up:
                self.ssh_up[instance_id] = True
                return
        self._stop_sshd(instance_id)  # terminated while its sshd started

    def _stop_sshd(self, instance_id: str) -> None:
        self.sshd.stop(instance_id)
        self.sshd_public.stop(instance_id)
        shutil.rmtree(self.directory(instance_id), ignore_errors=True)
        log.info("sshd removed instance=%s", instance_id)
