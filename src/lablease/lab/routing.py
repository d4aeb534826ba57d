"""Which providers serve which machine types, and which provider a node belongs to.

A machine type is one provider (a key of ``libcloud.providers``, as in teuthology's config) or several in
priority order (a key of ``libcloud.machine_types``, lablease's own: docs/lab-service.md, "Several clouds
behind one machine type"). Provider workers, warm pools, preflights, health and reconciler passes are per
provider; records and locks are per machine type. A node's ``provider`` column says which provider's attempt
made its resources: that provider destroys it and that provider's reconciler pass looks after it.
"""

from __future__ import annotations

from lablease.config.lab import LabConfig
from lablease.store import NodeFilter, NodeRecord, NodeStore


class Routes:
    """The machine types of ``config`` and their providers, in priority order."""

    def __init__(self, config: LabConfig):
        names = [*config.libcloud.providers, *config.libcloud.machine_types]
        self.types: dict[str, list[str]] = {t: config.providers_of(t) for t in names}
        self.multi = frozenset(config.libcloud.machine_types)
        self.provider_names = frozenset(config.libcloud.providers)

    def providers(self, machine_type: str | None) -> list[str]:
        """The providers of ``machine_type`` in priority order; [] for a type no provider serves."""
        return list(self.types.get(machine_type or "", []))

    def is_multi(self, machine_type: str | None) -> bool:
        """Whether ``machine_type`` is served by a list of providers (``libcloud.machine_types``)."""
        return (machine_type or "") in self.multi

    def provider_of(self, node: NodeRecord) -> str | None:
        """The provider that made (or would make) ``node``: its recorded provider when that is still configured,
        else the first provider of its machine type; None for a node of no cloud type."""
        listed = self.providers(node.machine_type)
        if not listed:
            return None
        return node.provider if node.provider in self.provider_names else listed[0]

    def types_of(self, provider: str) -> list[str]:
        """The machine types ``provider`` serves: its own and every multi-provider type that lists it."""
        return sorted(t for t, listed in self.types.items() if provider in listed)

    def records_for(self, store: NodeStore, provider: str) -> list[NodeRecord]:
        """The records ``provider`` looks after: those of its own type, and those of the multi-provider types
        that list it whose resources it made (a free node of such a type counts for the type's first provider)."""
        found: list[NodeRecord] = []
        for machine_type in self.types_of(provider):
            found.extend(r for r in store.list(NodeFilter(machine_type=machine_type)) if self.provider_of(r) == provider)
        return found
