"""Node-name rules, in one place: canonical (``[user@]short.lab_domain``) and short names, case, and form.

Node records in the lock server use the canonical name (``node1.front.example.com``); DNS updates
and cloud servers use the short name. Host names are case-insensitive (RFC 4343), so every host
part is lowered here, as it comes in; a user part is kept as given (Unix user names are not).
An IP address is never given the lab domain.
"""

from __future__ import annotations

import ipaddress
import re

MAX_NAME = 253  # characters of a whole name, without the final dot (RFC 1035)
MAX_LABEL = 63

_LDH = re.compile(r"[A-Za-z0-9.-]*")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_NOT_HOST = "name is not a valid host name"


class HostNameError(ValueError):
    """A name that is not a node or host name of the right form; the message says what is wrong and how to fix it."""


def fold_name(name: str) -> str:
    """The form host names are compared and stored in: lower case, without the final dot."""
    return name.lower().removesuffix(".")


def _check_label(label: str, name: str) -> None:
    """Refuse a label that is empty, over 63 characters or has a hyphen at an edge (``name`` is plain LDH)."""
    if not label:
        raise HostNameError(f"{_NOT_HOST}: it has an empty label ('..' or a leading dot); remove the extra dot")
    if len(label) > MAX_LABEL:
        raise HostNameError(f"{_NOT_HOST}: a label has {len(label)} characters, at most {MAX_LABEL} allowed; "
                            "shorten it")
    if not _LABEL.fullmatch(label):
        raise HostNameError(f"name {name!r} is not a valid host name: a label starts or ends with '-'; "
                            "move or remove the hyphen")


def check_host_name(name: str) -> str:
    """``name`` folded, or HostNameError unless it is a host name: labels of letters, digits and '-'.

    Messages never quote a name holding other characters: it may be hostile (a newline, a command).
    """
    if not name:
        raise HostNameError("a host name must not be empty: give a name such as node1")
    if not _LDH.fullmatch(name):
        what = "a wildcard '*'" if "*" in name else "a character other than letters, digits, '-' and '.'"
        raise HostNameError(f"{_NOT_HOST}: it contains {what}; use only letters, digits, '-' and '.'")
    folded = fold_name(name)
    if len(folded) > MAX_NAME:
        raise HostNameError(f"{_NOT_HOST}: {len(folded)} characters, at most {MAX_NAME} allowed; shorten it")
    for label in folded.split("."):
        _check_label(label, folded)
    return folded


def check_short_name(name: str, lab_domain: str | None = None) -> str:
    """``name`` folded, or HostNameError unless it is one label (``node1``): a short name has no dots."""
    short = check_host_name(name)
    if "." in short:
        where = f"outside the lab domain {lab_domain}" if lab_domain else "not a short name"
        suffix = f" or a name ending in .{lab_domain}" if lab_domain else ""
        raise HostNameError(f"{short!r} is {where}: give a short name such as node1{suffix}")
    return short


def _fold_domain(domain: str) -> str:
    """A lab domain as names are compared with it: lower case, no outer dots or blanks."""
    return fold_name(domain.strip().strip("."))


def check_lab_domain(domain: str) -> str:
    """The lab domain folded (``Front.Example.com.`` -> ``front.example.com``); HostNameError unless a host name.

    Lowered once here, where the config is read, so every suffix test against it is exact.
    """
    try:
        return check_host_name(_fold_domain(domain))
    except HostNameError as exc:
        raise HostNameError(f"must be a DNS domain such as front.example.com ({exc})") from None


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


def _without_domain(host: str, lab_domain: str | None) -> str:
    """Folded ``host`` without its ``.lab_domain`` suffix (matched in any case); other names just folded."""
    host = fold_name(host)
    if not lab_domain or _is_ip(host):
        return host
    return host.removesuffix("." + _fold_domain(lab_domain))


def canonicalize_hostname(name: str, lab_domain: str | None, user: str | None = None) -> str:
    """Return ``[user@]<short>.<lab_domain>`` in lower case; a name already in the lab domain keeps its short part.

    With no lab domain the host part is only lowered. An IP address gives ``user@ip`` (or the
    bare address). A user given in ``name`` wins over ``user``.
    """
    name = name.strip()
    if not name:
        raise HostNameError("a host name must not be empty: give a name such as node1")
    given_user, host = _split_user(name)
    if not host.strip("."):
        raise HostNameError(f"no host name after the user in {name!r}: give user@host or host")
    user = given_user or user
    host = _without_domain(host.rstrip("."), lab_domain)
    if lab_domain and not _is_ip(host):
        host = f"{host}.{_fold_domain(lab_domain)}"
    return f"{user}@{host}" if user else host


def decanonicalize_hostname(name: str, lab_domain: str | None) -> str:
    """Strip the user and the lab domain, in lower case: ``ubuntu@Node1.front.example.com`` gives ``node1``."""
    _, host = _split_user(name.strip())
    return _without_domain(host.rstrip("."), lab_domain)


def node_short_name(name: str, lab_domain: str | None) -> str:
    """The checked short name of a node (``Node1.LAB.example`` -> ``node1``): its server, DNS and volume name.

    HostNameError unless one label is left once the user and the lab domain are gone; an empty or
    odd name would otherwise name a server and the volume pattern destroy deletes by.
    """
    return check_short_name(decanonicalize_hostname(name, lab_domain), lab_domain)


def inventory_name(name: str, lab_domain: str | None) -> str:
    """The lock server's name of a node: canonical, lower case, checked, without a user.

    Inventory names carry no user (teuthology drops it for the lock server): ``ubuntu@node1``
    would become a node no job ever asks for.
    """
    if "@" in name:
        host = name.rpartition("@")[2].strip()
        raise HostNameError(f"node names carry no user: give {host or 'the host name'}, not {name.strip()}")
    return check_host_name(canonicalize_hostname(name, lab_domain))


def numbered_names(prefix: str, count: int, start: int = 1, width: int = 3) -> list[str]:
    """``prefix001 … prefixNNN``: the inventory names a lab admin creates for a machine type."""
    if count < 1:
        raise ValueError("count must be at least 1")
    if start < 0:
        raise ValueError("start must not be negative")
    last = start + count - 1
    width = max(width, len(str(last)))
    return [f"{prefix}{i:0{width}d}" for i in range(start, last + 1)]
