"""RFC 2136 updates with TSIG over TCP through dnspython: read a name's addresses, replace or delete them,
and list the zone's addresses by a signed zone transfer (AXFR).

Asynchronous (dnspython's asyncio backend) so one service process serves many clients without
a thread per request. Connections to the DNS server are pooled and reused (BIND answers many
messages per connection); a pooled connection that went stale is replaced once, which is safe
because every message we send is idempotent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.xfr
import dns.zone

from lablease.config import ConfigError

log = logging.getLogger(__name__)


def _address_order(text: str) -> tuple[int, ipaddress.IPv4Address | ipaddress.IPv6Address]:
    address = ipaddress.ip_address(text)
    return (address.version, address)


def same_addresses(left: list[str], right: list[str]) -> bool:
    """Whether two address lists hold the same addresses, whatever their spelling.

    Python writes ``::ffff:a00:14`` where BIND and dnspython write ``::ffff:10.0.0.20``: text
    comparison would call every repeat of an IPv4-mapped address a change.
    """
    return sorted(map(_address_order, left)) == sorted(map(_address_order, right))


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


class _Pool:
    """Idle TCP connections to the DNS server; a connection is used by one request at a time."""

    def __init__(self, server: str, port: int, timeout: float, keep: int = 32):
        self._destination = (server, port)
        self._family = socket.AF_INET6 if ipaddress.ip_address(server).version == 6 else socket.AF_INET
        self._timeout = timeout
        self._keep = keep
        self._idle: list = []
        self.backend = dns.asyncbackend.get_backend("asyncio")

    async def get(self) -> tuple[Any, bool]:
        """A connection and whether it is new."""
        while self._idle:
            sock = self._idle.pop()
            if not (sock.writer.is_closing() or sock.reader.at_eof()):  # the server may have closed it while idle
                return sock, False
            _close_quietly(sock)
        sock = await self.backend.make_socket(self._family, socket.SOCK_STREAM, 0, None, self._destination, self._timeout)
        return sock, True

    def put(self, sock: Any) -> None:
        if len(self._idle) < self._keep:
            self._idle.append(sock)
        else:
            _close_quietly(sock)

    def close_all(self) -> None:
        idle, self._idle = self._idle, []
        for sock in idle:
            _close_quietly(sock)


def _close_quietly(sock: Any) -> None:
    # StreamSocket.close() is a coroutine that only closes the transport; do that directly so
    # shutdown and error paths need no await.
    try:
        sock.writer.close()
    except Exception:  # noqa: BLE001 - a broken connection is being thrown away anyway
        pass


class Updater:
    """Reads and changes the A/AAAA records of names in one zone on one DNS server."""

    def __init__(self, zone: str, server: str, port: int, key: TsigKey, ttl: int = 300, timeout: float = 5.0,
                 max_connections: int = 32):
        self.zone = dns.name.from_text(zone)
        self.server = server
        self.port = port
        self.key = key
        self.ttl = ttl
        self.timeout = timeout
        self._pool = _Pool(server, port, timeout)
        # Bounds the connections open to the DNS server (BIND's tcp-clients defaults to 150).
        self._in_flight = asyncio.Semaphore(max_connections)
        self._any_works = True

    def close(self) -> None:
        self._pool.close_all()

    async def _exchange(self, message: dns.message.Message) -> dns.message.Message:
        """Send one message on a pooled connection and return the answer; failures become DnsError."""
        async with self._in_flight:
            return await self._exchange_on_pool(message)

    async def _exchange_on_pool(self, message: dns.message.Message) -> dns.message.Message:
        for attempt in (1, 2):
            sock, fresh = None, True
            try:
                sock, fresh = await self._pool.get()
                answer = await dns.asyncquery.tcp(message, self.server, port=self.port, timeout=self.timeout, sock=sock)
            except BaseException as exc:
                if sock is not None:  # never hand a connection in an unknown state to the next request
                    _close_quietly(sock)
                # uvloop raises RuntimeError for a write on a transport the peer has just closed.
                stale = isinstance(exc, RuntimeError) and not fresh
                error = self._translate(ConnectionResetError() if stale else exc)
                if error is None:
                    raise
                # A pooled connection may have been closed by the server while idle: retry once on a new one.
                if error.kind == "unreachable" and attempt == 1 and not fresh:
                    continue
                raise error from None
            self._pool.put(sock)
            return answer
        raise AssertionError("unreachable")

    def _translate(self, exc: BaseException) -> DnsError | None:
        """TSIG rejected -> 502, no answer in time -> 504, no connection -> 502; None for anything else."""
        if isinstance(exc, dns.tsig.PeerError):
            return DnsError(502, "TSIG", f"the DNS server rejected our TSIG signature ({type(exc).__name__}): check key_file matches the server's key")
        if isinstance(exc, (dns.exception.Timeout, TimeoutError)):
            return DnsError(504, "timeout", f"the DNS server {self.server}:{self.port} did not answer within {self.timeout:g}s")
        if isinstance(exc, (EOFError, OSError)):
            return DnsError(502, "unreachable", f"the DNS server {self.server}:{self.port} is unreachable ({type(exc).__name__})")
        if isinstance(exc, dns.exception.DNSException):
            return DnsError(502, "bad_answer", f"the DNS server sent an answer we cannot use ({type(exc).__name__})")
        return None

    async def addresses(self, fqdn: str) -> list[str]:
        """The name's current A and AAAA addresses, asked of the server itself (no cache).

        One ANY query over TCP gets both sets from an authoritative server in one round trip. A
        server that answers ANY minimally (RFC 8482: a synthesized HINFO, or no AA flag) is asked
        for A and AAAA separately, from then on.
        """
        name = dns.name.from_text(fqdn)
        if self._any_works:
            answer = await self._exchange(dns.message.make_query(name, dns.rdatatype.ANY))
            self._check_query_rcode(answer, fqdn)
            if answer.flags & dns.flags.AA and not any(r.rdtype == dns.rdatatype.HINFO for r in answer.answer):
                return self._sorted(answer, name)
            log.info("dns_any_minimal server=%s:%d fallback=A+AAAA", self.server, self.port)
            self._any_works = False
        found: list[str] = []
        # One query after the other: BIND delays the second answer of a pipelined pair by ~40 ms (Nagle).
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            answer = await self._exchange(dns.message.make_query(name, rdtype))
            self._check_query_rcode(answer, fqdn)
            found.extend(self._sorted(answer, name))
        return sorted(found, key=_address_order)

    @staticmethod
    def _check_query_rcode(answer: dns.message.Message, fqdn: str) -> None:
        rcode = answer.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            text = dns.rcode.to_text(rcode)
            raise DnsError(502, text, f"the DNS server answered {text} to a query for {fqdn}")

    @staticmethod
    def _sorted(answer: dns.message.Message, name: dns.name.Name) -> list[str]:
        found = [rr.to_text() for rrset in answer.answer if rrset.name == name
                 and rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) for rr in rrset]
        return sorted(found, key=_address_order)

    async def _update(self, fqdn: str, addresses: list[str]) -> None:
        """One signed message: drop the name's A and AAAA sets, add ``addresses`` (none for a delete)."""
        message = dns.update.UpdateMessage(self.zone, keyring=self.key.keyring, keyname=self.key.name)
        name = dns.name.from_text(fqdn)
        message.delete(name, dns.rdatatype.A)
        message.delete(name, dns.rdatatype.AAAA)
        for address in addresses:
            rdtype = dns.rdatatype.AAAA if ":" in address else dns.rdatatype.A
            message.add(name, self.ttl, rdtype, address)
        answer = await self._exchange(message)
        rcode = answer.rcode()
        if rcode != dns.rcode.NOERROR:
            text = dns.rcode.to_text(rcode)
            raise DnsError(502, text, f"the DNS server answered {text} to the update of {fqdn}")

    async def replace(self, fqdn: str, addresses: list[str]) -> tuple[list[str], bool]:
        """Make ``addresses`` the name's only A/AAAA records; return (old addresses, whether it changed)."""
        old = await self.addresses(fqdn)
        if same_addresses(old, addresses):
            return old, False
        await self._update(fqdn, addresses)
        return old, True

    async def delete(self, fqdn: str) -> list[str]:
        """Remove the name's A and AAAA records; return what was there (an absent name is fine)."""
        old = await self.addresses(fqdn)
        if old:
            await self._update(fqdn, [])
        return old

    async def zone_addresses(self) -> dict[str, list[str]]:
        """Every name of the zone that has A/AAAA records (relative, lowered) with its sorted addresses.

        Read by one TSIG-signed AXFR on its own connection (a transfer is many messages, so it
        cannot share the pooled ones), finished within ``timeout``; BIND must allow it to our key.
        """
        zone = dns.zone.Zone(self.zone)
        query, _ = dns.xfr.make_query(zone, keyring=self.key.keyring, keyname=self.key.name)
        async with self._in_flight:
            try:
                await dns.asyncquery.inbound_xfr(self.server, zone, query, port=self.port, timeout=self.timeout,
                                                 lifetime=self.timeout, backend=self._pool.backend)
            except BaseException as exc:
                error = self._transfer_error(exc)
                if error is None:
                    raise
                raise error from None
        return _addresses_by_name(zone)

    def _transfer_error(self, exc: BaseException) -> DnsError | None:
        """The 502/504 for a failed transfer, naming BIND; a REFUSED one says the named.conf line that allows it."""
        where = f"zone transfer of {self.zone.to_text(omit_final_dot=True)} from BIND at {self.server}:{self.port}"
        if not isinstance(exc, dns.xfr.TransferError):
            error = self._translate(exc)
            return None if error is None else DnsError(error.status, error.kind, f"{where}: {error.message}")
        text = dns.rcode.to_text(exc.rcode)
        message = f"{where}: BIND answered {text}"
        if exc.rcode == dns.rcode.REFUSED:
            key = self.key.name.to_text(omit_final_dot=True)
            message += f"; allow it to our key with `allow-transfer {{ key {key}; }};` in the zone statement of named.conf"
        return DnsError(502, text, message)

    async def healthy(self) -> float:
        """Ask the zone's SOA; return the round trip in seconds or raise DnsError."""
        start = time.perf_counter()
        answer = await self._exchange(dns.message.make_query(self.zone, dns.rdatatype.SOA))
        if answer.rcode() != dns.rcode.NOERROR or not answer.answer:
            text = dns.rcode.to_text(answer.rcode())
            raise DnsError(502, text, f"the DNS server does not serve {self.zone.to_text(omit_final_dot=True)} (answered {text})")
        return time.perf_counter() - start


def _addresses_by_name(zone: dns.zone.Zone) -> dict[str, list[str]]:
    """The transferred zone's A/AAAA addresses by relative, lowered name (the apex is ``@``)."""
    found: dict[str, list[str]] = {}
    for name, rdataset in zone.iterate_rdatasets():
        if rdataset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            found.setdefault(name.to_text().lower(), []).extend(rr.to_text() for rr in rdataset)
    return {name: sorted(addresses, key=_address_order) for name, addresses in found.items()}
