"""Readiness over SSH: log in with the lab key, run the ready command, capture the host key.

No fixed sleep: connection attempts back off from a fraction of a second, bounded by the timeout.
The host key is taken on first contact (the node is brand new, nothing is known about it yet)
and handed back so that the lab can pin it for everyone who logs in later.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import paramiko

from lablease.provision.errors import ProvisionError, Stage

log = logging.getLogger(__name__)


def load_private_key(path: str | Path, passphrase: str | None = None) -> paramiko.PKey:
    """The lab's private key (RSA, ECDSA or Ed25519)."""
    return paramiko.PKey.from_path(str(Path(path).expanduser()), password=passphrase)


def public_key_line(key: paramiko.PKey, comment: str = "lablease") -> str:
    """The OpenSSH public key line of ``key``, for cloud-config ``ssh_authorized_keys``."""
    return f"{key.get_name()} {key.get_base64()} {comment}"


class _RecordHostKey(paramiko.MissingHostKeyPolicy):
    """Accept the (new) server's key; the caller reads it from the transport afterwards."""

    def missing_host_key(self, client, hostname, key) -> None:  # noqa: D401 - paramiko's hook
        return None


@dataclass
class ReadyResult:
    host_key: str      # "<type> <base64>", as in known_hosts
    attempts: int
    seconds: float


@dataclass
class SSHProbe:
    """How to decide that a node is ready."""

    user: str
    key: paramiko.PKey
    port: int = 22
    command: str = "test -e /.teuth_provisioned"
    connect_timeout: float = 10.0
    first_delay: float = 0.2
    max_delay: float = 3.0

    def try_once(self, host: str, timeout: float) -> tuple[bool, str]:
        """One login and run of the ready command: (ready, host key or why not)."""
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_RecordHostKey())
        try:
            client.connect(host, port=self.port, username=self.user, pkey=self.key, timeout=timeout,
                           banner_timeout=timeout, auth_timeout=timeout, look_for_keys=False,
                           allow_agent=False)
            transport = client.get_transport()
            server_key = transport.get_remote_server_key()
            host_key = f"{server_key.get_name()} {server_key.get_base64()}"
            _, stdout, _ = client.exec_command(self.command, timeout=timeout)
            stdout.channel.settimeout(timeout)
            status = stdout.channel.recv_exit_status()
            if status == 0:
                return True, host_key
            return False, f"ready command exited with status {status}"
        except paramiko.AuthenticationException:
            return False, "the node refused the lab key (not installed yet, or wrong key)"
        except (paramiko.SSHException, socket.error, EOFError) as exc:
            return False, f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        finally:
            client.close()

    def wait(self, host: str, timeout: float, node: str | None = None,
             sleep: Callable[[float], None] = time.sleep) -> ReadyResult:
        """Poll until ready or ``timeout``; raise a retryable ProvisionError(stage=ssh) on timeout."""
        start = time.monotonic()
        deadline = start + timeout
        delay = self.first_delay
        attempts = 0
        why = "never tried"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProvisionError(Stage.SSH, node, f"not ready over SSH at {self.user}@{host}:{self.port} "
                                     f"after {timeout:.0f}s ({attempts} tries); last: {why}", retryable=True,
                                     kind="timeout")
            attempts += 1
            ready, info = self.try_once(host, min(self.connect_timeout, max(remaining, 0.5)))
            if ready:
                seconds = time.monotonic() - start
                log.info("ssh ready node=%s host=%s tries=%d seconds=%.2f", node, host, attempts, seconds)
                return ReadyResult(host_key=info, attempts=attempts, seconds=seconds)
            why = info
            sleep(min(delay * random.uniform(0.8, 1.2), max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, self.max_delay)
