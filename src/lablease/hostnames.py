"""Canonical (``[user@]short.lab_domain``) and short node names, as teuthology forms them.

Node records in the lock server use the canonical name (``node1.front.example.com``);
DNS updates use the short name. An IP address is never given the lab domain.
"""

from __future__ import annotations

import ipaddress


def _split_user(name: str) -> tuple[str | None, str]:
    if "@" in name:
        user, _, host = name.rpartition("@")
        return user or None, host
    return None, name


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def canonicalize_hostname(name: str, lab_domain: str | None, user: str | None = None) -> str:
    """Return ``[user@]<short>.<lab_domain>``; a name already in the lab domain keeps its short part.

    With no lab domain the host part is returned unchanged. An IP address gives ``user@ip``
    (or the bare address). A user given in ``name`` wins over ``user``.
    """
    name = name.strip()
    if not name:
        raise ValueError("a host name must not be empty")
    given_user, host = _split_user(name)
    if not host.strip("."):
        raise ValueError(f"no host name after the user in {name!r}: give user@host or host")
    user = given_user or user
    if not _is_ip(host) and lab_domain:
        domain = lab_domain.strip(".")
        short = host.rstrip(".")
        suffix = "." + domain
        if short.endswith(suffix):
            short = short[: -len(suffix)]
        host = f"{short}{suffix}"
    return f"{user}@{host}" if user else host


def decanonicalize_hostname(name: str, lab_domain: str | None) -> str:
    """Strip the user and the lab domain: ``ubuntu@node1.front.example.com`` gives ``node1``."""
    _, host = _split_user(name.strip())
    host = host.rstrip(".")
    if lab_domain and not _is_ip(host):
        suffix = "." + lab_domain.strip(".")
        if host.endswith(suffix):
            host = host[: -len(suffix)]
    return host


def numbered_names(prefix: str, count: int, start: int = 1, width: int = 3) -> list[str]:
    """``prefix001 … prefixNNN``: the inventory names a lab admin creates for a machine type."""
    if count < 1:
        raise ValueError("count must be at least 1")
    if start < 0:
        raise ValueError("start must not be negative")
    last = start + count - 1
    width = max(width, len(str(last)))
    return [f"{prefix}{i:0{width}d}" for i in range(start, last + 1)]
