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
from typing import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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


_death_signal_prefix: list[str] | None = None


def _with_death_signal() -> tuple[list[str], Callable[[], None] | None]:
    """(argv prefix, preexec_fn) that give sshd its parent-death signal.

    util-linux's ``setpriv --pdeathsig`` sets it and execs sshd, so Popen needs no preexec_fn and
    can spawn with vfork; a preexec_fn forces a full fork of devcloud (page tables of every
    thread's memory) and Python code in the child, for each of hundreds of servers. Without a
    working setpriv, the preexec_fn does it as before.
    """
    global _death_signal_prefix
    if _death_signal_prefix is None:
        setpriv = shutil.which("setpriv")
        works = setpriv is not None and subprocess.run([setpriv, "--pdeathsig", "TERM", "--", "true"],
                                                       capture_output=True).returncode == 0
        _death_signal_prefix = [setpriv, "--pdeathsig", "TERM", "--"] if works else []
    return (_death_signal_prefix, None) if _death_signal_prefix else ([], _die_with_parent)


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
        self._reexec_flag: list[str] | None = None

    def start(self, server_id: str, address: str | list[str], directory: Path, authorized_keys: list[str],
              users: list[str], root: Path) -> None:
        """Start the server's sshd on ``address`` (one, or several: its fixed and floating addresses).

        The host key is kept in ``directory``: a restart (a floating IP associated) keeps the server's identity."""
        addresses = [address] if isinstance(address, str) else list(address)
        directory.mkdir(parents=True, exist_ok=True)
        host_key = directory / "ssh_host_ed25519_key"
        if not host_key.exists():
            write_host_key(host_key)
        keys_file = directory / "authorized_keys"
        keys_file.write_text("".join(k + "\n" for k in authorized_keys))
        keys_file.chmod(0o644)
        config = directory / "sshd_config"
        config.write_text("\n".join([
            *(f"ListenAddress {a}:{self.port}" for a in addresses),
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
        prefix, preexec = _with_death_signal()
        log_file = open(directory / "sshd.log", "ab")
        try:
            proc = subprocess.Popen([*prefix, self.sshd_path, "-D", "-e", *self._no_reexec(config), "-f", str(config)],
                                    stdout=log_file,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, preexec_fn=preexec)
        finally:
            log_file.close()
        with self._lock:
            self._procs[server_id] = proc
            self._roots[server_id] = root
        log.info("sshd started server=%s address=%s port=%d pid=%d", server_id, ",".join(addresses), self.port,
                 proc.pid)

    def _no_reexec(self, config: Path) -> list[str]:
        """``["-r"]`` when this sshd takes it: no re-exec of sshd for every connection.

        A re-exec costs ~13 ms of CPU per connection (sshd loads and parses everything again),
        ten times the connection itself; 200 nodes make 200 logins at once. Newer OpenSSH (9.8
        on) execs a separate sshd-session per connection and need not take the flag, so it is
        tried once (``sshd -t -r``) and left out where refused.
        """
        if self._reexec_flag is None:
            test = subprocess.run([self.sshd_path, "-t", "-r", "-f", str(config)], capture_output=True)
            self._reexec_flag = ["-r"] if test.returncode == 0 else []
        return self._reexec_flag

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


def write_host_key(path: Path) -> None:
    """A fresh Ed25519 host key in OpenSSH format, mode 0600 (sshd refuses readable host keys).

    Made in-process: running ssh-keygen for each of 200 servers cost a fork and exec each, in the
    one thread that starts every server's sshd.
    """
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


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
