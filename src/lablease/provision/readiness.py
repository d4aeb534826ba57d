"""Readiness over SSH: log in with the lab key, run the ready command, capture the host key.

No fixed sleep: connection attempts back off from a fraction of a second, bounded by the timeout.
The host key is taken on first contact (the node is brand new, nothing is known about it yet)
and handed back so that the lab can pin it for everyone who logs in later.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import paramiko

from lablease.provision.errorkinds import ErrorKind
from lablease.provision.errors import ProvisionError, Stage
from lablease.provision.waiting import cancelled

log = logging.getLogger(__name__)


def load_private_key(path: str | Path, passphrase: str | None = None) -> paramiko.PKey:
    """The lab's private key (RSA, ECDSA or Ed25519); paramiko wants the passphrase as bytes."""
    return paramiko.PKey.from_path(str(Path(path).expanduser()),
                                   password=passphrase.encode() if passphrase else None)


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
class Tries:
    """What one readiness wait has seen so far: enough to say why it failed."""

    logins: int = 0
    why: str = "never tried"
    port_seen: bool = False   # sshd accepted a TCP connection at least once


class WaitStopped(ProvisionError):
    """A readiness wait stopped by its ``cancel`` event; ``tries`` is what it had seen until then."""

    def __init__(self, node: str | None, host: str, port: int, tries: Tries):
        super().__init__(Stage.SSH, node, f"cancelled while waiting for SSH at {host}:{port} "
                         f"({tries.logins} logins; last: {tries.why})", kind=ErrorKind.CANCELLED)
        self.tries = tries


