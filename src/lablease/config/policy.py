"""Lab policy in teuthology.yaml: lock expiry and holds per machine type, node quotas per owner.

``libcloud.providers.<type>.policy`` says how long a lock of that type lasts (``lock_hours``, what a
lock that asks for nothing gets; ``lock_hours_max``, the most a lock or its extends may reach, counted
from the moment it was locked), when it is warned about (``warn_hours`` before), how long after its
expiry it is destroyed (``grace_hours``) and how long a hold may keep it (``hold_hours_max``). A
provider without ``policy`` keeps locks until they are unlocked, as before.

``libcloud.quotas`` limits the nodes an owner (``locked_by``) may hold: ``default`` for everyone,
``owners.<locked_by>`` overriding it key by key; ``nodes`` counts every cloud type, ``machine_types``
one type each. Hours may be fractional (0.5 is 30 minutes).
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lablease.config.errors import ConfigError

MAX_HOURS = 24 * 366  # a year: anything longer is a typo (minutes given as hours)


class LockPolicy(BaseModel):
    """``libcloud.providers.<type>.policy``: how long locks of that machine type last."""

    model_config = ConfigDict(extra="forbid")

    lock_hours: float = Field(gt=0, le=MAX_HOURS, description="a lock that asks for nothing lasts this long")
    lock_hours_max: float | None = Field(default=None, gt=0, le=MAX_HOURS,
                                         description="the longest a lock may last from its start, extends included "
                                                     "(default: lock_hours)")
    warn_hours: float = Field(default=1.0, ge=0, le=MAX_HOURS,
                              description="an 'expiring' event and lablease_locks_expiring this long before")
    grace_hours: float = Field(default=0.0, ge=0, le=MAX_HOURS,
                               description="destroyed this long after the expiry")
    hold_hours_max: float = Field(default=24.0, ge=0, le=MAX_HOURS,
                                  description="the longest a hold may keep a node past its expiry (0: no holds)")

    @model_validator(mode="after")
    def _ordered(self) -> "LockPolicy":
        if self.lock_hours_max is None:
            self.lock_hours_max = self.lock_hours
        elif self.lock_hours_max < self.lock_hours:
            raise ValueError(f"lock_hours_max ({self.lock_hours_max:g}) must not be less than lock_hours "
                             f"({self.lock_hours:g}): a lock that asks for nothing would outlast the maximum")
        return self

    @property
    def max_hours(self) -> float:
        return float(self.lock_hours_max or self.lock_hours)


class QuotaLimits(BaseModel):
    """Node limits of one owner: ``nodes`` over every cloud machine type, ``machine_types`` per type."""

    model_config = ConfigDict(extra="forbid")

    nodes: int | None = Field(default=None, ge=0, description="cloud nodes held at once, all types together")
    machine_types: dict[str, int] = Field(default_factory=dict, description="cloud nodes held at once, per type")

    @model_validator(mode="after")
    def _not_negative(self) -> "QuotaLimits":
        for machine_type, limit in self.machine_types.items():
            if limit < 0:
                raise ValueError(f"machine_types.{machine_type}: must not be negative")
        return self


class Quotas(BaseModel):
    """``libcloud.quotas``: ``default`` limits for every owner; ``owners.<locked_by>`` overrides them."""

    model_config = ConfigDict(extra="forbid")

    default: QuotaLimits = Field(default_factory=QuotaLimits)
    owners: dict[str, QuotaLimits] = Field(default_factory=dict)

    def limits_for(self, owner: str) -> QuotaLimits:
        """The owner's limits: each of its own keys, else the default's."""
        own = self.owners.get(owner)
        if own is None:
            return self.default
        fields = own.model_fields_set
        return QuotaLimits(nodes=own.nodes if "nodes" in fields else self.default.nodes,
                           machine_types={**self.default.machine_types, **own.machine_types})

    def machine_types(self) -> set[str]:
        """Every machine type a limit names."""
        named = set(self.default.machine_types)
        for limits in self.owners.values():
            named |= set(limits.machine_types)
        return named


def check_quota_types(quotas: Quotas, providers: Iterable[str], *, file: str | None = None) -> None:
    """A quota naming a machine type no provider serves would never apply: say so, with the known types."""
    known = sorted(providers)
    unknown = sorted(quotas.machine_types() - set(known))
    if unknown:
        raise ConfigError(f"quota for machine type(s) {', '.join(unknown)} that no provider serves", file=file,
                          key="libcloud.quotas", fix=f"cloud machine types: {', '.join(known) or 'none'}")
