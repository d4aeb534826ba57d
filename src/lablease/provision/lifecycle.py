"""One node's life in the cloud: a create attempt stage by stage, and the rollback that undoes it.

The teardown itself (detach, delete, wait until gone) is in ``teardown.py``; the waits look at the
cloud through ``watch.py`` (the provider's shared listings).

Every resource an attempt creates is written down in its ``Track`` before anything else can
fail, so the rollback knows exactly what to remove; a create call whose answer was lost is
adopted when the cloud shows it acted (``adopt.py``), and the rollback lists by this attempt's tag.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Callable

from lablease.provision.adapters.base import ErrorKind, FloatingIP, Network, Server, ServerSpec, Volume
from lablease.provision.adopt import Adopter
from lablease.provision.context import ProviderContext
from lablease.provision.errorkinds import dns_kind
from lablease.provision.errors import ProvisionError, Stage
from lablease.provision.floating import FloatingIPs, pool_network
from lablease.provision.hints import Resources
from lablease.provision.models import (
    TAG_ATTEMPT,
    TAG_LAB,
    TAG_NODE,
    NodeInfo,
    ProgressCallback,
    ProgressEvent,
)
from lablease.provision.readiness import EarlyProbe
from lablease.provision.selection import (
    select_image,
    select_networks,
    select_security_groups,
    select_size,
    wants_boot_volume,
)
from lablease.provision.teardown import Teardown
from lablease.provision.userdata import build_userdata
from lablease.provision.watch import View

log = logging.getLogger(__name__)


@dataclass
class Track:
    """What one attempt has created (or may have created) so far."""

    node: str
    attempt: int
    attempt_id: str
    server_ids: list[str] = field(default_factory=list)
    volume_ids: list[str] = field(default_factory=list)
    server_unsure: bool = False   # a create call failed: a server may exist that we have no id for
    volume_unsure: bool = False
    floating_ids: list[str] = field(default_factory=list)
    floating_unsure: bool = False  # an allocation was asked for: a floating IP may exist that we have no id for
    dns: bool = False
    stage: Stage = Stage.IMAGE
    volume_mark: int = 0          # the volume listing's mark after the last volume action (create, attach)


def volume_names(node: str, count: int) -> list[str]:
    """``<node>_<i>``, the index zero-padded to the width of count-1, as teuthology names them."""
    width = len(str(max(count - 1, 0)))
    return [f"{node}_{i:0{width}d}" for i in range(count)]


def volume_pattern(node: str) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(node)}_\d+")


class Lifecycle(Teardown):
    """The stages of one node, shared by all worker threads of a provider (it holds no per-node state).

    Its waits look at servers and volumes through the context's watches (``watch.Watch``): the
    provider's shared listings, or one GET per look. ``emit`` gets a ProgressEvent for every stage.
    """

    def __init__(self, ctx: ProviderContext, emit: ProgressCallback):
        self.p = ctx.provider
        self.lab = self.lab_domain = ctx.lab
        self.adapter = ctx.cloud.adapter
        self.caller = ctx.cloud.caller
        self.listings = ctx.cloud.listings
        self.dns = ctx.dns
        self.probe = ctx.probe
        self.public_keys = ctx.public_keys
        self.emit = emit
        self.poll_first = ctx.pace.first
        self.poll_cap = ctx.pace.cap
        self.cancel = ctx.cancel  # the engine's: set, it stops create's waits (never teardown's)
        self.servers = ctx.cloud.servers
        self.volumes = ctx.cloud.volumes
        self.adopter = Adopter(self.adapter, self.caller, settle=self.p.api_timeout, cancel=self.cancel)
        self.floating = FloatingIPs(self.p, self.lab, self.adapter, self.caller, self.adopter) \
            if self.p.floating_ip_pool else None

    # -- helpers ---------------------------------------------------------------------------------

    def _stage(self, track: Track, stage: Stage, step: str = "") -> None:
        """``stage`` starts; ``step`` tells apart two starts of one stage (the volumes' create and attach)."""
        track.stage = stage
        self.emit(ProgressEvent(track.node, stage.value, "start", track.attempt, step, attempt_id=track.attempt_id))

    def _made(self, track: Track, **made: str) -> None:
        self.emit(ProgressEvent(track.node, track.stage.value, "made", track.attempt, attempt_id=track.attempt_id,
                                made=made))

    def listing(self, kind: str, stage: Stage, load: Callable[[], list]) -> list:
        return self.listings.get(kind, lambda: self.caller.call(stage, None, load, what=f"list {kind}"))

    def _pool(self, node: str) -> Network | None:
        """The floating IP pool's network, from the cached network listing (None: the provider has no pool)."""
        if not self.p.floating_ip_pool:
            return None
        return pool_network(self.listing("networks", Stage.NETWORK, self.adapter.list_networks),
                            self.p.floating_ip_pool, node)

    # -- create ----------------------------------------------------------------------------------

    def create(self, track: Track, os_type: str, os_version: str, need: Resources) -> NodeInfo:
        started = time.monotonic()
        node, a = track.node, self.adapter
        self._stage(track, Stage.IMAGE)
        image = select_image(self.listing("images", Stage.IMAGE, a.list_images), os_type, os_version,
                             self.p.exclude_image, node)
        self._stage(track, Stage.SIZE)
        size = select_size(self.listing("sizes", Stage.SIZE, a.list_sizes), need, self.p.allow_sizes,
                           self.p.exclude_sizes, node, boot_from_volume=self.p.boot_from_volume)
        self._stage(track, Stage.NETWORK)
        pool = self._pool(node)
        networks = select_networks([n for n in self.listing("networks", Stage.NETWORK, a.list_networks)
                                    if pool is None or n.id != pool.id],
                                   self.p.allow_networks, node, exact=self.p.networks)
        groups = select_security_groups(
            self.listing("security_groups", Stage.NETWORK, a.list_security_groups) if self.p.security_groups else [],
            self.p.security_groups, node)

        self._stage(track, Stage.CREATE)
        tags = {**self.p.tags, TAG_LAB: self.lab, TAG_NODE: node, TAG_ATTEMPT: track.attempt_id}
        # With a key pair (key_name) the lab's own key comes from it; the user data keeps the extra keys.
        keys = self.public_keys[1:] if self.p.key_name else self.public_keys
        spec = ServerSpec(
            name=node, image=image, size=size, networks=networks, security_groups=groups, metadata=tags,
            root_disk=need.disk,
            userdata=build_userdata(hostname=node, fqdn=f"{node}.{self.lab_domain}", user=self.p.ssh_user,
                                    authorized_keys=keys, os_type=os_type, os_version=os_version,
                                    per_os=self.p.userdata),
            boot_volume_size=need.disk if wants_boot_volume(size, self.p.boot_from_volume) else None,
            availability_zone=self.p.availability_zone, key_name=self.p.key_name, config_drive=self.p.config_drive,
        )
        track.server_unsure = True
        server = self.adopter.create(Stage.CREATE, node, "create server", lambda: a.create_server(spec),
                                     self.adopter.server_of(node, track.attempt_id))
        server_mark = self.servers.mark()
        track.server_ids.append(server.id)
        track.server_unsure = False
        self._made(track, server_id=server.id)

        # The SSH wait starts now, beside the boot poll, when the cloud already gave an address (never the
        # private address of a server that gets a floating IP: SSH goes to the floating IP only).
        early_ips = getattr(server, self.p.ssh_interface) if pool is None else []
        early = EarlyProbe(self.probe, early_ips[0], self.p.boot_timeout + self.p.ready_timeout, node) \
            if early_ips else None
        try:
            return self._finish(track, server, server_mark, need, tags, early, image.name, size.name, started)
        finally:
            if early is not None:
                early.cancel()

    def _finish(self, track: Track, server: Server, server_mark: int, need: Resources, tags: dict[str, str],
                early: EarlyProbe | None, image: str, size: str, started: float) -> NodeInfo:
        node = track.node
        # Volumes need no running server: they are built while it boots, attached once it runs,
        # and their attachments complete while DNS and SSH readiness go on.
        if need.volume_count:
            self._stage(track, Stage.VOLUME, f"create {need.volume_count} x {need.volume_size} GB")
            self._create_volumes(track, need, tags)

        self._stage(track, Stage.BOOT)
        server = self._wait_running(node, server.id, server_mark)
        public_ips = list(server.public_ips)
        pool = self._pool(node)
        if pool is not None and self.floating is not None:
            self._stage(track, Stage.FLOATING_IP)
            track.floating_unsure = True

            def made(fip_id: str, source: str) -> None:
                track.floating_ids.append(fip_id)
                track.floating_unsure = False
                self._made(track, floating_ip_id=fip_id, floating_ip_source=source)

            address = self.floating.attach(node, track.attempt_id, server.id, pool, made).address
            public_ips = [address] + [ip for ip in public_ips if ip != address]
        else:
            address = getattr(server, self.p.ssh_interface)[0]

        if need.volume_count:
            self._stage(track, Stage.VOLUME, f"attach {need.volume_count}")
            self._attach_volumes(track, server.id)

        if self.dns is not None:
            self._stage(track, Stage.DNS)
            track.dns = True  # set first: an update whose answer was lost may still have happened
            self._made(track, dns=node)
            try:
                self.dns.update(node, [address])
            except Exception as exc:  # DNSClientError, or anything the client let through
                kind = dns_kind(getattr(exc, "status", None))
                if kind is ErrorKind.DNS_REFUSED or getattr(exc, "sent", True) is False:
                    # The service refused the name outright, or never got the request (connection refused):
                    # nothing was registered, so the rollback must not try to delete it (and then call the
                    # rollback incomplete when that fails too).
                    track.dns = False
                raise ProvisionError(Stage.DNS, node, kind.rule.describe(str(exc), name=f"{node} -> {address}"),
                                     kind=kind) from exc

        self._stage(track, Stage.SSH)
        if early is not None and early.host == address:
            ready = early.result(self.p.ready_timeout, node, cancel=self.cancel)
        else:  # no address at create time, or the running server has another one
            ready = self.probe.wait(address, self.p.ready_timeout, node, cancel=self.cancel)
        if need.volume_count:
            track.stage = Stage.VOLUME
            self._wait_volumes(node, track.volume_ids, track.volume_mark, {"in-use"}, f"attach to server {server.id}",
                               server_id=server.id)
        return NodeInfo(
            name=node, fqdn=f"{node}.{self.lab_domain}", server_id=server.id, address=address,
            public_ips=public_ips, private_ips=server.private_ips, host_key=ready.host_key,
            volume_ids=list(track.volume_ids), image=image, size=size, attempts=track.attempt,
            seconds=time.monotonic() - started,
        )

    def _wait_running(self, node: str, server_id: str, since: int) -> Server:
        last = {"state": "unknown"}

        def check(view: View[Server]) -> Server | None:
            server = view.find(server_id)
            if server is None:
                raise ProvisionError(Stage.BOOT, node, f"server {server_id} disappeared while booting",
                                     kind=ErrorKind.GONE)
            last["state"] = server.state
            if server.state == "error":
                raise ProvisionError(Stage.BOOT, node, f"server {server_id} went to ERROR: "
                                     f"{server.fault or 'the cloud gave no reason'}", kind=ErrorKind.CLOUD_ERROR)
            # With a floating IP the address comes after the boot; the server needs only to run.
            if server.state == "running" and (self.floating is not None or getattr(server, self.p.ssh_interface)):
                return server
            return None

        return self._wait(self.servers, check, since=since, stage=Stage.BOOT, node=node, timeout=self.p.boot_timeout,
                          on_timeout=lambda: ProvisionError(
                              Stage.BOOT, node, f"server {server_id} not running with an address on "
                              f"{self.p.ssh_interface} after {self.p.boot_timeout:.0f}s (last state {last['state']})",
                              kind=ErrorKind.TIMEOUT),
                          cancel_as=(Stage.BOOT, node, f"server {server_id} boots"))

    def _create_volumes(self, track: Track, need: Resources, tags: dict[str, str]) -> None:
        node, a = track.node, self.adapter
        for name in volume_names(node, need.volume_count):
            track.volume_unsure = True
            volume = self.adopter.create(Stage.VOLUME, node, f"create volume {name}",
                                         lambda: a.create_volume(name, need.volume_size, tags),
                                         self.adopter.volume_of(name, track.attempt_id))
            track.volume_ids.append(volume.id)
            track.volume_unsure = False
            self._made(track, volume_id=volume.id)
        track.volume_mark = self.volumes.mark()

    def _attach_volumes(self, track: Track, server_id: str) -> None:
        """Wait until every volume is available, then ask for all attachments (completion is checked last)."""
        node, a = track.node, self.adapter
        self._wait_volumes(node, track.volume_ids, track.volume_mark, {"available"}, "become available")
        for vid in track.volume_ids:
            self.adopter.create(Stage.VOLUME, node, f"attach volume {vid}", lambda: a.attach_volume(server_id, vid),
                                self.adopter.attachment_of(server_id, vid))
        track.volume_mark = self.volumes.mark()
        # The attachments are checked after the SSH wait; have their listing taken meanwhile.
        self.volumes.expect(track.volume_mark, self.poll_first)

    def _wait_volumes(self, node: str, volume_ids: list[str], since: int, states: set[str], goal: str,
                      server_id: str | None = None) -> list[Volume]:
        """Wait until every volume is in one of ``states`` (and attached to ``server_id``, when given)."""
        pending = list(volume_ids)
        done: dict[str, Volume] = {}
        last = {vid: "unknown" for vid in volume_ids}
        seen: dict[str, set[str]] = {vid: set() for vid in volume_ids}
        looks = {vid: 0 for vid in volume_ids}

        def check(view: View[Volume]) -> list[Volume] | None:
            for vid in list(pending):
                vol = view.find(vid)
                if vol is None:
                    raise ProvisionError(Stage.VOLUME, node, f"volume {vid} disappeared", kind=ErrorKind.GONE)
                last[vid] = vol.state
                seen[vid].add(vol.state)
                looks[vid] += 1
                # Nova answers a failed attach by putting the volume back to available, unattached; the
                # attach request was made earlier, so a second look at "available" means it failed.
                back = (server_id is not None and vol.state == "available" and server_id not in vol.attached_to
                        and bool(seen[vid] - {"available"} or looks[vid] > 1))
                if vol.state.startswith("error") or back:
                    raise ProvisionError(Stage.VOLUME, node, f"volume {vol.name or vid} failed to {goal} "
                                         f"(state {vol.state})", kind=ErrorKind.CLOUD_ERROR)
                if vol.state in states and (server_id is None or server_id in vol.attached_to):
                    done[vid] = vol
                    pending.remove(vid)
            return [done[vid] for vid in volume_ids] if not pending else None

        def timed_out() -> ProvisionError:
            vid = pending[0]
            return ProvisionError(Stage.VOLUME, node, f"volume {vid} did not {goal} within "
                                  f"{self.p.volume_timeout:.0f}s (last state {last[vid]})",
                                  kind=ErrorKind.TIMEOUT)

        return self._wait(self.volumes, check, since=since, stage=Stage.VOLUME, node=node,
                          timeout=self.p.volume_timeout, on_timeout=timed_out,
                          cancel_as=(Stage.VOLUME, node, f"waiting for volumes {', '.join(pending)} to {goal}"))

    # -- rollback --------------------------------------------------------------------------------

    def rollback(self, track: Track) -> list[str]:
        """Remove everything ``track`` created, including what a create whose answer was lost made.

        Looks by this attempt's tag (and the ids it knows), tears down what it finds, and looks again:
        done only when a listing begun after the deletes shows nothing of the attempt.
        """
        problems: list[str] = []
        if self.floating is not None and (track.floating_ids or track.floating_unsure):
            problems += self.floating.release(track.node, track.floating_ids,
                                              self.floating.of_attempt(track.attempt_id))
        if track.stage not in (Stage.IMAGE, Stage.SIZE, Stage.NETWORK):  # before CREATE nothing was made

            def made(servers: list[Server], volumes: list[Volume]) -> tuple[list[str], list[Volume]]:
                return ([s.id for s in servers if s.id in track.server_ids or _of_attempt(s, track)],
                        [v for v in volumes if v.id in track.volume_ids or _of_attempt(v, track)])

            log.info("rollback node=%s attempt=%s servers=%d volumes=%d dns=%s unsure=%s", track.node,
                     track.attempt_id, len(track.server_ids), len(track.volume_ids), track.dns,
                     track.server_unsure or track.volume_unsure)
            # First what it knows, without a server listing (one may hang: a cancelled boot wait gave up on it)...
            volumes: list[Volume] = []
            if track.volume_ids:
                timeout = self.p.api_retry_time + self.p.api_timeout
                try:
                    volumes = made([], self.volumes.fresh(Stage.DESTROY, track.node, timeout))[1]
                except ProvisionError:
                    pass  # confirm_gone lists again, and says so if it cannot
            left = self.teardown(track.node, list(track.server_ids), volumes, dns=False)
            # ...then whatever listings by its tag still show, until they show nothing.
            problems += left or self.confirm_gone(track.node, made)
        if track.dns and self.dns is not None:
            try:
                self.dns.delete(track.node)
            except Exception as exc:  # DNSClientError: the record may outlive us; say so
                problems.append(f"DNS record of {track.node}: {exc}")
        return problems


def _of_attempt(resource: Server | Volume, track: Track) -> bool:
    return resource.metadata.get(TAG_ATTEMPT) == track.attempt_id


def release_floating(lifecycle: Lifecycle, node: str, listed: list[FloatingIP] | None = None) -> list[str]:
    """Release every floating IP of ``node`` (a destroy's part; nothing when the provider has no pool), as
    ``listed`` shows them (a listing taken for a whole batch of destroys) or a listing taken now."""
    if lifecycle.floating is None:
        return []
    return lifecycle.floating.release(node, [], lifecycle.floating.of_node(node), listed)
