"""Warm pools (Nodepool's min-ready): nodes provisioned ahead, so a lock of their OS is answered at once.

Per provider, ``min_ready: {"ubuntu-22.04": 2}`` keeps that many nodes ``ready`` and unlocked. A
background loop tops each pool up from idle records (never beyond the records there are, so the
records bound the cloud quota used); a lock claims warm nodes first, re-checks each over SSH (its
host key must not have changed), and never lends one that fails: that one is destroyed and the pool
replaces it. Refills that fail back off (lab.health); warm nodes are re-checked every
``warm_check_interval``; at start-up warm nodes beyond ``min_ready`` (a lowered or removed setting)
are destroyed and their records freed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from concurrent.futures import Future
from datetime import timedelta
from typing import TYPE_CHECKING

from lablease.lab.busy import Busy
from lablease.provision.errors import ProvisionError
from lablease.store import NodeFilter, NodeRecord, NodeState, Unavailable
from lablease.store.errors import Conflict
from lablease.store.eligibility import LOCK
from lablease.store.pool import POOL_OWNER
from lablease.store.records import utcnow

if TYPE_CHECKING:
    from lablease.lab.health import ProviderHealth
    from lablease.lab.host import LabHost
    from lablease.lab.workers import ProviderWorker

log = logging.getLogger(__name__)
CHECK_TIMEOUT = 5.0  # seconds a warm node has to answer its re-check over SSH
TOO_OLD = "warm node older than max_ready_age ({:g} s); destroyed and replaced by a fresh one"
SURPLUS = "surplus warm node: min_ready is lower than the warm nodes there are; destroyed and freed"
FAILED_CHECK = "failed its periodic check over SSH while warm; replaced"


def split_os(key: str) -> tuple[str, str]:
    """``ubuntu-22.04`` -> (``ubuntu``, ``22.04``)."""
    os_type, _, os_version = key.partition("-")
    return os_type, os_version


class WarmPool:
    """Keeps the warm pools of one provider full; ``interval`` seconds between looks.

    ``health`` is the provider's (lab.health): it says when the next refill may start after failures.
    Every provider has one, with or without ``min_ready``: at start-up it drains warm nodes no minimum
    keeps, then (only with a minimum) tops up and re-checks.
    """

    def __init__(self, lab: "LabHost", worker: "ProviderWorker", health: "ProviderHealth", interval: float = 2.0):
        self.lab = lab
        self.worker = worker
        self.health = health
        provider = worker.prov.provider
        self.want = {key: count for key, count in provider.min_ready.items() if count > 0}
        self.interval = interval
        self.check_interval = provider.warm_check_interval
        self.max_age = provider.max_ready_age  # seconds a warm node may wait to be lent (0: for ever)
        self._next_check = time.monotonic() + self.check_interval
        self._launches: list[tuple[NodeRecord, Future, int]] = []  # node, launch, health.failures at its start
        self._claims = Busy()  # locks taking warm nodes right now: the pool waits, so they get the idle records
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lab-pool-{worker.machine_type}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=120)

    def claiming(self) -> Busy:
        """Hold top-ups while a lock takes warm nodes and, if some fail their check, idle ones instead."""
        return self._claims

    def wants(self, os_type: str, os_version: str) -> bool:
        return self.want.get(f"{os_type}-{os_version}", 0) > 0

    def _loop(self) -> None:
        try:
            self.drain_surplus()
        except Exception:  # noqa: BLE001 - a database hiccup: the next start drains them
            log.exception("warm pool of %s: draining surplus warm nodes failed", self.worker.machine_type)
        if not self.want:
            return  # no pool: nothing to top up or check
        while not self._stop.wait(self.interval):
            try:
                self._finish_launches()
                if not (self.lab.draining or self._claims.count > 0):
                    if self.max_age > 0:
                        self.retire_old()
                    if self.health.may_refill():
                        self.top_up()
                    if self.check_interval > 0 and time.monotonic() >= self._next_check:
                        self._next_check = time.monotonic() + self.check_interval
                        self.check_warm()
            except Exception:  # noqa: BLE001 - a cloud or database hiccup: the next look tries again
                log.exception("warm pool of %s: top-up failed", self.worker.machine_type)
        for _, future, _ in self._launches:  # shutting down: let launches end and park or undo them
            future.exception()
        self._finish_launches()

    def top_up(self) -> None:
        """Start launches for every OS whose pool (warm plus coming) is below its minimum.

        After a failed refill, one node at a time until one works: a full quota or a refused password
        sees one create per backoff step, not one per missing node.
        """
        store, mtype = self.lab.store, self.worker.machine_type
        for key, want in self.want.items():
            os_type, os_version = split_os(key)
            warm, coming = store.count_warm(mtype, os_type, os_version)
            idle = len([n for n in store.list(NodeFilter(machine_type=mtype, locked=False, up=True))
                        if LOCK.allows(n)])  # what a lock of the pool may take
            need = min(want - warm - coming, idle)
            if self.health.failures:
                need = min(need, 1 if not self._launches else 0)
            if need <= 0:
                continue
            try:
                nodes = store.lock_many(need, mtype, POOL_OWNER, f"warm pool {key}", os_type=os_type,
                                        os_version=os_version, provision=True, lease_owner=self.lab.owner,
                                        lease_seconds=self.lab.lease_seconds)
            except Unavailable:
                continue  # a user's lock took them first
            log.info("warm pool %s %s: provisioning %s", mtype, key, ", ".join(n.name for n in nodes))
            round_of = self.health.failures
            for node in nodes:
                future = self.worker.launch(node.name, os_type, os_version, None, None)
                self._launches.append((node, future, round_of))

    def _finish_launches(self) -> None:
        pending = []
        for node, future, round_of in self._launches:
            if not future.done():
                pending.append((node, future, round_of))
                continue
            error = future.exception()
            if error is None:
                info = future.result()
                self.lab.store.transition(
                    node.name, NodeState.PROVISIONING, NodeState.READY, who="warm-pool", ssh_pub_key=info.host_key,
                    addresses=[info.address], cloud_server_id=info.server_id, volume_ids=list(info.volume_ids),
                    lease_owner=None, lease_expires=None)
                self.lab.store.to_pool(node.name, who="warm-pool")
                self.health.succeeded()
                continue
            self._failed(node, error, round_of)
        self._launches = pending

    def _failed(self, node: NodeRecord, error: BaseException, round_of: int) -> None:
        """A refill failed: one warning line, the provider's health and backoff updated, the node destroyed."""
        kind = error.kind if isinstance(error, ProvisionError) else None
        message = error.message if isinstance(error, ProvisionError) else f"{type(error).__name__}: {error}"
        wait = self.health.failed(kind, message, round_of)
        log.warning("warm pool %s: refilling %s failed (%s, %d in a row; next refill in %.0f s): %s",
                    self.worker.machine_type, node.name, self.health.snapshot().state.value, self.health.failures,
                    wait, message)
        self.lab.store.transition(node.name, NodeState.PROVISIONING, NodeState.DESTROYING, who="warm-pool",
                                  last_error=message[:2000])
        self.worker.destroy_now(node.name, who="warm-pool")

    # -- warm nodes no longer wanted -----------------------------------------------------------------

    def _warm_nodes(self) -> list[NodeRecord]:
        """This provider's warm nodes: ``ready`` and unlocked (up or not), in name order."""
        found = self.lab.store.list(NodeFilter(machine_type=self.worker.machine_type, locked=False))
        return [n for n in found if n.state == NodeState.READY]

    def drain_surplus(self) -> list[str]:
        """Destroy and free the warm nodes beyond ``min_ready`` of their OS (all of them without a pool).

        Run at start-up: a lowered or removed ``min_ready`` otherwise leaves servers running that no
        lock of another OS and no plain lock may take. Returns the names drained.
        """
        by_os: dict[str, list[NodeRecord]] = defaultdict(list)
        for node in self._warm_nodes():
            by_os[f"{node.os_type}-{node.os_version}"].append(node)
        surplus = [n for key, nodes in sorted(by_os.items()) for n in nodes[self.want.get(key, 0):]]
        if surplus:
            log.info("warm pool %s: draining %d surplus warm nodes (min_ready %s): %s", self.worker.machine_type,
                     len(surplus), self.want or "none", ", ".join(n.name for n in surplus))
        return self._retire(surplus, SURPLUS)

    def retire_old(self) -> list[str]:
        """Destroy the warm nodes ready for longer than ``max_ready_age`` (top-ups replace them with fresh ones)."""
        cutoff = utcnow() - timedelta(seconds=self.max_age)
        old = [n for n in self._warm_nodes() if n.state_since is not None and n.state_since < cutoff]
        if old:
            log.info("warm pool %s: replacing %d warm node(s) older than max_ready_age (%g s): %s",
                     self.worker.machine_type, len(old), self.max_age, ", ".join(n.name for n in old))
        return self._retire(old, TOO_OLD.format(self.max_age))

    def check_warm(self) -> list[str]:
        """Check every warm node over SSH as a lock would; destroy the ones that fail (top-ups replace them)."""
        warm = self._warm_nodes()
        checks = [self.worker.pool.submit(self.check, n) for n in warm]
        bad = [n for n, check in zip(warm, checks) if not check.result()]
        return self._retire(bad, FAILED_CHECK)

    def _retire(self, nodes: list[NodeRecord], reason: str) -> list[str]:
        """Take each of ``nodes`` out of the pool (skipping any a lock claimed meanwhile), destroy and free them."""
        taken = []
        for node in nodes:
            try:
                self.lab.store.take_warm(node.name, reason, who="warm-pool", lease_owner=self.lab.owner,
                                         lease_seconds=self.lab.lease_seconds)
            except Conflict:
                continue  # a lock claimed it: it is that lock's now, and it checks it itself
            taken.append(node.name)
        destroys = [(name, self.worker.destroy(name)) for name in taken]
        for name, future in destroys:
            error = future.exception()
            self.worker.record_destroyed(name, None, error, "warm-pool")
        return taken

    def check(self, node: NodeRecord) -> bool:
        """Whether a claimed warm node still answers over SSH with the host key it had when it was made.

        A key exchange against the pinned key, not a full readiness wait: the login and the ready
        command were seen to work when the node was made, and re-running them was about two thirds of a
        warm lock's time (docs/performance.md, "Warm pool"). What can happen to a warm node since (it
        stopped, its sshd died, another machine took its address) shows in the exchange: nothing
        answers, or the key differs. A refused connection fails at once rather than after retries: the
        lock then takes another node instead of waiting.
        """
        address = (node.addresses or [None])[0]
        if address is None or not node.ssh_pub_key:
            return False
        try:
            same = self.worker.prov.lifecycle.probe.host_key_matches(address, node.ssh_pub_key, CHECK_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - any failure means: do not lend it
            log.warning("warm node %s failed its check: %s", node.name, exc)
            return False
        if not same:
            log.warning("warm node %s answered with another host key; not lent", node.name)
        return same

