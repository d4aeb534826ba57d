"""Job resource hints merged with the config's and the defaults, keeping the largest of each key.

teuthology passes a job's `openstack:` value as a dict or a list of dicts (one per role group);
the node must satisfy all of them, so the largest value of every key wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from pydantic import ValidationError

from lablease.config.lab import Hints

DEFAULTS = {"machine": {"disk": 20, "ram": 8000, "cpus": 1}, "volumes": {"count": 0, "size": 0}}


@dataclass(frozen=True)
class Resources:
    """What one node needs: root disk (GB), memory (MB), vCPUs and `count` volumes of `size` GB."""

    disk: int
    ram: int
    cpus: int
    volume_count: int
    volume_size: int


class HintsError(ValueError):
    """A job's hints are malformed; the message names the key."""


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _parse(item: Any, where: str) -> Hints:
    if isinstance(item, Hints):
        return item
    if not isinstance(item, dict):
        raise HintsError(f"{where}: must be a mapping with machine and volumes, not {type(item).__name__}")
    try:
        return Hints.model_validate(item)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err.get("loc", ()))
        raise HintsError(f"{where}.{key}: {err.get('msg', 'invalid value')}") from None


def merge_hints(*sources: Any) -> Resources:
    """Merge any number of hint sources (each a dict, a list of dicts, a Hints or None) with the defaults."""
    merged: dict[str, dict[str, int]] = {k: dict(v) for k, v in DEFAULTS.items()}
    items: Iterable[tuple[int, Any]] = (
        (n, item) for n, source in enumerate(sources) for item in _as_list(source)
    )
    for n, item in items:
        hints = _parse(item, f"openstack hints #{n}")
        for section in ("machine", "volumes"):
            values = getattr(hints, section).model_dump(exclude_none=True)
            for key, value in values.items():
                merged[section][key] = max(merged[section][key], int(value))
    m, v = merged["machine"], merged["volumes"]
    if v["count"] and not v["size"]:
        raise HintsError("openstack hints: volumes.count is set but volumes.size is 0; give a size in GB")
    return Resources(disk=m["disk"], ram=m["ram"], cpus=m["cpus"], volume_count=v["count"], volume_size=v["size"])
