"""Checking the names and addresses a client sends, before anything reaches the DNS server.

Each check raises `Rejection` with the HTTP status, a metric reason and a one-line message.
Hostile input is never echoed back: a name is quoted only once it is known to be plain LDH text.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

from lablease.hostnames import MAX_NAME, HostNameError, check_host_name


class Rejection(Exception):
    """A request the service refuses: ``status`` (400/401/403), ``reason`` for metrics, one-line message."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class HostName:
    """A host name inside the zone: ``relative`` (e.g. ``node1``) and ``fqdn`` (``node1.lab.example.``)."""

    relative: str
    fqdn: str


def check_name(raw: str | None, zone: str, allow: re.Pattern[str]) -> HostName:
    """Turn ``raw`` (a short name, or a name inside ``zone``) into a HostName or raise Rejection.

    The form rules are hostnames.py's; this adds the zone and the allow pattern, which must match
    the whole lowered name relative to the zone (``re.fullmatch``, ignoring case), so ``node1.evil``
    and ``node1\\n`` never pass a pattern meant for ``node1``.
    """
    if raw is None or raw == "":
        raise Rejection(400, "missing_name", "missing name: pass ?name=<host>")
    try:
        name = check_host_name(raw)
    except HostNameError as exc:
        raise Rejection(400, "bad_name", str(exc)) from None
    relative = _relative(name, zone)
    fqdn = f"{relative}.{zone}."
    if len(fqdn) - 1 > MAX_NAME:
        raise Rejection(400, "bad_name", f"name {relative!r} is too long once {zone} is appended "
                                         f"(at most {MAX_NAME} characters)")
    if not _ignoring_case(allow).fullmatch(relative):
        raise Rejection(403, "not_allowed", f"name {relative!r} is not allowed: it must fully match the allow pattern")
    return HostName(relative=relative, fqdn=fqdn)


def _relative(name: str, zone: str) -> str:
    """``name`` (checked, lowered) relative to ``zone``; Rejection(403) for the apex or a name outside the zone."""
    if name == zone:
        raise Rejection(403, "apex", f"name {name!r} is the zone apex; only hosts inside {zone} can be changed")
    if name.endswith("." + zone):
        return name[: -len(zone) - 1]
    if "." in name:
        raise Rejection(403, "outside_zone", f"name {name!r} is outside zone {zone}: pass a short name or a name ending in .{zone}")
    return name


@lru_cache(maxsize=64)
def _ignoring_case(allow: re.Pattern[str]) -> re.Pattern[str]:
    """``allow`` matching in any case: admins may write ``NODE[0-9]+``, and names reach it lowered."""
    return re.compile(allow.pattern, allow.flags | re.IGNORECASE)


def check_addresses(raw: list[str], maximum: int) -> list[str]:
    """Parse ``raw`` into canonical, de-duplicated, sorted IPv4/IPv6 addresses or raise Rejection.

    Scoped IPv6 (``fe80::1%eth0``) is refused: Python accepts any text after ``%``, DNS has no place for it.
    """
    if not raw:
        raise Rejection(400, "missing_address", "missing address: pass one or more ?ip=<address>")
    if len(raw) > maximum:
        raise Rejection(400, "too_many_addresses", f"{len(raw)} addresses given, at most {maximum} allowed")
    parsed: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for position, text in enumerate(raw, start=1):
        if "%" in text:
            raise Rejection(400, "bad_address", f"address {position} has a '%' zone suffix; give a plain IPv4 or IPv6 address")
        try:
            parsed.add(ipaddress.ip_address(text))
        except ValueError:
            raise Rejection(400, "bad_address", f"address {position} is not an IPv4 or IPv6 address (no port, no brackets, no zone)") from None
    return [str(a) for a in sorted(parsed, key=lambda a: (a.version, a))]