@dataclass
class SSHProbe:
    """How to decide that a node is ready."""

    user: str
    key: paramiko.PKey
    port: int = 22
    command: str = "test -e /.teuth_provisioned"
    connect_timeout: float = 10.0
    first_delay: float = 0.2
    max_delay: float = 1.0        # between login attempts (a refused connect costs next to nothing)
    remote_interval: float = 0.25  # between runs of the ready command on the node
    port_interval: float = 0.1     # first gap between TCP probes while nothing listens (a refused connect is free)
    port_max_interval: float = 0.5

    def _port_open(self, host: str, timeout: float) -> socket.socket | None:
        """A TCP connection to sshd, or None while nothing listens: checked cheaply before paying for a
        key exchange. The login then goes over this same connection: a probe closed at once costs the
        node a whole sshd process for nothing (a fork, and on OpenSSH a re-exec, per probe)."""
        try:
            return socket.create_connection((host, self.port), timeout=timeout)
        except OSError:
            return None

    def _connect(self, host: str, timeout: float, sock: socket.socket | None = None) -> tuple[paramiko.SSHClient, str]:
        """Log in over ``sock`` (a connection to sshd; a new one when None); the client and the host key."""
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_RecordHostKey())
        try:
            client.connect(host, port=self.port, username=self.user, pkey=self.key, timeout=timeout,
                           banner_timeout=timeout, auth_timeout=timeout, look_for_keys=False, allow_agent=False,
                           sock=sock)
        except BaseException:
            client.close()
            if sock is not None:
                sock.close()
            raise
        server_key = client.get_transport().get_remote_server_key()
        return client, f"{server_key.get_name()} {server_key.get_base64()}"

    def host_key_matches(self, host: str, expected: str, timeout: float) -> bool:
        """Whether sshd at ``host`` holds the host key ``expected`` ("<type> <base64>", as ``wait`` returns it).

        A key exchange only: no login, no command. It still proves the key, not just a copy of its
        public half: in the exchange the server signs the exchange hash with its host key and paramiko
        checks that signature (an SSHException otherwise). It is what the re-check of a warm node needs:
        the node answers, with the key pinned when a full wait saw its ready command succeed. Measured
        on devcloud it costs about a tenth of a full wait, whose login and ready command are most of
        the time the node's sshd takes (docs/performance.md, "Warm pool").

        Only the algorithms of the expected key's type are offered, so that a server with several host
        keys answers with the one that was pinned. Raises OSError, EOFError or paramiko.SSHException
        when nothing answers or the exchange fails within ``timeout`` seconds; no retries (the caller
        decides what a failure means).
        """
        key_type, _, rest = expected.partition(" ")
        want = f"{key_type} {rest.split(' ')[0]}"
        # the RSA key's name is ssh-rsa; paramiko offers it under its SHA-2 signature algorithms only
        algorithms = ("rsa-sha2-512", "rsa-sha2-256") if key_type == "ssh-rsa" else (key_type,)
        sock = socket.create_connection((host, self.port), timeout=timeout)
        transport = paramiko.Transport(sock)
        try:
            transport.banner_timeout = transport.handshake_timeout = timeout
            with contextlib.suppress(ValueError):  # a type paramiko does not know: its defaults; the compare decides
                transport.get_security_options().key_types = algorithms
            transport.start_client(timeout=timeout)
            server_key = transport.get_remote_server_key()
            return f"{server_key.get_name()} {server_key.get_base64()}" == want
        finally:
            transport.close()  # closes the socket too; sshd sees a client that left before authenticating

    def remote_loop(self, timeout: float) -> str:
        """The ready command repeated on the node until it succeeds: one exec per node, not one per try.

        The command sits on its own lines inside a subshell so that `;`, `&&` or a `#` in it
        cannot change the loop around it. The loop gives up by itself (status 124) after the tries
        that ``timeout`` seconds hold (so no sooner than ``timeout``): closing the channel does not
        stop a command without a pty, and a node whose destroy failed must not keep a loop running.
        It counts tries with shell arithmetic rather than asking `date` each time: a process fewer
        per try, on every node of a batch at once.
        """
        tries = max(1, math.ceil(timeout / self.remote_interval))
        return (f"lablease_left={tries}\n"
                f"until (\n{self.command}\n); do\n"
                f"  lablease_left=$((lablease_left - 1))\n"
                f"  [ \"$lablease_left\" -gt 0 ] || exit 124\n"
                f"  sleep {self.remote_interval:g}\ndone")

    def _run_until_ready(self, client: paramiko.SSHClient, timeout: float,
                         cancel: threading.Event | None = None) -> int | None:
        """Run the loop; its exit status (0: ready), or None when ``timeout`` seconds passed first."""
        _, stdout, _ = client.exec_command(self.remote_loop(timeout), timeout=timeout)
        channel = stdout.channel
        deadline = time.monotonic() + timeout
        try:
            while not channel.status_event.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
                if time.monotonic() >= deadline or (cancel is not None and cancel.is_set()):
                    return None
            return channel.recv_exit_status()
        finally:
            channel.close()  # a loop left running on a node that timed out dies with the node

    def not_ready(self, host: str, seconds: float, tries: Tries, node: str | None, when: str = "") -> ProvisionError:
        """The failure after ``seconds`` of waiting (``when`` says since when).

        A port that never accepted a connection is a setting or firewall problem, not bad luck: it
        is named with its likely fix and not retried (another attempt would wait just as long).
        """
        if not tries.port_seen:
            return ProvisionError(
                Stage.SSH, node, f"nothing listened on {host}:{self.port} for {seconds:.0f}s{when}: check the "
                f"provider's ssh_port ({self.port}) and ssh_user ({self.user}), that its security groups let the "
                f"lab reach TCP port {self.port}, and that the image starts sshd", kind=ErrorKind.SSH_PORT)
        return ProvisionError(Stage.SSH, node, f"not ready over SSH at {self.user}@{host}:{self.port} after "
                              f"{seconds:.0f}s{when} ({tries.logins} logins); last: {tries.why}",
                              kind=ErrorKind.TIMEOUT)

    def wait(self, host: str, timeout: float, node: str | None = None,
             sleep: Callable[[float], object] | None = None, cancel: threading.Event | None = None) -> ReadyResult:
        """Log in (retrying with backoff until sshd answers and takes the key), then wait for the
        ready command on the node itself; raise ``not_ready(...)`` after ``timeout``.

        Setting ``cancel`` stops the wait within a fraction of a second (``WaitStopped``, kind "cancelled").
        """
        if sleep is None:
            sleep = cancel.wait if cancel is not None else time.sleep
        tries = Tries()
        start = time.monotonic()
        deadline = start + timeout
        delay = self.first_delay
        port_delay = self.port_interval
        while True:
            if cancel is not None and cancel.is_set():
                raise WaitStopped(node, host, self.port, tries)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self.not_ready(host, timeout, tries, node)
            client = None
            sock = self._port_open(host, min(self.connect_timeout, max(remaining, 0.5)))
            if sock is None:
                tries.why = f"nothing listens on {host}:{self.port} yet"
                sleep(min(port_delay * random.uniform(0.8, 1.2), max(0.0, deadline - time.monotonic())))
                port_delay = min(port_delay * 1.2, self.port_max_interval)
                continue
            tries.port_seen = True
            tries.logins += 1
            try:
                client, host_key = self._connect(host, min(self.connect_timeout, max(remaining, 0.5)), sock)
                status = self._run_until_ready(client, max(0.1, deadline - time.monotonic()), cancel)
                if status == 0:
                    seconds = time.monotonic() - start
                    log.info("ssh ready node=%s host=%s logins=%d seconds=%.2f", node, host, tries.logins, seconds)
                    return ReadyResult(host_key=host_key, attempts=tries.logins, seconds=seconds)
                if status is None or status == 124:  # 124: the loop's own deadline on the node
                    tries.why = f"the ready command did not succeed within {timeout:.0f}s: {self.command}"
                    continue  # the deadline has passed (or a cancel came): the loop head raises
                tries.why = f"the ready loop ended with status {status} (session lost?)"
            except paramiko.AuthenticationException:
                tries.why = (f"the node refused the lab key for {self.user} (not installed yet, or wrong "
                             "ssh_user or ssh_key_file)")
            except (paramiko.SSHException, socket.error, EOFError) as exc:
                tries.why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            finally:
                if client is not None:
                    client.close()
            log.debug("ssh not ready node=%s host=%s try=%d why=%s", node, host, tries.logins, tries.why)
            sleep(min(delay * random.uniform(0.8, 1.2), max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, self.max_delay)


class EarlyProbe:
    """A readiness wait started in its own thread as soon as the server has an address.

    sshd cannot answer before the server runs, but the cloud reports it running only when the
    engine next polls; waiting for SSH alongside the boot poll takes that lag off the critical path.
    """

    def __init__(self, probe: SSHProbe, host: str, timeout: float, node: str | None):
        self.host = host
        self._probe = probe
        self._cancel = threading.Event()
        self._result: ReadyResult | None = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._result = probe.wait(host, timeout, node, cancel=self._cancel)
            except BaseException as exc:  # handed to the caller of result()
                self._error = exc

        self._thread = threading.Thread(target=run, name=f"ssh-{node}", daemon=True)
        self._thread.start()

    def _join(self, timeout: float, cancel: threading.Event | None) -> None:
        """Wait for the probe thread, at most ``timeout`` s, in short slices so that ``cancel`` is seen at once."""
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and not (cancel is not None and cancel.is_set()):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._thread.join(min(0.1, left))

    def result(self, timeout: float, node: str | None = None, cancel: threading.Event | None = None) -> ReadyResult:
        """The readiness result, waiting at most ``timeout`` more seconds (the ready_timeout after boot).

        Setting ``cancel`` (the engine's) stops the wait within a fraction of a second.
        """
        self._join(timeout, cancel)
        if self._thread.is_alive():
            self.cancel()
            if cancel is not None and cancel.is_set():
                raise cancelled(Stage.SSH, node, f"waiting for SSH at {self.host}")
            if isinstance(self._error, WaitStopped):  # what the wait saw names the likely cause
                raise self._probe.not_ready(self.host, timeout, self._error.tries, node, " after the server ran")
            raise ProvisionError(Stage.SSH, node, f"not ready over SSH at {self.host} {timeout:.0f}s after the "
                                 "server ran (no answer)", kind=ErrorKind.TIMEOUT)
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def cancel(self) -> None:
        self._cancel.set()
        self._thread.join(timeout=30)
