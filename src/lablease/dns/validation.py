"""Checking the names and addresses a client sends, before anything reaches the DNS server.

Each check raises `Rejection` with the HTTP status, a metric reason and a one-line message.
Hostile input is never echoed back: a name is quoted only once it is known to be plain LDH text.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_LDH = re.compile(r"[A-Za-z0-9.-]*")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


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

    The allow pattern must match the whole name relative to the zone (``re.fullmatch``), so
    ``node1.evil`` and ``node1\\n`` never pass a pattern meant for ``node1``.
    """
    if raw is None or raw == "":
        raise Rejection(400, "missing_name", "missing name: pass ?name=<host>")
    if not _LDH.fullmatch(raw):
        what = "a wildcard '*'" if "*" in raw else "a character other than letters, digits, '-' and '.'"
        raise Rejection(400, "bad_name", f"name is not a valid host name: it contains {what}")
    name = raw.lower()
    if name.endswith("."):
        name = name[:-1]
    if len(name) > 253:
        raise Rejection(400, "bad_name", f"name is not a valid host name: {len(name)} characters, at most 253 allowed")
    labels = name.split(".")
    for label in labels:
        if not label:
            raise Rejection(400, "bad_name", "name is not a valid host name: it has an empty label ('..' or a leading dot)")
        if len(label) > 63:
            raise Rejection(400, "bad_name", f"name is not a valid host name: a label has {len(label)} characters, at most 63 allowed")
        if not _LABEL.fullmatch(label):
            raise Rejection(400, "bad_name", f"name {name!r} is not a valid host name: a label starts or ends with '-'")
    if name == zone:
        raise Rejection(403, "apex", f"name {name!r} is the zone apex; only hosts inside {zone} can be changed")
    if name.endswith("." + zone):
        relative = name[: -len(zone) - 1]
    elif "." in name:
        raise Rejection(403, "outside_zone", f"name {name!r} is outside zone {zone}: pass a short name or a name ending in .{zone}")
    else:
        relative = name
    fqdn = f"{relative}.{zone}."
    if len(fqdn) - 1 > 253:
        raise Rejection(400, "bad_name", f"name {relative!r} is too long once {zone} is appended (at most 253 characters)")
    if not allow.fullmatch(relative):
        raise Rejection(403, "not_allowed", f"name {relative!r} is not allowed: it must fully match the allow pattern")
    return HostName(relative=relative, fqdn=fqdn)


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
