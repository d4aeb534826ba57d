"""RFC 2136 updates with TSIG over TCP through dnspython: read a name's addresses, replace or delete them.

Calls block, so the service runs them in a thread pool. Each thread keeps one TCP connection to
the DNS server and reuses it (BIND answers many messages per connection); a connection that
went stale is replaced once, which is safe because every message we send is idempotent.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from lablease.config import ConfigError

log = logging.getLogger(__name__)


class DnsError(Exception):
    """The DNS server did not do what we asked: ``status`` is 502 or 504, ``kind`` labels the metric."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class TsigKey:
    """A TSIG key read from a BIND key file; repr never shows the secret."""

    name: dns.name.Name
    keyring: dict

    def __repr__(self) -> str:
        return f"TsigKey(name={self.name.to_text()!r})"


def read_key_file(path: Path, key_name: str | None = None) -> TsigKey:
    """Read a `tsig-keygen` key file; errors name the file, never its content."""
    try:
        keyring = dns.tsigkeyring.from_file(path)
    except OSError as exc:
        raise ConfigError(f"cannot read key file: {exc.strerror}", key="key_file",
                          fix=f"make {path} readable (tsig-keygen output)") from None
    except Exception:  # dnspython raises a bare Exception when the file does not parse
        raise ConfigError("key file is not a BIND key file", key="key_file",
                          fix=f"write it with `tsig-keygen -a hmac-sha256 NAME > {path}`") from None
    names = list(keyring)
    if key_name is not None:
        wanted = dns.name.from_text(key_name)
        if wanted not in keyring:
            raise ConfigError("key_name is not in the key file", key="key_name",
                              fix=f"use {names[0].to_text(omit_final_dot=True)} or leave key_name out")
        names = [wanted]
    name = names[0]
    return TsigKey(name=name, keyring={name: keyring[name]})


class _Connections:
    """One TCP socket per thread, all closed together on shutdown."""

    def __init__(self, server: str, port: int, timeout: float):
        self._address = (server, port)
        self._family = socket.AF_INET6 if ipaddress.ip_address(server).version == 6 else socket.AF_INET
        self._timeout = timeout
        self._local = threading.local()
        self._all: set[socket.socket] = set()
        self._lock = threading.Lock()

    def get(self) -> tuple[socket.socket, bool]:
        """The thread's socket and whether it is new."""
        sock = getattr(self._local, "sock", None)
        if sock is not None:
            return sock, False
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self._timeout)
        try:
            sock.connect(self._address)
            sock.setblocking(False)  # dnspython wants a non-blocking socket and applies the timeout itself
        except BaseException:
            sock.close()
            raise
        self._local.sock = sock
        with self._lock:
            self._all.add(sock)
        return sock, True

    def drop(self) -> None:
        sock = getattr(self._local, "sock", None)
        if sock is not None:
            self._local.sock = None
            with self._lock:
                self._all.discard(sock)
            sock.close()

    def close_all(self) -> None:
        with self._lock:
            socks, self._all = list(self._all), set()
        for sock in socks:
            sock.close()


