"""Delayed transitions of a real cloud: BUILD → ACTIVE/ERROR, sshd start, cloud-init runcmd, volume states."""

from __future__ import annotations

import logging
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lablease.devcloud import console
from lablease.devcloud.sshd import SshdManager, login_users
from lablease.devcloud.state import Cloud, Server, Volume, utcnow
from lablease.devcloud.userdata import parse_user_data

log = logging.getLogger(__name__)

NO_VALID_HOST = "No valid host was found. There are not enough hosts available."


class Lifecycle:
    """Owns the ticker thread that runs due events and the sshd processes of the servers."""

    def __init__(self, cloud: Cloud):
        self.cloud = cloud
        ssh = cloud.config.ssh
        self.sshd = SshdManager(ssh.sshd_path, ssh.port)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="devcloud-ticker", daemon=True)
        # sshd starts run beside the ticker, not in it: 200 servers that run at once would wait
        # for each other's fork and exec while volume transitions wait behind all of them. The
        # pool's threads live until stop(), as the parent-death signal of their sshds needs.
        self._starter = ThreadPoolExecutor(max_workers=4, thread_name_prefix="devcloud-sshd")
        self._ssh_locks: dict[str, threading.Lock] = {}  # one (re)start of a server's sshd at a time
        self._ssh_locks_guard = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._starter.shutdown(wait=True, cancel_futures=True)
        self.sshd.stop_all()

    def _run(self) -> None:
        # sshd processes are started from this long-lived thread, because their parent-death
        # signal fires when the thread that started them ends.
        while not self._stop.wait(0.02):
            for action in self.cloud.due_events():
                try:
                    action()
                except Exception:  # one failed transition must not stop the cloud's clock
                    log.exception("devcloud event failed")

    # --- servers ----------------------------------------------------------------------------
    def server_created(self, server: Server, fails: bool, message: str | None) -> None:
        self.cloud.schedule(self.cloud.config.boot_delay, lambda: self._boot(server.id, fails, message))

    def _boot(self, server_id: str, fails: bool, message: str | None) -> None:
        cloud = self.cloud
        with cloud.lock:
            server = cloud.servers.get(server_id)
            if server is None or server.status != "BUILD":
                return
            server.updated = utcnow()
            server.task_state = None
            console.kernel(server)
            fault = console.boot_fault(cloud.faults.boot_error, server.name)
            if fault is not None:
                console.write(server, fault.console)
                fails = fails or fault.mode == "error"
            if fails:
                server.status = "ERROR"
                server.fault = {"code": 500, "message": message or NO_VALID_HOST, "created": server.updated}
                log.info("server error id=%s", server_id)
                return
            server.status = "ACTIVE"
        log.info("server active id=%s name=%s", server_id, server.name)
        if fault is not None:  # no_ssh: it runs, and never answers
            log.info("server never gets ssh id=%s", server_id)
            return
        ssh = cloud.config.ssh
        if ssh.enabled:
            cloud.schedule(ssh.delay, lambda: self._starter.submit(self._start_sshd_logged, server_id))
        else:
            cloud.schedule(ssh.runcmd_delay, lambda: self._runcmd(server_id))

    def _start_sshd_logged(self, server_id: str) -> None:
        try:
            self._start_sshd(server_id)
        except Exception:  # as the ticker does: one failed start must not go unseen
            log.exception("devcloud sshd start failed server=%s", server_id)

    def _start_sshd(self, server_id: str) -> None:
        """sshd on the server's reachable addresses (none: no sshd yet; cloud-init runs all the same)."""
        cloud = self.cloud
        with cloud.lock:
            server = cloud.servers.get(server_id)
            if server is None or server.status != "ACTIVE":
                return
            server.ssh_due = True
        ud = self._restart_sshd(server_id)
        if ud is not None:
            cloud.schedule(cloud.config.ssh.runcmd_delay, lambda: self._runcmd(server_id, ud.touch_paths))

    def addresses_changed(self, server_id: str) -> None:
        """A floating IP was associated or released: sshd moves to the server's reachable addresses now."""
        if self.cloud.config.ssh.enabled:
            self._starter.submit(self._restart_logged, server_id)

    def _restart_logged(self, server_id: str) -> None:
        try:
            with self.cloud.lock:
                server = self.cloud.servers.get(server_id)
                due = server is not None and server.ssh_due
            if due:  # before that, the pending start finds the new addresses itself
                self._restart_sshd(server_id)
        except Exception:
            log.exception("devcloud sshd restart failed server=%s", server_id)

    def _restart_sshd(self, server_id: str):
        """Stop the server's sshd and start it on its reachable addresses; the parsed user data, or None."""
        with self._ssh_locks_guard:
            lock = self._ssh_locks.setdefault(server_id, threading.Lock())
        with lock:
            cloud = self.cloud
            with cloud.lock:
                server = cloud.servers.get(server_id)
                if server is None or server.status != "ACTIVE":
                    return None
                user_data = server.user_data
                kp = cloud.keypairs.get((server.user_id, server.key_name)) if server.key_name else None
                addresses = cloud.reachable_addresses(server)
                root = server.root
            ud = parse_user_data(user_data)  # outside the lock: every request waits on it
            keys = list(ud.authorized_keys)
            if kp and kp.public_key.strip() not in keys:
                keys.append(kp.public_key.strip())
            assert root is not None
            self.sshd.stop(server_id)
            if addresses:
                self.sshd.start(server_id, addresses, root.parent / "ssh", keys, login_users(ud.users), root)
            with cloud.lock:
                if server_id not in cloud.servers:  # deleted while sshd was starting
                    self.sshd.stop(server_id)
                    return None
                cloud.servers[server_id].ssh_up = bool(addresses)
            log.info("sshd addresses server=%s addresses=%s", server_id, ",".join(addresses) or "-")
            return ud

    def _runcmd(self, server_id: str, paths: list[str] | None = None) -> None:
        """What cloud-init's runcmd would leave behind: the files that `touch` commands name.

        ``paths``: the user data's touch paths when the caller has read them already."""
        with self.cloud.lock:
            server = self.cloud.servers.get(server_id)
            if server is None or server.root is None:
                return
            user_data = server.user_data
            root = server.root
        if paths is None:
            paths = parse_user_data(user_data).touch_paths
        with self.cloud.lock:
            if server_id in self.cloud.servers:
                console.cloud_init(self.cloud.servers[server_id])
        for path in paths:
            target = root / path.lstrip("/")
            if root.resolve() not in target.resolve().parents:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
            log.info("runcmd touch server=%s path=%s", server_id, path)

    def server_deleted(self, server: Server) -> None:
        self.sshd.stop(server.id)
        with self._ssh_locks_guard:
            self._ssh_locks.pop(server.id, None)
        if server.root is not None:
            shutil.rmtree(server.root.parent, ignore_errors=True)

    def server_root(self, server_id: str) -> Path:
        root = self.cloud.workdir / "servers" / server_id / "root"
        root.mkdir(parents=True, exist_ok=True)
        return root

    # --- volumes ----------------------------------------------------------------------------
    def volume_created(self, volume: Volume, fails: bool) -> None:
        self._later(volume.id, "creating", "error" if fails else "available")

    def boot_volume_attached(self, volume: Volume) -> None:
        """A boot volume Nova made (creating) or took (attaching) is in-use once the volume delay passed."""
        self._later(volume.id, volume.status, "in-use")

    def _later(self, volume_id: str, expect: str, status: str, clear_attachments: bool = False) -> None:
        def transition() -> None:
            with self.cloud.lock:
                volume = self.cloud.volumes.get(volume_id)
                if volume is None or volume.status != expect:
                    return
                volume.status = status
                if clear_attachments:
                    volume.attachments.clear()
                log.info("volume id=%s status=%s", volume_id, status)
        self.cloud.schedule(self.cloud.config.volume_delay, transition)

    def volume_attaching(self, volume: Volume, fails: bool) -> None:
        # A failed attach ends as Nova leaves it: the volume back to available, not attached.
        if fails:
            self._later(volume.id, "attaching", "available", clear_attachments=True)
        else:
            self._later(volume.id, "attaching", "in-use")

    def volume_detaching(self, volume: Volume) -> None:
        self._later(volume.id, "detaching", "available", clear_attachments=True)
