"""The parts of cloud-config that devcloud acts on: authorized keys, the login user, `touch` runcmds."""

from __future__ import annotations

import logging
import posixpath
import shlex
from dataclasses import dataclass, field

import yaml

log = logging.getLogger(__name__)

# libyaml's safe loader parses ~10 x faster than the pure-Python one; 200 servers booting at once
# each have their user data read when their sshd starts.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class CloudConfig:
    authorized_keys: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    touch_paths: list[str] = field(default_factory=list)  # absolute paths inside the server's root


def parse_user_data(text: str | None) -> CloudConfig:
    """Read a #cloud-config document; anything else (scripts, MIME) gives an empty result."""
    result = CloudConfig()
    if not text or not text.lstrip().startswith("#cloud-config"):
        return result
    try:
        data = yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a safe loader, libyaml's when built
    except yaml.YAMLError:
        log.warning("user_data is not valid YAML; ignoring it")
        return result
    if not isinstance(data, dict):
        return result
    result.authorized_keys += [str(k).strip() for k in data.get("ssh_authorized_keys") or [] if k]
    if isinstance(data.get("user"), str):
        result.users.append(data["user"])
    elif isinstance(data.get("user"), dict) and data["user"].get("name"):
        result.users.append(str(data["user"]["name"]))
    for entry in data.get("users") or []:
        if isinstance(entry, dict) and entry.get("name"):
            result.users.append(str(entry["name"]))
            result.authorized_keys += [str(k).strip() for k in entry.get("ssh_authorized_keys") or [] if k]
    for cmd in data.get("runcmd") or []:
        result.touch_paths += _touch_targets(cmd)
    return result


def _touch_targets(cmd) -> list[str]:
    """Paths of a `touch` command in string or list form; other commands are not carried out."""
    try:
        argv = shlex.split(cmd) if isinstance(cmd, str) else [str(a) for a in cmd]
    except ValueError:
        return []
    if not argv or posixpath.basename(argv[0]) != "touch":
        return []
    paths = []
    for arg in argv[1:]:
        if arg.startswith("-"):
            continue
        norm = posixpath.normpath(posixpath.join("/", arg))
        paths.append(norm)
    return paths
