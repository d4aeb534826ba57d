"""One OpenSSH sshd per ACTIVE server, bound to the server's address, accepting its cloud-config keys."""

from __future__ import annotations

import ctypes
import logging
import os
import pwd
import shutil
import signal
import subprocess
import threading
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
try:  # looked up once here: the forked child should only make the call, not load libraries
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent() -> None:
    # sshd runs in its own session (so its group can be stopped alone); the parent-death
    # signal makes it exit even when devcloud itself is killed with SIGKILL.
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def login_users(cloud_config_users: list[str]) -> list[str]:
    """Accounts sshd lets in: devcloud's own account, and as root also existing user-data users."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    users = [me]
    if os.geteuid() == 0:
        for name in cloud_config_users:
            try:
                pwd.getpwnam(name)
            except KeyError:
                log.info("ssh user=%s does not exist here; logins go to %s", name, me)
                continue
            if name not in users:
                users.append(name)
    return users


class SshdManager:
    """Starts and stops the per-server sshd processes; all of them stop when devcloud stops."""

    def __init__(self, sshd_path: str, port: int):
        self.sshd_path = sshd_path
        self.port = port
        self._procs: dict[str, subprocess.Popen] = {}
        self._roots: dict[str, Path] = {}
        self._lock = threading.Lock()

    def start(self, server_id: str, address: str, directory: Path, authorized_keys: list[str],
              users: list[str], root: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        host_key = directory / "ssh_host_ed25519_key"
        if not host_key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"devcloud-{server_id}",
                            "-f", str(host_key)], check=True, capture_output=True)
        keys_file = directory / "authorized_keys"
        keys_file.write_text("".join(k + "\n" for k in authorized_keys))
        keys_file.chmod(0o644)
        config = directory / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {address}:{self.port}",
            f"HostKey {host_key}",
            *self._key_lines(keys_file),
            f"PidFile {directory / 'sshd.pid'}",
            "UsePAM no",
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            f"AllowUsers {' '.join(users)}",
            # HOME is the server's own directory, as on a fresh node: the host account's shell
            # start-up files (pyenv init, say) would otherwise run on every command, ~0.2 s each.
            f"SetEnv DEVCLOUD_ROOT={root} HOME={root}",
            "PrintMotd no",
            "LogLevel INFO",
            "",
        ]))
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        log_file = open(directory / "sshd.log", "ab")
        try:
            proc = subprocess.Popen([self.sshd_path, "-D", "-e", "-f", str(config)], stdout=log_file,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            log_file.close()
        with self._lock:
            self._procs[server_id] = proc
            self._roots[server_id] = root
        log.info("sshd started server=%s address=%s port=%d pid=%d", server_id, address, self.port, proc.pid)

    @staticmethod
    def _key_lines(keys_file: Path) -> list[str]:
        if os.geteuid() != 0:
            return [f"AuthorizedKeysFile {keys_file}"]
        # As root, sshd reads the keys file as the user logging in, who may not reach devcloud's
        # private work directory; root reads it for them instead.
        cat = shutil.which("cat") or "/usr/bin/cat"
        return ["AuthorizedKeysFile none", f"AuthorizedKeysCommand {cat} {keys_file}",
                "AuthorizedKeysCommandUser root"]

    def stop(self, server_id: str) -> None:
        """Stop the server's sshd and every command still running in its sessions.

        Session shells run in sessions of their own, so killing sshd's process group leaves them
        behind; on a real cloud they die with the node, here they are found by their environment.
        """
        with self._lock:
            proc = self._procs.pop(server_id, None)
            root = self._roots.pop(server_id, None)
        if proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        killed = kill_session_processes(root) if root is not None else 0
        log.info("sshd stopped server=%s session_processes_killed=%d", server_id, killed)

    def stop_all(self) -> None:
        with self._lock:
            ids = list(self._procs)
        for server_id in ids:
            self.stop(server_id)

    def running(self) -> list[str]:
        with self._lock:
            return [sid for sid, p in self._procs.items() if p.poll() is None]


def kill_session_processes(root: Path) -> int:
    """SIGKILL every process whose environment carries ``DEVCLOUD_ROOT=<root>``; return how many."""
    marker = b"\0DEVCLOUD_ROOT=" + os.fsencode(str(root)) + b"\0"
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = b"\0" + (entry / "environ").read_bytes()
        except OSError:  # gone already, or not ours to read
            continue
        if marker in environ:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed
