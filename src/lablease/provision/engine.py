"""The provisioning engine: create and destroy nodes of one provider, many at a time, leaving nothing behind.

Lifecycle, retries, rollback and parallelism live here once; the adapter below only speaks to
one libcloud driver family. One ``Provisioner`` per provider (machine type) and process: it
shares the token, the listings and the rate limiter among its worker threads.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from typing import Any, Callable, Iterable

from lablease.config.lab import LabConfig
from lablease.hostnames import HostNameError, decanonicalize_hostname, node_short_name
from lablease.provision.confirm import DestroyCheck
from lablease.provision.context import ProvisionerOptions, build_context
from lablease.provision.errorkinds import ErrorKind
from lablease.provision.errors import ProvisionError, Stage
from lablease.provision.hints import HintsError, merge_hints
from lablease.provision.lifecycle import Lifecycle, Track, release_floating, volume_pattern
from lablease.provision.console import failure_console
from lablease.provision.models import (TAG_ATTEMPT, TAG_LAB, TAG_NODE, CreateRequest, NodeInfo, Outcome,
                                       OwnedResources, OwnedServer, OwnedVolume, ProgressCallback, ProgressEvent)
from lablease.provision.parallel import map_interruptible
from lablease.provision.waiting import cancelled

log = logging.getLogger(__name__)


def _no_progress(event: ProgressEvent) -> None:
    return None


class Provisioner:
    """Create, destroy and list the nodes of one provider.

    ``dns_client`` is a ``lablease.dns.client.DNSClient`` (or None to skip DNS); ``on_progress``
    gets a ``ProgressEvent`` for every stage of every node, from worker threads; ``owned_dns`` is a
    DNS client this Provisioner closes in ``close()`` (``provisioner_from_config``'s). How the cloud
    is reached is built from the config and ``options`` (``context.build_context``); ``close()``
    stops the shared listings.
    """

    def __init__(self, config: LabConfig, machine_type: str, dns_client: Any = None,
                 options: ProvisionerOptions | None = None, *, on_progress: ProgressCallback | None = None,
                 owned_dns: Any = None):
        self.config = config
        self.machine_type = machine_type
        self._on_progress = on_progress or _no_progress
        self.context = build_context(config, machine_type, dns_client, options or ProvisionerOptions(),
                                     on_retry=self._retrying)
        ctx = self.context
        self.provider = ctx.provider
        self.lab = ctx.lab
        self.dns_client = dns_client
        self.adapter = ctx.cloud.adapter
        self.limiter = ctx.cloud.limiter
        self.caller = ctx.cloud.caller
        self.listings = ctx.cloud.listings
        self.public_keys = ctx.public_keys
        self._cancel = ctx.cancel  # shared with the lifecycle's waits; see cancel()
        self.servers = ctx.cloud.servers
        self.volumes = ctx.cloud.volumes
        self.lifecycle = Lifecycle(ctx, self._emit)
        self.check = DestroyCheck(self.lifecycle, self._snapshot, self._mine, self._emit)
        self._auth_once = threading.Lock()
        self._owned_dns = owned_dns

    def close(self) -> None:
        """Stop the shared listings and release what this Provisioner opened itself (the DNS client of
        provisioner_from_config). Waits still running raise; close only when no create or destroy runs."""
        context = getattr(self, "context", None)
        if context is not None:
            context.cloud.close()
        owned = getattr(self, "_owned_dns", None)
        if owned is not None:
            owned.close()
            self._owned_dns = None

    def __enter__(self) -> "Provisioner":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- cancel ----------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop creating, from any thread (a signal handler, a service shutting down): no new attempt or
        node starts, every create wait raises ProvisionError(kind=CANCELLED) within a fraction of a
        second, and each attempt's rollback still runs in full. Nodes a ``create_many`` already had up
        are destroyed again. Destroy is never cancelled. It holds until ``reset()``."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:  # cancel() was called, and not reset() since
        return self._cancel.is_set()

    def reset(self) -> None:  # accept creates again after cancel(); only when no create is running
        self._cancel.clear()

    def _check_cancel(self, node: str, attempt: int) -> None:
        """Refuse to start ``attempt`` once cancelled: nothing new may be made while rolling back."""
        if self._cancel.is_set():
            raise cancelled(Stage.CREATE, node, f"starting attempt {attempt}")

    def _emit(self, event: ProgressEvent) -> None:
        try:
            self._on_progress(event)
        except Exception:  # a broken progress bar must not break provisioning
            log.exception("progress callback failed node=%s stage=%s", event.node, event.stage)

    def _retrying(self, stage: Stage, node: str | None, words: str) -> None:
        """A cloud call is being repeated: a "waiting" event (node "" when the call serves every node)."""
        self._emit(ProgressEvent(node or "", stage.value, "waiting", message=words))

    def short_name(self, name: str) -> str:
        """``Node1.Front.example.com`` -> ``node1``, unchecked (for messages); servers and DNS use the short name."""
        return decanonicalize_hostname(name, self.config.lab_domain)

    def node_name(self, name: str, stage: Stage) -> str:
        """The lower-case short name of ``name``, refused (ProvisionError) unless one host label in the lab domain.

        Node names are DNS names, so ``Node1`` and ``node1`` must be one server; an empty or odd name
        would otherwise name a server, a DNS record and the volume pattern destroy deletes by.
        """
        try:
            return node_short_name(name, self.config.lab_domain)
        except HostNameError as exc:
            raise ProvisionError(stage, self.short_name(name) or None, f"bad node name: {exc}") from None

    def prepare(self) -> None:
        """Authenticate once before the worker threads start, so they share one token."""
        with self._auth_once:
            self.caller.call(Stage.AUTH, None, self.adapter.authenticate, what="authenticate")

    def check_access(self) -> None:
        """ProvisionError (kind AUTH or UNREACHABLE among others) unless the cloud takes the credentials: one
        token fetch through the token cache, not repeated; once an outage was seen, also one listing."""
        try:
            self.adapter.authenticate()
        except Exception as exc:  # noqa: BLE001 - every driver error becomes a named ProvisionError
            raise self.caller.to_error(Stage.AUTH, None, exc, "authenticate") from None
        if self.caller.unreachable:  # a cached token proves nothing about an outage: ask the cloud
            self.caller.call(Stage.AUTH, None, self.adapter.ping, what="check that the cloud answers")

    # -- create ----------------------------------------------------------------------------------

    def create(self, name: str, os_type: str, os_version: str, hints: Any = None,
               cancel: threading.Event | None = None) -> NodeInfo:
        """Create one node, ready over SSH and named in DNS, or raise ProvisionError with nothing left behind
        (kind "cancelled" after ``cancel()``, or once ``cancel``, this create's own event, is set)."""
        with self._cancel.scope(cancel):
            return self._create(name, os_type, os_version, hints)

    def _create(self, name: str, os_type: str, os_version: str, hints: Any) -> NodeInfo:
        node = self.node_name(name, Stage.CREATE)
        try:
            need = merge_hints(self.config.openstack, hints)
        except HintsError as exc:
            raise ProvisionError(Stage.SIZE, node, str(exc)) from None
        retries = self.provider.launch_retries
        for attempt in range(1, retries + 1):
            self._check_cancel(node, attempt)
            track = Track(node=node, attempt=attempt, attempt_id=f"{attempt}-{uuid.uuid4().hex[:10]}")
            try:
                info = self.lifecycle.create(track, os_type, os_version, need)
                self._emit(ProgressEvent(node, "ready", "done", attempt, attempt_id=track.attempt_id))
                log.info("node ready node=%s server=%s address=%s attempt=%d seconds=%.1f",
                         node, info.server_id, info.address, attempt, info.seconds)
                return info
            except BaseException as exc:  # noqa: BLE001 - roll back on anything, even Ctrl-C
                error = exc if isinstance(exc, ProvisionError) else ProvisionError(
                    track.stage, node, f"unexpected {type(exc).__name__}: {exc}", kind=ErrorKind.BUG)
                console = failure_console(self.caller, self.adapter, error, track.server_ids)  # before the rollback
                problems = self.lifecycle.rollback(track)
                if problems:
                    # Something of this attempt may remain; do not pile more attempts on top of it.
                    error = ProvisionError(error.stage, node, f"{error.message}; rollback incomplete: "
                                           + "; ".join(problems), kind=ErrorKind.LEFTOVER)
                if not isinstance(exc, Exception):
                    raise
                last = attempt == retries or not error.retryable or self.cancelled
                self._emit(ProgressEvent(node, error.stage.value, "failed" if last else "retry", attempt, error.message,
                                         attempt_id=track.attempt_id, console=console))
                # A final failure is the caller's to report (the lock's answer and warning, the warm pool's
                # one line per refill); a warning here too would say it twice.
                log.log(logging.INFO if last else logging.WARNING, "create failed node=%s attempt=%d/%d stage=%s "
                        "retry=%s error=%s", node, attempt, retries, error.stage.value, not last, error.message)
                if last:
                    if attempt > 1:
                        error = ProvisionError(error.stage, node, f"{error.message} (after {attempt} attempts)",
                                               kind=error.kind)
                    raise error from None
                # Backoff that cancel() cuts short; the next loop head then refuses the attempt.
                self._cancel.wait(min(10.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")

    def create_many(self, requests: Iterable[CreateRequest], *, all_or_nothing: bool = False) -> list[Outcome]:
        """Create nodes up to ``max_parallel`` at a time; one Outcome per request, in order.

        With ``all_or_nothing`` a single failure destroys the nodes that did come up; so does ``cancel()``.
        """
        requests = list(requests)
        try:
            self.prepare()
        except ProvisionError as exc:
            return [Outcome(r.name, False, error=ProvisionError(exc.stage, self.short_name(r.name), exc.message,
                                                                 kind=exc.kind)) for r in requests]

        # The same node twice would race itself: two servers of one name and one DNS record.
        seen: set[str] = set()
        repeated: set[int] = set()
        for i, r in enumerate(requests):
            node = self.short_name(r.name).lower()
            if node in seen:
                repeated.add(i)
            seen.add(node)

        def one(item: tuple[int, CreateRequest]) -> Outcome:
            i, req = item
            try:
                if i in repeated:
                    raise ProvisionError(Stage.CREATE, self.short_name(req.name),
                                         "requested more than once in the same batch; created once only")
                return Outcome(req.name, True, node=self.create(req.name, req.os_type, req.os_version, req.hints))
            except ProvisionError as exc:
                return Outcome(req.name, False, error=exc)

        def undo(finished: list[Outcome]) -> None:
            made = [o.name for o in finished if o.ok]
            log.warning("create interrupted: destroying the nodes that came up nodes=%s", ",".join(made) or "none")
            for undone in self.destroy_many(made):
                if not undone.ok:
                    log.error("cleanup after interrupt failed node=%s error=%s", undone.name, undone.error)

        outcomes = self._map(one, list(enumerate(requests)), on_interrupt=undo)
        if self.cancelled:
            self._destroy_made(outcomes, "the create was cancelled", kind=ErrorKind.CANCELLED)
        elif all_or_nothing and not all(o.ok for o in outcomes):
            self._destroy_made(outcomes, "another node of the request failed")
        return outcomes

    def _destroy_made(self, outcomes: list[Outcome], why: str, kind: ErrorKind = ErrorKind.FATAL) -> None:
        """Destroy the nodes of ``outcomes`` that came up and turn each into a failure that says ``why``."""
        made = [o for o in outcomes if o.ok]
        for o, undone in zip(made, self.destroy_many([o.name for o in made])):
            if undone.ok:
                message = f"destroyed again because {why}"
            else:  # say that it is still there: the caller must not think nothing is left
                log.error("cleanup failed node=%s why=%s error=%s", undone.name, why, undone.error)
                message = f"{why}, and destroying this one failed too, so it may remain: {undone.error.message}"
            o.ok, o.node = False, None
            o.error = ProvisionError(Stage.DESTROY, self.short_name(o.name), message, kind=kind)

    def _map(self, fn, items: list, on_interrupt: Callable[[list], None] | None = None) -> list:
        """``fn`` over ``items`` on up to ``max_parallel`` threads; Ctrl-C cancels the engine (``map_interruptible``)."""
        return map_interruptible(fn, items, workers=self.provider.max_parallel, name=f"prov-{self.machine_type}",
                                 on_stop=self.cancel, on_interrupt=on_interrupt)

    # -- destroy ---------------------------------------------------------------------------------

    def _snapshot(self) -> tuple[list, list]:
        """All servers and volumes, from listings begun now (shared with concurrent destroys and waits)."""
        timeout = self.provider.api_retry_time + self.provider.api_timeout
        return (self.servers.fresh(Stage.DESTROY, None, timeout), self.volumes.fresh(Stage.DESTROY, None, timeout))

    def _destroy(self, node: str, servers: list, volumes: list, dns_written: bool = True,
                 fips: list | None = None) -> None:
        self._emit(ProgressEvent(node, Stage.DESTROY.value, "start"))
        mine_servers, mine_volumes = self._mine(node, servers, volumes)
        problems = release_floating(self.lifecycle, node, fips)
        problems += self.lifecycle.teardown(node, mine_servers, mine_volumes, dns=dns_written)
        if not dns_written:
            self._forget_name(node)
        if problems:
            self._emit(ProgressEvent(node, Stage.DESTROY.value, "failed", message="; ".join(problems)))
            raise ProvisionError(Stage.DESTROY, node, "; ".join(problems))
        # "done" comes from self.check, once listings begun after the deletes show nothing of the node.
        log.info("node torn down node=%s servers=%d volumes=%d", node, len(mine_servers), len(mine_volumes))

    def _mine(self, node: str, servers: list, volumes: list) -> tuple[list[str], list]:
        """The ids of ``node``'s servers and its volumes (``<node>_<i>``) among these.

        By name, as teuthology does (after an outage there may be several servers of one name),
        but never what another lab tagged as its own: labs may share a project.
        """
        pattern = volume_pattern(node)
        return ([s.id for s in servers if s.name == node and self._not_foreign(s.metadata)],
                [v for v in volumes if pattern.fullmatch(v.name) and self._not_foreign(v.metadata)])

    def _forget_name(self, node: str) -> None:
        """Delete a DNS name that was never written, just in case; failing is no reason to fail the destroy
        (the reconciler removes names of free nodes it still finds in the zone)."""
        if self.dns_client is None:
            return
        try:
            self.dns_client.delete(node)
        except Exception as exc:  # noqa: BLE001 - DNSClientError: nothing of ours is known to be there
            log.info("DNS name never written, not deleted either node=%s error=%s", node, exc)

    def _not_foreign(self, metadata: dict[str, str]) -> bool:
        """Untagged (made before lablease, e.g. by teuthology) or tagged with this lab."""
        return metadata.get(TAG_LAB, self.lab) == self.lab

    def destroy(self, name: str, *, dns_written: bool = True) -> None:
        """Detach and delete the node's volumes, delete every server of that name, delete its DNS name.

        Destroying what is already gone succeeds. With ``dns_written`` false (no attempt ever registered the
        name) a failed DNS delete does not fail the destroy.
        """
        self.prepare()
        node = self.node_name(name, Stage.DESTROY)
        servers, volumes = self._snapshot()
        self._destroy(node, servers, volumes, dns_written)
        for error in self.check.confirm([node]).values():
            raise error

    def destroy_many(self, names: Iterable[str]) -> list[Outcome]:
        """Destroy nodes up to ``max_parallel`` at a time from one listing of servers and volumes."""
        names = list(names)
        if not names:
            return []
        try:
            self.prepare()
            servers, volumes = self._snapshot()
            fips = self.lifecycle.floating.listed(None) if self.lifecycle.floating is not None else None
        except ProvisionError as exc:
            return [Outcome(n, False, error=exc) for n in names]

        def one(name: str) -> Outcome:
            try:
                self._destroy(self.node_name(name, Stage.DESTROY), servers, volumes, fips=fips)
                return Outcome(name, True)
            except ProvisionError as exc:
                return Outcome(name, False, error=exc)

        outcomes = self._map(one, names)
        errors = self.check.confirm([self.node_name(o.name, Stage.DESTROY) for o in outcomes if o.ok])
        return [Outcome(o.name, False, error=errors[node]) if (node := self.short_name(o.name).lower()) in errors else o
                for o in outcomes]

    def remove_leaks(self, server_ids: list[str], volume_ids: list[str],
                     floating_ips: dict[str, str] | None = None) -> list[str]:
        """Delete these servers and volumes (detaching volumes first), release these floating IPs (id -> the description
        they were judged by); what could not be removed. For the reconciler's leaks; no DNS name is touched."""
        self.prepare()
        wanted = set(volume_ids)
        volumes = [v for v in self.caller.call(Stage.DESTROY, None, self.adapter.list_volumes, what="list volumes")
                   if v.id in wanted] if wanted else []
        fips = self.lifecycle.floating
        problems = fips.remove(floating_ips) if fips is not None and floating_ips else []
        return problems + self.lifecycle.teardown("(leaks)", list(server_ids), volumes, dns=False)

    # -- inventory ---------------------------------------------------------------------------------

    def list_owned(self) -> OwnedResources:
        """Servers and volumes in the cloud carrying this lab's tag: what a reconciler compares with its records."""
        self.prepare()
        servers, volumes = self._snapshot()
        return OwnedResources(
            servers=[OwnedServer(s.id, s.name, s.metadata.get(TAG_NODE, ""), s.metadata.get(TAG_ATTEMPT, ""), s.state)
                     for s in servers if s.metadata.get(TAG_LAB) == self.lab],
            volumes=[OwnedVolume(v.id, v.name, v.metadata.get(TAG_NODE, ""), v.metadata.get(TAG_ATTEMPT, ""), v.state,
                                 list(v.attached_to))
                     for v in volumes if v.metadata.get(TAG_LAB) == self.lab],
            floating_ips=self.lifecycle.floating.owned() if self.lifecycle.floating is not None else [])


def provisioner_from_config(config: LabConfig, machine_type: str, dns_client: Any = None,
                            options: ProvisionerOptions | None = None, *,
                            on_progress: ProgressCallback | None = None) -> Provisioner:
    """A Provisioner whose DNS client talks to the config's ``nsupdate_url`` (none when it is unset),
    unless ``dns_client`` is given.

    ``close()`` it when done: it owns the DNS client it opened.
    """
    owned = None
    if dns_client is None and config.nsupdate_url:
        from lablease.dns.client import DNSClient

        dns_client = owned = DNSClient(config.nsupdate_url)
    try:
        return Provisioner(config, machine_type, dns_client, options, on_progress=on_progress, owned_dns=owned)
    except BaseException:  # a bad key or provider: do not leave the client's connection pool open
        if owned is not None:
            owned.close()
        raise
