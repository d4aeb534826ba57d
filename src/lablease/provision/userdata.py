"""The cloud-config user-data a node boots with: user, hostname, packages, keys, readiness marker."""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import yaml

READY_MARKER = "/.teuth_provisioned"
DEFAULT_PACKAGES = ["git", "wget", "python3"]


def build_userdata(
    *,
    hostname: str,
    fqdn: str,
    user: str,
    authorized_keys: Sequence[str],
    os_type: str,
    os_version: str,
    per_os: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """Render ``#cloud-config`` YAML.

    As teuthology does: the provider's ``userdata[<os_type>-<os_version>]`` overrides the base
    keys, its ``runcmd`` runs before lablease's own (remove the password, touch the marker), and
    hostname/manage_etc_hosts come from it when it sets manage_etc_hosts.
    """
    extra = copy.deepcopy(dict((per_os or {}).get(f"{os_type}-{os_version}", {})))
    runcmd = list(extra.pop("runcmd", []) or [])
    keys = list(authorized_keys) + [k for k in (extra.pop("ssh_authorized_keys", []) or []) if k not in authorized_keys]
    data: dict[str, Any] = {"user": user, "packages": list(DEFAULT_PACKAGES)}
    if "manage_etc_hosts" not in extra:
        data.update(manage_etc_hosts=True, hostname=hostname, fqdn=fqdn)
    data.update(extra)
    data["ssh_authorized_keys"] = keys
    data["runcmd"] = runcmd + [["passwd", "-d", user], ["touch", READY_MARKER]]
    return "#cloud-config\n" + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
