"""Floating IPs, for clouds whose servers get only a private address (``floating_ip_pool`` set).

After the server is ACTIVE its port is looked up and a floating IP from the pool is associated with it:
one of this lab's own free ones when the pool has one (re-described for the new node in the same
request, conditional on its revision so two processes never take the same one), else a new one
allocated already associated (one POST). Its id is reported ("made") as soon as it is this node's,
so the node's row names it and another process can release it after a crash.

Neutron floating IPs carry no metadata, so lablease's tags go in the description
(``lablease-lab=… lablease-node=… lablease-attempt=…``); that is how a destroy finds a node's floating
IPs and how the reconciler finds leaked ones. As Nodepool's ``clean-floating-ips`` does, a free
floating IP is a leak; lablease only ever takes its own (this lab's tag), and only after seeing it
twice. A release is one DELETE, which disassociates the address too.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from lablease.config.lab import ProviderConfig
from lablease.provision.adapters.base import CloudAdapter, FloatingIP, Network
from lablease.provision.adopt import Adopter
from lablease.provision.calls import CloudCaller
from lablease.provision.errorkinds import ErrorKind
from lablease.provision.errors import ProvisionError, Stage
from lablease.provision.models import (
    TAG_ATTEMPT,
    TAG_LAB,
    TAG_NODE,
    OwnedFloatingIP,
)

log = logging.getLogger(__name__)

# After a listing showed no free floating IP of this lab, new nodes allocate without looking again for this
# long: free ones only appear after a crash or a server deleted under its address, and the reconciler
# releases those anyway. A batch of N nodes so costs one listing, not N (docs/performance.md).
NONE_FREE_FOR = 30.0


def describe(lab: str, node: str, attempt_id: str) -> str:
    """The description that tags a floating IP as this lab's, for ``node``'s attempt ``attempt_id``."""
    return f"{TAG_LAB}={lab} {TAG_NODE}={node} {TAG_ATTEMPT}={attempt_id}"


def tags_of(fip: FloatingIP) -> dict[str, str]:
    """The tags in a floating IP's description (empty for one lablease did not describe)."""
    pairs = (word.split("=", 1) for word in fip.description.split() if "=" in word)
    return {k: v for k, v in pairs if k in (TAG_LAB, TAG_NODE, TAG_ATTEMPT)}


def pool_network(networks: list[Network], pool: str, node: str | None) -> Network:
    """The pool's network, by id or by a unique name (ProvisionError of kind CONFIG otherwise)."""
    found = [n for n in networks if n.id == pool] or [n for n in networks if n.name == pool]
    if len(found) != 1:
        problem = "is not a network of this cloud" if not found else f"names {len(found)} networks; give its id"
        names = ", ".join(sorted(n.name for n in networks)) or "none"
        raise ProvisionError(Stage.FLOATING_IP, node, f"floating_ip_pool {pool!r} {problem} (networks: {names})",
                             kind=ErrorKind.CONFIG)
    return found[0]