class Updater:
    """Reads and changes the A/AAAA records of names in one zone on one DNS server."""

    def __init__(self, zone: str, server: str, port: int, key: TsigKey, ttl: int = 300, timeout: float = 5.0):
        self.zone = dns.name.from_text(zone)
        self.server = server
        self.port = port
        self.key = key
        self.ttl = ttl
        self.timeout = timeout
        self._connections = _Connections(server, port, timeout)

    def close(self) -> None:
        self._connections.close_all()

    def _exchange(self, *messages: dns.message.Message) -> list[dns.message.Message]:
        """Send messages pipelined on the thread's connection and return their answers in the same order.

        Failures become DnsError: TSIG -> 502, no answer in time -> 504, no connection -> 502.
        """
        for attempt in (1, 2):
            fresh = False
            try:
                sock, fresh = self._connections.get()
                return self._send_receive(sock, messages)
            except dns.tsig.PeerError as exc:
                self._connections.drop()
                raise DnsError(502, "TSIG", f"the DNS server rejected our TSIG signature ({type(exc).__name__}): check key_file matches the server's key") from None
            except (dns.exception.Timeout, TimeoutError, socket.timeout):
                self._connections.drop()
                raise DnsError(504, "timeout", f"the DNS server {self.server}:{self.port} did not answer within {self.timeout:g}s") from None
            except (EOFError, OSError) as exc:
                self._connections.drop()
                # A reused connection may have been closed by the server while idle: retry once on a new one.
                if attempt == 1 and not fresh and not isinstance(exc, ConnectionRefusedError):
                    continue
                raise DnsError(502, "unreachable", f"the DNS server {self.server}:{self.port} is unreachable ({type(exc).__name__})") from None
            except dns.exception.DNSException as exc:
                self._connections.drop()
                raise DnsError(502, "bad_answer", f"the DNS server sent an answer we cannot use ({type(exc).__name__})") from None
        raise AssertionError("unreachable")

    def _send_receive(self, sock: socket.socket, messages: tuple[dns.message.Message, ...]) -> list[dns.message.Message]:
        expiration = time.time() + self.timeout
        if len(messages) > 1 and any(m.keyring for m in messages):
            raise ValueError("only unsigned messages may be pipelined")
        for message in messages:
            dns.query.send_tcp(sock, message, expiration)
        # BIND may answer pipelined queries in any order: match answers to questions by id.
        # Only a single message may be signed, so its answer is read with its own request MAC.
        waiting = {message.id: message for message in messages}
        answers: dict[int, dns.message.Message] = {}
        while waiting:
            if len(messages) == 1:
                question = messages[0]
                answer, _ = dns.query.receive_tcp(sock, expiration, keyring=question.keyring, request_mac=question.mac)
            else:
                answer, _ = dns.query.receive_tcp(sock, expiration)
            question = waiting.pop(answer.id, None)
            if question is None or not question.is_response(answer):
                raise dns.query.BadResponse
            answers[question.id] = answer
        return [answers[message.id] for message in messages]

    def addresses(self, fqdn: str) -> list[str]:
        """The name's current A and AAAA addresses, asked of the server itself (no cache)."""
        name = dns.name.from_text(fqdn)
        found: list[str] = []
        # One query after the other: BIND delays the second answer of a pipelined pair by ~40 ms (Nagle).
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            (answer,) = self._exchange(dns.message.make_query(name, rdtype))
            rcode = answer.rcode()
            if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                text = dns.rcode.to_text(rcode)
                raise DnsError(502, text, f"the DNS server answered {text} to a query for {fqdn}")
            for rrset in answer.answer:
                if rrset.rdtype == rdtype and rrset.name == name:
                    found.extend(rr.to_text() for rr in rrset)
        return sorted(found, key=lambda a: (ipaddress.ip_address(a).version, ipaddress.ip_address(a)))

    def _update(self, fqdn: str, addresses: list[str]) -> None:
        """One signed message: drop the name's A and AAAA sets, add ``addresses`` (none for a delete)."""
        message = dns.update.UpdateMessage(self.zone, keyring=self.key.keyring, keyname=self.key.name)
        name = dns.name.from_text(fqdn)
        message.delete(name, dns.rdatatype.A)
        message.delete(name, dns.rdatatype.AAAA)
        for address in addresses:
            rdtype = dns.rdatatype.AAAA if ":" in address else dns.rdatatype.A
            message.add(name, self.ttl, rdtype, address)
        (answer,) = self._exchange(message)
        rcode = answer.rcode()
        if rcode != dns.rcode.NOERROR:
            text = dns.rcode.to_text(rcode)
            raise DnsError(502, text, f"the DNS server answered {text} to the update of {fqdn}")

    def replace(self, fqdn: str, addresses: list[str]) -> tuple[list[str], bool]:
        """Make ``addresses`` the name's only A/AAAA records; return (old addresses, whether it changed)."""
        old = self.addresses(fqdn)
        if old == addresses:
            return old, False
        self._update(fqdn, addresses)
        return old, True

    def delete(self, fqdn: str) -> list[str]:
        """Remove the name's A and AAAA records; return what was there (an absent name is fine)."""
        old = self.addresses(fqdn)
        if old:
            self._update(fqdn, [])
        return old

    def healthy(self) -> float:
        """Ask the zone's SOA; return the round trip in seconds or raise DnsError."""
        start = time.perf_counter()
        (answer,) = self._exchange(dns.message.make_query(self.zone, dns.rdatatype.SOA))
        if answer.rcode() != dns.rcode.NOERROR or not answer.answer:
            text = dns.rcode.to_text(answer.rcode())
            raise DnsError(502, text, f"the DNS server does not serve {self.zone.to_text(omit_final_dot=True)} (answered {text})")
        return time.perf_counter() - start
