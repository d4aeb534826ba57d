"""Warm pools (Nodepool's min-ready): nodes provisioned ahead, so a lock of their OS is answered at once.

Per provider, ``min_ready: {"ubuntu-22.04": 2}`` keeps that many nodes ``ready`` and unlocked. A
background loop tops each pool up from idle records (never beyond the records there are, so the
records bound the cloud quota used); a lock claims warm nodes first, re-checks each over SSH (its
host key must not have changed), and never lends one that fails: that one is destroyed and the pool
replaces it.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING

from lablease.lab.busy import Busy
from lablease.provision.errors import ProvisionError
from lablease.store import NodeFilter, NodeRecord, NodeState, Unavailable
from lablease.store.eligibility import LOCK
from lablease.store.pool import POOL_OWNER

if TYPE_CHECKING:
    from lablease.lab.host import LabHost
    from lablease.lab.workers import ProviderWorker

log = logging.getLogger(__name__)
CHECK_TIMEOUT = 5.0  # seconds a warm node has to answer its re-check over SSH


def split_os(key: str) -> tuple[str, str]:
    """``ubuntu-22.04`` -> (``ubuntu``, ``22.04``)."""
    os_type, _, os_version = key.partition("-")
    return os_type, os_version


class WarmPool:
    """Keeps the warm pools of one provider full; ``interval`` seconds between looks."""

    def __init__(self, lab: "LabHost", worker: "ProviderWorker", interval: float = 2.0):
        self.lab = lab
        self.worker = worker
        self.want = dict(worker.prov.provider.min_ready)
        self.interval = interval
        self._launches: list[tuple[NodeRecord, Future]] = []
        self._claims = Busy()  # locks taking warm nodes right now: the pool waits, so they get the idle records
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lab-pool-{worker.machine_type}", daemon=True)

    def start(self) -> None:
        if self.want:
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
        while not self._stop.wait(self.interval):
            try:
                self._finish_launches()
                if not (self.lab.draining or self._claims.count > 0):
                    self.top_up()
            except Exception:  # noqa: BLE001 - a cloud or database hiccup: the next look tries again
                log.exception("warm pool of %s: top-up failed", self.worker.machine_type)
        for node, future in self._launches:  # shutting down: let launches end and park or undo them
            future.exception()
        self._finish_launches()

    def top_up(self) -> None:
        """Start launches for every OS whose pool (warm plus coming) is below its minimum."""
        store, mtype = self.lab.store, self.worker.machine_type
        for key, want in self.want.items():
            os_type, os_version = split_os(key)
            warm, coming = store.count_warm(mtype, os_type, os_version)
            idle = len([n for n in store.list(NodeFilter(machine_type=mtype, locked=False, up=True))
                        if LOCK.allows(n)])  # what a lock of the pool may take
            need = min(want - warm - coming, idle)
            if need <= 0:
                continue
            try:
                nodes = store.lock_many(need, mtype, POOL_OWNER, f"warm pool {key}", os_type=os_type,
                                        os_version=os_version, provision=True, lease_owner=self.lab.owner,
                                        lease_seconds=self.lab.lease_seconds)
            except Unavailable:
                continue  # a user's lock took them first
            log.info("warm pool %s %s: provisioning %s", mtype, key, ", ".join(n.name for n in nodes))
            for node in nodes:
                self._launches.append((node, self.worker.launch(node.name, os_type, os_version, None, None)))

    def _finish_launches(self) -> None:
        pending = []
        for node, future in self._launches:
            if not future.done():
                pending.append((node, future))
                continue
            error = future.exception()
            if error is None:
                info = future.result()
                self.lab.store.transition(
                    node.name, NodeState.PROVISIONING, NodeState.READY, who="warm-pool", ssh_pub_key=info.host_key,
                    addresses=[info.address], cloud_server_id=info.server_id, volume_ids=list(info.volume_ids),
                    lease_owner=None, lease_expires=None)
                self.lab.store.to_pool(node.name, who="warm-pool")
                continue
            message = error.message if isinstance(error, ProvisionError) else repr(error)
            log.warning("warm pool: %s failed: %s", node.name, message)
            self.lab.store.transition(node.name, NodeState.PROVISIONING, NodeState.DESTROYING, who="warm-pool",
                                      last_error=message[:2000])
            self.worker.destroy_now(node.name, who="warm-pool")
        self._launches = pending

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