class FloatingIPs:
    """One provider's floating IP steps, shared by its worker threads."""

    def __init__(self, provider: ProviderConfig, lab: str, adapter: CloudAdapter, caller: CloudCaller,
                 adopter: Adopter):
        self.pool = provider.floating_ip_pool or ""
        self.lab = lab
        self.adapter = adapter
        self.caller = caller
        self.adopter = adopter
        self._claimed: set[str] = set()  # free ones a thread of this process is associating now
        self._lock = threading.Lock()
        self._listing = threading.Lock()  # one look for free ones at a time: the others use its answer
        self._none_free_until = 0.0

    # -- create ------------------------------------------------------------------------------------

    def attach(self, node: str, attempt_id: str, server_id: str, pool: Network,
               made: Callable[[str, str], None]) -> FloatingIP:
        """Associate a floating IP of ``pool`` with the server; ``made(id, "new" or "reused")`` is called as soon
        as its id is known (the caller records it for the rollback), a reused one's before it is associated."""
        a, st = self.adapter, Stage.FLOATING_IP
        port = self.caller.call(st, node, lambda: a.server_port(server_id), what="find server port")
        if port is None:
            raise ProvisionError(st, node, f"server {server_id} is ACTIVE but has no network port to associate "
                                 "a floating IP with", kind=ErrorKind.CLOUD_ERROR)
        description = describe(self.lab, node, attempt_id)
        free = self._claim(node, pool.id)
        if free is not None:
            try:
                taken = self.caller.call(st, node, lambda: a.associate_floating_ip(free.id, port, description,
                                                                                   free.revision),
                                         what="associate floating IP")
            finally:
                with self._lock:
                    self._claimed.discard(free.id)
            if taken is not None:
                # Recorded once it is ours: from the PUT on, its description names this node and attempt, which
                # is how a destroy or the reconciler finds it should this process die before the row says so.
                made(taken.id, "reused")
                log.info("floating IP reused node=%s address=%s", node, taken.address)
                return taken
            log.info("free floating IP %s was taken or released meanwhile; allocating node=%s", free.id, node)
        fip = self.adopter.create(st, node, "allocate floating IP",
                                  lambda: a.create_floating_ip(pool.id, port, description),
                                  self._find(lambda f: f.description == description))
        made(fip.id, "new")
        return fip

    def _claim(self, node: str, pool_id: str) -> FloatingIP | None:
        """One of this lab's free floating IPs of the pool, kept from the other threads of this process; None
        without a look when the last look, less than ``NONE_FREE_FOR`` seconds ago, found none."""
        with self._listing:
            if time.monotonic() < self._none_free_until:
                return None
            listed = self.caller.call(Stage.FLOATING_IP, node, lambda: self.adapter.list_floating_ips(pool_id),
                                      what="list floating IPs")
            with self._lock:
                for fip in sorted(listed, key=lambda f: f.id):
                    if fip.port_id is None and tags_of(fip).get(TAG_LAB) == self.lab and fip.id not in self._claimed:
                        self._claimed.add(fip.id)
                        return fip
            self._none_free_until = time.monotonic() + NONE_FREE_FOR
        return None

    def _find(self, pick: Callable[[FloatingIP], bool]) -> Callable[[], FloatingIP | None]:
        def find() -> FloatingIP | None:
            found = [f for f in self.adapter.list_floating_ips() if pick(f)]
            return found[0] if found else None
        return find

    # -- release -------------------------------------------------------------------------------------

    def listed(self, node: str | None) -> list[FloatingIP]:
        """Every floating IP of the project, listed now (ProvisionError when the cloud does not answer)."""
        return self.caller.call(Stage.DESTROY, node, self.adapter.list_floating_ips, what="list floating IPs")

    def release(self, node: str, ids: list[str], pick: Callable[[FloatingIP], bool] | None = None,
                listed: list[FloatingIP] | None = None) -> list[str]:
        """Release ``ids`` and every floating IP ``pick`` chooses from ``listed`` (or a listing taken now); what
        could not be released. No listing confirms it: a DELETE Neutron answered is done (it is not asynchronous).
        """
        problems: list[str] = []
        wanted = list(dict.fromkeys(ids))
        if pick is not None:
            try:
                listed = self.listed(node) if listed is None else listed
            except ProvisionError as exc:
                return [f"could not list the floating IPs of {node}: {exc.message}"]
            wanted += [f.id for f in listed if pick(f) and f.id not in wanted]
        for fip_id in wanted:
            try:
                self.caller.call(Stage.DESTROY, node, lambda f=fip_id: self.adapter.delete_floating_ip(f),
                                 what=f"release floating IP {fip_id}")
            except ProvisionError as exc:
                problems.append(f"floating IP {fip_id}: {exc.message}")
        return problems

    def of_node(self, node: str) -> Callable[[FloatingIP], bool]:
        """Picks ``node``'s floating IPs of this lab (any attempt): what its destroy releases."""
        return lambda f: tags_of(f).get(TAG_NODE) == node and tags_of(f).get(TAG_LAB) == self.lab

    def of_attempt(self, attempt_id: str) -> Callable[[FloatingIP], bool]:
        return lambda f: tags_of(f).get(TAG_ATTEMPT) == attempt_id and tags_of(f).get(TAG_LAB) == self.lab

    # -- the reconciler ----------------------------------------------------------------------------

    def owned(self) -> list[OwnedFloatingIP]:
        """Every floating IP tagged with this lab."""
        listed = self.caller.call(Stage.LIST, None, self.adapter.list_floating_ips, what="list floating IPs")
        return [OwnedFloatingIP(f.id, f.address, tags.get(TAG_NODE, ""), tags.get(TAG_ATTEMPT, ""), f.port_id,
                                f.description) for f in listed if (tags := tags_of(f)).get(TAG_LAB) == self.lab]

    def remove(self, leaks: dict[str, str]) -> list[str]:
        """Release the leaks (id -> the description they were judged by) that still carry that description:
        one re-described meanwhile (reused for a new node) is no longer the leak that was seen."""
        listed = {f.id: f for f in self.caller.call(Stage.DESTROY, None, self.adapter.list_floating_ips,
                                                    what="list floating IPs")}
        still = [i for i, text in sorted(leaks.items()) if i in listed and listed[i].description == text]
        return self.release("(leaks)", still)
