"""What `lablease config check` finds in a lab's teuthology.yaml beyond what loading it already refuses.

Errors are what would make lablease fail later (no usable SSH key, an unknown key in the
``lablease:`` section); warnings are what is probably a mistake but may be meant (a top-level key
that looks like one of lablease's, a provider whose nodes get no DNS name). The file is the lab's
shared teuthology.yaml, so other top-level keys are teuthology's and pass without a word.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lablease.config.errors import ConfigError
from lablease.config.lab import LabConfig
from lablease.config.loader import did_you_mean


@dataclass(frozen=True)
class Finding:
    level: str  # "error" or "warning"
    text: str


def top_level_keys() -> set[str]:
    """The top-level keys lablease reads: the lab config's and the lock server's, each defined once in its model."""
    from lablease.lockapi.settings import TopLevel

    return set(LabConfig.model_fields) | set(TopLevel.model_fields)


def near_misses(data: dict[str, Any], file: str) -> list[Finding]:
    """A warning for each top-level key that looks like a misspelt key of lablease's (``libclod:``)."""
    known = top_level_keys()
    found = []
    for key in data:
        if key in known:
            continue
        guess = did_you_mean(str(key), known, cutoff=0.8)
        if guess:
            found.append(Finding("warning", f"{file}: {key}: not a key lablease reads; did you mean {guess!r}? "
                                            "(lablease ignores it, as it ignores teuthology's own keys)"))
    return found


def lablease_section(data: dict[str, Any], file: str) -> list[Finding]:
    """The ``lablease:`` section as ``lablease serve`` reads it: an unknown or bad key there is an error."""
    from lablease.lockapi.settings import LockSettings

    try:
        LockSettings.from_mapping(data, file=file)
    except ConfigError as exc:
        return [Finding("error", str(exc))]
    return []


def ssh_keys(lab: LabConfig, file: str) -> list[Finding]:
    """An error for each provider whose nodes lablease could not log in to: no key, or one it cannot read."""
    from lablease.provision.context import lab_key

    found = []
    for name, provider in sorted(lab.libcloud.providers.items()):
        try:
            lab_key(provider, name)
        except ConfigError as exc:
            found.append(Finding("error", f"{file}: {exc}"))
    return found


def driver_args(lab: LabConfig, file: str) -> list[Finding]:
    """A warning for each driver_args key the cloud driver silently ignores (``ex_tennant_name``)."""
    from lablease.provision.adapters.openstack import unknown_driver_args

    found = []
    for name, provider in sorted(lab.libcloud.providers.items()):
        if provider.driver != "openstack":  # ec2: an unknown key is already an error when the config loads
            continue
        unknown = unknown_driver_args(provider.driver_args)
        if unknown:
            found.append(Finding("warning", f"{file}: libcloud.providers.{name}.driver_args: libcloud's OpenStack "
                                            f"driver ignores {', '.join(unknown)}"))
    return found


def dns(lab: LabConfig, file: str) -> list[Finding]:
    """A warning when providers exist but no DNS service is configured: their nodes would get no name."""
    if lab.nsupdate_url or not lab.libcloud.providers:
        return []
    names = ", ".join(sorted(lab.libcloud.providers))
    return [Finding("warning", f"{file}: nsupdate_url is not set, so nodes of {names} will get no DNS name "
                               f"(nothing will resolve <node>.{lab.lab_domain}); set nsupdate_url to the DNS "
                               "service, e.g. http://HOST:8053/update (docs/dns.md)")]


def check_lab_file(data: dict[str, Any], lab: LabConfig, file: str) -> list[Finding]:
    """Every finding about a loaded lab config, errors first."""
    found = (lablease_section(data, file) + ssh_keys(lab, file) + near_misses(data, file)
             + driver_args(lab, file) + dns(lab, file))
    return sorted(found, key=lambda f: f.level != "error")
