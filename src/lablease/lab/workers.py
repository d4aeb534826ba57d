"""One long-lived worker pool per provider: its Provisioner, its threads, its progress.

The lab service keeps one ``ProviderWorker`` per cloud machine type for its whole life, so the
token, the listings and the rate limiter are shared by every request, and at most
``max_parallel`` launches and destroys of that provider run at once. Every stage the engine
reports is persisted on the node's row first (what the attempt made), then published.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from lablease.lab.bus import LabEvent, ProgressBus
from lablease.provision.engine import Provisioner
from lablease.provision.errors import ProvisionError
from lablease.provision.models import NodeInfo, ProgressCallback, ProgressEvent
from lablease.store import NodeState, NodeStore

log = logging.getLogger(__name__)


@dataclass
class Job:
    """A node being worked on: its record name, the lock request it belongs to, when it began."""

    record: str
    request: str | None
    cancel: threading.Event | None = None  # a create's own: set, that create stops and rolls back
    started: float = field(default_factory=time.monotonic)
    attempt_id: str | None = None
    volume_ids: list[str] = field(default_factory=list)
    floating_ip_ids: list[str] = field(default_factory=list)


class ProviderWorker:
    """Launch and destroy nodes of one provider on a bounded, long-lived thread pool.

    ``build`` makes the provider's Provisioner, given the progress callback (this worker's) to build it with.
    """

    def __init__(self, machine_type: str, build: Callable[[ProgressCallback], Provisioner], store: NodeStore,
                 bus: ProgressBus, *, actor: str = "lablease"):
        self.machine_type = machine_type
        self.store = store
        self.bus = bus
        self.actor = actor
        self._jobs: dict[str, Job] = {}  # engine's short node name -> job
        self._launches: dict[str, Job] = {}  # short name -> create queued or running (stop_create finds it)
        self._lock = threading.Lock()
        self.prov = build(self._on_progress)
        self.pool = ThreadPoolExecutor(max_workers=self.prov.provider.max_parallel,
                                       thread_name_prefix=f"lab-{machine_type}")

    # -- work --------------------------------------------------------------------------------------

    def launch(self, record: str, os_type: str, os_version: str, hints: Any, request: str | None,
               cancel: threading.Event | None = None) -> Future[NodeInfo]:
        """Create the node of ``record`` (ProvisionError on failure, after the engine's own rollback).
        Setting ``cancel`` stops this create (kind "cancelled"), queued or running; the others go on."""
        job = Job(record, request, cancel or threading.Event())
        with self._lock:
            self._launches[self.prov.short_name(record)] = job  # queued or running, until it ends
        return self.pool.submit(self._run, job, lambda: self._create(record, os_type, os_version, hints, job.cancel))

    def destroy(self, record: str, request: str | None = None) -> Future[None]:
        """Destroy every server, volume and the DNS name of ``record`` (ProvisionError when something remains)."""
        return self.pool.submit(self._run, Job(record, request),
                                lambda: self.prov.destroy(record, dns_written=self._dns_written(record)))

    def _dns_written(self, record: str) -> bool:
        """Whether an attempt of ``record`` may have registered its name (when unsure: yes)."""
        try:
            return bool(self.store.get(record).dns_written)
        except Exception:  # noqa: BLE001 - NotFound or a database hiccup: assume the name may be there
            return True

    def destroy_now(self, name: str, *, who: str = "lablease") -> bool:
        """The same as an unlock's destroy, for a node already in ``destroying``, from a plain thread."""
        try:
            self.destroy(name).result()
        except Exception as exc:  # noqa: BLE001
            return self.record_destroyed(name, None, exc, who)
        return self.record_destroyed(name, None, None, who)

    def record_destroyed(self, name: str, request: str | None, error: BaseException | None, who: str) -> bool:
        """Record a destroy's outcome: the node is freed, or stays locked in destroy-failed with the reason."""
        if error is not None:
            message = error.message if isinstance(error, ProvisionError) else f"{type(error).__name__}: {error}"
            log.error("destroy failed node=%s error=%s", name, message)
            self.store.transition(name, NodeState.DESTROYING, NodeState.DESTROY_FAILED, who=who,
                                  last_error=message[:2000], lease_owner=None, lease_expires=None)
            return False
        self.store.free(name, who=who)
        self.bus.publish(LabEvent(node=name, machine_type=self.machine_type, stage="destroy", status="freed",
                                  request=request))
        return True

    def _create(self, record: str, os_type: str, os_version: str, hints: Any, cancel: threading.Event) -> NodeInfo:
        self.prov.prepare()
        return self.prov.create(record, os_type, os_version, hints, cancel=cancel)

    def _run(self, job: Job, work):  # noqa: ANN001, ANN202
        short = self.prov.short_name(job.record)
        with self._lock:
            self._jobs[short] = job
        try:
            return work()
        finally:
            with self._lock:
                self._jobs.pop(short, None)
                if self._launches.get(short) is job:
                    self._launches.pop(short, None)

    def creating(self) -> list[str]:
        """The records this worker is creating now or has queued."""
        with self._lock:
            return [job.record for job in self._launches.values()]

    def stop_create(self, record: str) -> bool:
        """Stop the create of ``record`` queued or running here (it rolls back what it made); whether there was one."""
        with self._lock:
            job = self._launches.get(self.prov.short_name(record))
        if job is None or job.cancel is None:
            return False
        job.cancel.set()
        return True

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.prov.close()

    # -- progress ----------------------------------------------------------------------------------

    def _on_progress(self, event: ProgressEvent) -> None:
        if not event.node:  # a call that serves every node (a shared listing): each job shows it
            self._broadcast(event)
            return
        with self._lock:
            job = self._jobs.get(event.node)
        if job is None:
            return
        try:
            self._persist(job, event)
        except Exception:  # noqa: BLE001 - the engine's own rollback still knows what it made
            log.exception("could not persist progress node=%s stage=%s", job.record, event.stage)
        self.bus.publish(LabEvent(
            node=job.record, machine_type=self.machine_type, stage=event.stage, status=event.status,
            request=job.request, attempt=event.attempt, message=event.message,
            elapsed=round(time.monotonic() - job.started, 3), made=dict(event.made)))

    def _broadcast(self, event: ProgressEvent) -> None:
        """Publish a provider-wide event (a repeated listing) for every node at work; it is not persisted."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            self.bus.publish(LabEvent(
                node=job.record, machine_type=self.machine_type, stage=event.stage, status=event.status,
                request=job.request, attempt=event.attempt, message=event.message,
                elapsed=round(time.monotonic() - job.started, 3)))

    def _persist(self, job: Job, event: ProgressEvent) -> None:
        """Write what the attempt made on the row before the engine goes on (a restart can then undo it)."""
        fields: dict[str, Any] = {}
        if event.attempt_id and event.attempt_id != job.attempt_id:
            job.attempt_id, job.volume_ids, job.floating_ip_ids = event.attempt_id, [], []
            fields.update(attempt_id=event.attempt_id, cloud_server_id=None, volume_ids=[], floating_ip_ids=[],
                          dns_written=False, provider=self.machine_type)  # this worker's provider makes what the attempt makes
        if event.status == "made":
            if "server_id" in event.made:
                fields["cloud_server_id"] = event.made["server_id"]
            if "volume_id" in event.made:
                job.volume_ids.append(event.made["volume_id"])
                fields["volume_ids"] = list(job.volume_ids)
            if "floating_ip_id" in event.made:  # recorded before it is associated: a crash can release it
                job.floating_ip_ids.append(event.made["floating_ip_id"])
                fields["floating_ip_ids"] = list(job.floating_ip_ids)
            if "dns" in event.made:
                fields["dns_written"] = True
        if fields:
            self.store.note_attempt(job.record, who=self.actor, **fields)
        if event.status in ("failed", "retry") or (event.status == "start" and event.stage not in _NO_START_ROW) or \
                (event.stage == "ready" and event.status == "done"):
            # A start's message names its step (volume create/attach), not an error: only failures keep theirs.
            error = "" if event.status == "start" else event.message
            self.store.record_stage(job.record, event.stage, event.status, event.attempt, error, who=self.actor,
                                    console=event.console)


# Stages whose "start" row says nothing the trail does not already say: image, size and network pick
# from cached listings and the next stage's row follows within milliseconds; a destroy starts right
# after the node's move to destroying, which has its own row. 4 of a lock's 17 rows (docs/performance.md);
# their failures and retries are still written.
_NO_START_ROW = frozenset({"image", "size", "network", "destroy"})
