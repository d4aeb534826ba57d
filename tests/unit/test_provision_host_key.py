"""SSHProbe.host_key_matches, the warm pool's check: a key exchange with a server holding several host keys
(an in-process paramiko server on loopback) confirms exactly the pinned key, whatever its type."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import paramiko
import pytest

from lablease.provision.readiness import SSHProbe

RSA = paramiko.RSAKey.generate(2048)
ECDSA = paramiko.ECDSAKey.generate()


def _line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


@pytest.fixture
def sshd() -> Iterator[int]:
    """A key-exchange-only SSH server holding an RSA and an ECDSA host key; its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    transports: list[paramiko.Transport] = []

    def serve() -> None:
        while True:
            conn, _ = listener.accept()
            if stop.is_set():
                conn.close()
                return
            transport = paramiko.Transport(conn)
            transports.append(transport)
            transport.add_server_key(RSA)
            transport.add_server_key(ECDSA)
            try:
                transport.start_server(server=paramiko.ServerInterface())
            except (paramiko.SSHException, EOFError, OSError):
                pass  # the client left during the exchange: what a check does

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    yield port
    stop.set()
    socket.create_connection(("127.0.0.1", port)).close()  # wakes accept(), which closing the socket does not
    thread.join(timeout=5)
    listener.close()
    for transport in transports:  # their threads must end inside the test: one logging later writes to a closed stream
        transport.close()
        transport.join(timeout=5)


def _probe(port: int) -> SSHProbe:
    return SSHProbe(user="nobody", key=ECDSA, port=port)


def test_the_pinned_key_is_confirmed_whichever_of_the_servers_keys_it_is(sshd):
    # The server would pick ECDSA before RSA: an RSA pin is still checked against the RSA key.
    assert _probe(sshd).host_key_matches("127.0.0.1", _line(ECDSA), 5.0)
    assert _probe(sshd).host_key_matches("127.0.0.1", _line(RSA), 5.0)
    assert _probe(sshd).host_key_matches("127.0.0.1", _line(RSA) + " comment@host", 5.0)


def test_another_key_of_the_same_type_is_a_mismatch(sshd):
    assert not _probe(sshd).host_key_matches("127.0.0.1", _line(paramiko.ECDSAKey.generate()), 5.0)


def test_a_key_of_a_type_the_server_lacks_is_an_error_not_a_match(sshd):
    ed25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOVXWfW5pCO5zw2Kc5ahCw5LCxe0Ex2dI1ok4B6VBfOz"
    with pytest.raises(paramiko.SSHException):  # no host key algorithm in common
        _probe(sshd).host_key_matches("127.0.0.1", ed25519, 5.0)


def test_nothing_listening_is_an_error_not_a_match():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with pytest.raises(OSError):
        _probe(port).host_key_matches("127.0.0.1", _line(ECDSA), 5.0)
