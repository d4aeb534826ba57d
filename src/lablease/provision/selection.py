"""Choose image, size, networks and security groups from the cloud's listings, as teuthology does.

Pure functions over the adapter's listings, so they are tested without a cloud.
Patterns are matched with ``re.match`` (anchored at the start), like teuthology.
"""

from __future__ import annotations

import re
from typing import Sequence

from lablease.provision.adapters.base import Image, Network, SecurityGroup, Size
from lablease.provision.errorkinds import ErrorKind
from lablease.provision.errors import ProvisionError, Stage
from lablease.provision.hints import Resources


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(re.match(p, name) for p in patterns)


def select_image(images: Sequence[Image], os_type: str, os_version: str, exclude: Sequence[str],
                 node: str | None = None) -> Image:
    """The first image the adapter made for "<type>-<version>" (``Image.os``), else the first whose lower-cased
    name contains "<type> <version>", else "<type>-<version>"."""
    candidates = [i for i in images if not _matches(i.name, exclude)]
    for image in candidates:
        if image.os and image.os.lower() == f"{os_type}-{os_version}".lower():
            return image
    for wanted in (f"{os_type} {os_version}".lower(), f"{os_type}-{os_version}".lower()):
        for image in candidates:
            if wanted in image.name.lower():
                return image
    names = ", ".join(sorted(f"{i.name} [{i.os}]" if i.os else i.name for i in candidates)) or "none"
    if any(i.os for i in images):
        raise ProvisionError(
            Stage.IMAGE, node,
            f"no image for {os_type} {os_version}: the provider's ec2.ami_name_patterns has no pattern "
            f"'{os_type}-{os_version}' that matches an AMI of ec2.ami_owners; images found per OS: {names}",
            kind=ErrorKind.CONFIG,
        )
    raise ProvisionError(
        Stage.IMAGE, node,
        f"no image for {os_type} {os_version} (a name containing '{os_type} {os_version}' or "
        f"'{os_type}-{os_version}'); images after exclude_image: {names}",
        kind=ErrorKind.CONFIG,
    )


def wants_boot_volume(size: Size, boot_from_volume: str) -> bool:
    """Whether a server of ``size`` boots from a volume made from the image: ``always``, or ``auto`` and the
    flavor has no disk of its own (disk 0: the cloud refuses to boot it from the image)."""
    return boot_from_volume == "always" or (boot_from_volume == "auto" and size.disk == 0)


def select_size(sizes: Sequence[Size], need: Resources, allow: Sequence[str], exclude: Sequence[str],
                node: str | None = None, boot_from_volume: str = "never") -> Size:
    """The smallest size (by ram, disk, vcpus) that satisfies ``need`` among the allowed ones. A size that
    boots from a volume (``wants_boot_volume``) has any disk: its root volume is made ``need.disk`` GB."""
    allowed = [s for s in sizes if _matches(s.name, allow) and not _matches(s.name, exclude)]
    fitting = [s for s in allowed if s.ram >= need.ram and s.vcpus >= need.cpus
               and (s.disk >= need.disk or wants_boot_volume(s, boot_from_volume))]
    if fitting:
        return min(fitting, key=lambda s: (s.ram, s.disk, s.vcpus, s.name))
    names = ", ".join(f"{s.name}({s.ram}MB/{s.disk}GB/{s.vcpus}cpu)" for s in sorted(allowed, key=lambda s: s.name))
    raise ProvisionError(
        Stage.SIZE, node,
        f"no size fits ram>={need.ram}MB disk>={need.disk}GB cpus>={need.cpus} among the sizes "
        f"allowed by allow_sizes/exclude_sizes: {names or 'none'}",
        kind=ErrorKind.CONFIG,
    )


def select_networks(networks: Sequence[Network], allow: Sequence[str], node: str | None = None,
                    exact: Sequence[str] = ()) -> list[Network]:
    """The networks ``exact`` names (each by id or by a unique name, in its order) when it names any, else
    all networks matching ``allow_networks``; an empty listing lets the cloud pick its default."""
    if exact:
        return [_one_network(networks, wanted, node) for wanted in exact]
    if not networks:
        return []
    chosen = [n for n in networks if _matches(n.name, allow)]
    if not chosen:
        names = ", ".join(sorted(n.name for n in networks))
        raise ProvisionError(Stage.NETWORK, node, f"no network matches allow_networks; the cloud has: {names}",
                             kind=ErrorKind.CONFIG)
    return chosen


def _one_network(networks: Sequence[Network], wanted: str, node: str | None) -> Network:
    found = [n for n in networks if n.id == wanted] or [n for n in networks if n.name == wanted]
    if len(found) == 1:
        return found[0]
    problem = "does not exist" if not found else f"is ambiguous ({len(found)} networks have that name; give its id)"
    names = ", ".join(sorted(n.name for n in networks)) or "none"
    raise ProvisionError(Stage.NETWORK, node, f"network {wanted!r} of networks {problem}; the cloud has: {names}",
                         kind=ErrorKind.CONFIG)


def select_security_groups(groups: Sequence[SecurityGroup], wanted: Sequence[str] | None,
                           node: str | None = None) -> list[SecurityGroup]:
    """Security groups by name (or id); a missing or ambiguous name is an error, not a silent default."""
    if not wanted:
        return []
    chosen = []
    for name in wanted:
        found = [g for g in groups if g.name == name] or [g for g in groups if g.id == name]
        if len(found) != 1:
            problem = "does not exist" if not found else f"is ambiguous ({len(found)} groups have that name)"
            raise ProvisionError(Stage.NETWORK, node, f"security group {name!r} {problem}; use a unique existing name",
                                 kind=ErrorKind.CONFIG)
        chosen.append(found[0])
    return chosen
