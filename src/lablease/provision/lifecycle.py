"""One node's life in the cloud: a create attempt stage by stage, and the teardown that undoes it.

Every resource an attempt creates is written down in its ``Track`` before anything else can
fail, so the rollback knows exactly what to remove; a create call whose answer was lost is
covered by looking for this attempt's tag.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from lablease.config.lab import ProviderConfig
from lablease.provision.adapters.base import CloudAdapter, Server, ServerSpec, Volume
from lablease.provision.calls import CloudCaller
from lablease.provision.errors import ProvisionError, Stage
from lablease.provision.hints import Resources
from lablease.provision.listings import ListingCache
from lablease.provision.models import TAG_ATTEMPT, TAG_LAB, TAG_NODE, NodeInfo, ProgressCallback, ProgressEvent
from lablease.provision.readiness import EarlyProbe, SSHProbe
from lablease.provision.selection import select_image, select_networks, select_security_groups, select_size
from lablease.provision.userdata import build_userdata
from lablease.provision.waiting import cancelled, poll

log = logging.getLogger(__name__)

# Volume states Cinder passes through and refuses to delete in; a teardown waits them out.
_PASSING = frozenset({"creating", "attaching", "detaching", "reserved", "downloading"})
_GONE = object()


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
    dns: bool = False
    stage: Stage = Stage.IMAGE


def volume_names(node: str, count: int) -> list[str]:
    """``<node>_<i>``, the index zero-padded to the width of count-1, as teuthology names them."""
    width = len(str(max(count - 1, 0)))
    return [f"{node}_{i:0{width}d}" for i in range(count)]


def volume_pattern(node: str) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(node)}_\d+")


class Lifecycle:
    """The stages of one node, shared by all worker threads of a provider (it holds no per-node state)."""

    def __init__(self, *, provider: ProviderConfig, lab: str, lab_domain: str, adapter: CloudAdapter,
                 caller: CloudCaller, listings: ListingCache, dns_client, probe: SSHProbe,
                 public_keys: list[str], emit: ProgressCallback, poll_first: float = 0.2, poll_cap: float = 5.0,
                 cancel: threading.Event | None = None):
        self.p = provider
        self.lab = lab
        self.lab_domain = lab_domain
        self.adapter = adapter
        self.caller = caller
        self.listings = listings
        self.dns = dns_client
        self.probe = probe
        self.public_keys = public_keys
        self.emit = emit
        self.poll_first = poll_first
        self.poll_cap = poll_cap
        self.cancel = cancel or threading.Event()  # the engine's: set, it stops create's waits (never teardown's)

    # -- helpers ---------------------------------------------------------------------------------

    def _poll(self, check: Callable, timeout: float, on_timeout: Callable[[], Exception],
              cancel_as: tuple[Stage, str, str] | None = None):
        """``poll`` at the engine's pace. ``cancel_as`` (stage, node, what) lets ``cancel`` stop the wait;
        teardown's waits leave it out, so that a rollback always runs to its end."""
        if cancel_as is None:
            return poll(check, timeout, on_timeout, first=self.poll_first, cap=self.poll_cap)
        return poll(check, timeout, on_timeout, first=self.poll_first, cap=self.poll_cap, cancel=self.cancel,
                    on_cancel=lambda: cancelled(*cancel_as))

    def _stage(self, track: Track, stage: Stage) -> None:
        track.stage = stage
        self.emit(ProgressEvent(track.node, stage.value, "start", track.attempt, attempt_id=track.attempt_id))

    def _made(self, track: Track, **made: str) -> None:
        self.emit(ProgressEvent(track.node, track.stage.value, "made", track.attempt, attempt_id=track.attempt_id,
                                made=made))

    def listing(self, kind: str, stage: Stage, load: Callable[[], list]) -> list:
        return self.listings.get(kind, lambda: self.caller.call(stage, None, load, what=f"list {kind}"))

    # -- create ----------------------------------------------------------------------------------

    def create(self, track: Track, os_type: str, os_version: str, need: Resources) -> NodeInfo:
        started = time.monotonic()
        node, a = track.node, self.adapter
        self._stage(track, Stage.IMAGE)
        image = select_image(self.listing("images", Stage.IMAGE, a.list_images), os_type, os_version,
                             self.p.exclude_image, node)
        self._stage(track, Stage.SIZE)
        size = select_size(self.listing("sizes", Stage.SIZE, a.list_sizes), need, self.p.allow_sizes,
                           self.p.exclude_sizes, node)
        self._stage(track, Stage.NETWORK)
        networks = select_networks(self.listing("networks", Stage.NETWORK, a.list_networks), self.p.allow_networks, node)
        groups = select_security_groups(
            self.listing("security_groups", Stage.NETWORK, a.list_security_groups) if self.p.security_groups else [],
            self.p.security_groups, node)

        self._stage(track, Stage.CREATE)
        tags = {**self.p.tags, TAG_LAB: self.lab, TAG_NODE: node, TAG_ATTEMPT: track.attempt_id}
        spec = ServerSpec(
            name=node, image=image, size=size, networks=networks, security_groups=groups, metadata=tags,
            userdata=build_userdata(hostname=node, fqdn=f"{node}.{self.lab_domain}", user=self.p.ssh_user,
                                    authorized_keys=self.public_keys, os_type=os_type, os_version=os_version,
                                    per_os=self.p.userdata),
        )
        track.server_unsure = True
        server = self.caller.call(Stage.CREATE, node, lambda: a.create_server(spec), what="create server",
                                  idempotent=False)
        track.server_ids.append(server.id)
        track.server_unsure = False
        self._made(track, server_id=server.id)

        # The SSH wait starts now, beside the boot poll, when the cloud already gave an address.
        early_ips = getattr(server, self.p.ssh_interface)
        early = EarlyProbe(self.probe, early_ips[0], self.p.boot_timeout + self.p.ready_timeout, node) \
            if early_ips else None
        try:
            return self._finish(track, server, need, tags, early, image.name, size.name, started)
        finally:
            if early is not None:
                early.cancel()

    def _finish(self, track: Track, server: Server, need: Resources, tags: dict[str, str],
                early: EarlyProbe | None, image: str, size: str, started: float) -> NodeInfo:
        node = track.node
        # Volumes need no running server: they are built while it boots, attached once it runs,
        # and their attachments complete while DNS and SSH readiness go on.
        if need.volume_count:
            self._stage(track, Stage.VOLUME)
            self._create_volumes(track, need, tags)

        self._stage(track, Stage.BOOT)
        server = self._wait_running(node, server.id)
        address = getattr(server, self.p.ssh_interface)[0]

        if need.volume_count:
            self._stage(track, Stage.VOLUME)
            self._attach_volumes(track, server.id)

        if self.dns is not None:
            self._stage(track, Stage.DNS)
            track.dns = True  # set first: an update whose answer was lost may still have happened
            self._made(track, dns=node)
            try:
                self.dns.update(node, [address])
            except Exception as exc:  # DNSClientError, or anything the client let through
                raise ProvisionError(Stage.DNS, node, f"registering {node} -> {address}: {exc}",
                                     kind="dns") from exc

        self._stage(track, Stage.SSH)
        if early is not None and early.host == address:
            ready = early.result(self.p.ready_timeout, node, cancel=self.cancel)
        else:  # no address at create time, or the running server has another one
            ready = self.probe.wait(address, self.p.ready_timeout, node, cancel=self.cancel)
        if need.volume_count:
            track.stage = Stage.VOLUME
            for vid in track.volume_ids:
                self._wait_volume(node, vid, {"in-use"}, f"attach to server {server.id}", server_id=server.id)
        return NodeInfo(
            name=node, fqdn=f"{node}.{self.lab_domain}", server_id=server.id, address=address,
            public_ips=server.public_ips, private_ips=server.private_ips, host_key=ready.host_key,
            volume_ids=list(track.volume_ids), image=image, size=size, attempts=track.attempt,
            seconds=time.monotonic() - started,
        )

    def _wait_running(self, node: str, server_id: str) -> Server:
        last = {"state": "unknown"}

        def check() -> Server | None:
            server = self.caller.call(Stage.BOOT, node, lambda: self.adapter.get_server(server_id), what="get server")
            if server is None:
                raise ProvisionError(Stage.BOOT, node, f"server {server_id} disappeared while booting", retryable=True)
            last["state"] = server.state
            if server.state == "error":
                raise ProvisionError(Stage.BOOT, node, f"server {server_id} went to ERROR: "
                                     f"{server.fault or 'the cloud gave no reason'}", retryable=True, kind="error")
            if server.state == "running" and getattr(server, self.p.ssh_interface):
                return server
            return None

        return self._poll(check, self.p.boot_timeout, lambda: ProvisionError(
            Stage.BOOT, node, f"server {server_id} not running with an address on {self.p.ssh_interface} "
            f"after {self.p.boot_timeout:.0f}s (last state {last['state']})", retryable=True, kind="timeout"),
            cancel_as=(Stage.BOOT, node, f"server {server_id} boots"))

    def _create_volumes(self, track: Track, need: Resources, tags: dict[str, str]) -> None:
        node, a = track.node, self.adapter
        for name in volume_names(node, need.volume_count):
            track.volume_unsure = True
            volume = self.caller.call(Stage.VOLUME, node, lambda: a.create_volume(name, need.volume_size, tags),
                                      what=f"create volume {name}", idempotent=False)
            track.volume_ids.append(volume.id)
            track.volume_unsure = False
            self._made(track, volume_id=volume.id)

    def _attach_volumes(self, track: Track, server_id: str) -> None:
        """Wait until every volume is available, then ask for all attachments (completion is checked last)."""
        node, a = track.node, self.adapter
        for vid in track.volume_ids:
            self._wait_volume(node, vid, {"available"}, "become available")
        for vid in track.volume_ids:
            self.caller.call(Stage.VOLUME, node, lambda: a.attach_volume(server_id, vid), what=f"attach volume {vid}",
                             idempotent=False)

    def _wait_volume(self, node: str, volume_id: str, states: set[str], goal: str, server_id: str | None = None,
                     stage: Stage = Stage.VOLUME, cancellable: bool = True) -> Volume:
        last = {"state": "unknown"}
        seen: set[str] = set()
        polls = {"n": 0}

        def check() -> Volume | None:
            vol = self.caller.call(stage, node, lambda: self.adapter.get_volume(volume_id), what="get volume")
            if vol is None:
                raise ProvisionError(stage, node, f"volume {volume_id} disappeared", retryable=True)
            last["state"] = vol.state
            seen.add(vol.state)
            polls["n"] += 1
            # Nova answers a failed attach by putting the volume back to available, unattached; the
            # attach request was made earlier, so a second look at "available" means it failed.
            back = (server_id is not None and vol.state == "available" and server_id not in vol.attached_to
                    and bool(seen - {"available"} or polls["n"] > 1))
            if vol.state.startswith("error") or back:
                raise ProvisionError(stage, node, f"volume {vol.name or volume_id} failed to {goal} "
                                     f"(state {vol.state})", retryable=True, kind="error")
            if vol.state in states and (server_id is None or server_id in vol.attached_to):
                return vol
            return None

        return self._poll(check, self.p.volume_timeout, lambda: ProvisionError(
            stage, node, f"volume {volume_id} did not {goal} within {self.p.volume_timeout:.0f}s "
            f"(last state {last['state']})", retryable=True, kind="timeout"),
            cancel_as=(stage, node, f"waiting for volume {volume_id} to {goal}") if cancellable else None)

    # -- teardown --------------------------------------------------------------------------------

    def teardown(self, node: str, server_ids: list[str], volumes: list[Volume], dns: bool) -> list[str]:
        """Detach and delete ``volumes``, delete ``server_ids``, wait until gone, delete the DNS name.

        Returns what could not be removed (empty when all is gone); keeps going after a failure so
        one stuck resource does not keep the others alive.
        """
        problems: list[str] = []
        a, st = self.adapter, Stage.DESTROY

        def attempt(what: str, fn: Callable[[], object]) -> bool:
            try:
                self.caller.call(st, node, fn, what=what)
                return True
            except ProvisionError as exc:
                problems.append(exc.message)
                return False

        volumes = [v for v in (self._settled(node, vol, problems) for vol in volumes) if v is not None]
        for vol in volumes:
            if vol.attached_to and attempt(f"detach volume {vol.id}", lambda v=vol: a.detach_volume(v)):
                try:
                    self._wait_volume(node, vol.id, {"available"}, "detach", stage=st, cancellable=False)
                except ProvisionError as exc:
                    if "disappeared" not in exc.message:
                        problems.append(exc.message)
        deleting = [v.id for v in volumes if attempt(f"delete volume {v.id}", lambda v=v: a.delete_volume(v.id))]
        gone_servers = [s for s in server_ids if attempt(f"delete server {s}", lambda s=s: a.delete_server(s))]
        for vid in deleting:
            self._wait_gone(node, f"volume {vid}", lambda vid=vid: a.get_volume(vid),
                            lambda vid=vid: a.delete_volume(vid), problems)
        for sid in gone_servers:
            self._wait_gone(node, f"server {sid}", lambda sid=sid: a.get_server(sid),
                            lambda sid=sid: a.delete_server(sid), problems)
        if dns and self.dns is not None:
            try:
                self.dns.delete(node)
            except Exception as exc:  # DNSClientError: the record may outlive us; say so
                problems.append(f"DNS record of {node}: {exc}")
        return problems

    def _settled(self, node: str, vol: Volume, problems: list[str]) -> Volume | None:
        """``vol`` once it has left a passing state such as creating (None when it is gone).

        A rollback can come while a volume it made is still being created or attached, and Cinder
        refuses to delete it then; without this wait the volume would be left behind.
        """
        if vol.state not in _PASSING:
            return vol
        last = {"state": vol.state}

        def check():
            found = self.caller.call(Stage.DESTROY, node, lambda: self.adapter.get_volume(vol.id), what="get volume")
            if found is None:
                return _GONE
            last["state"] = found.state
            return None if found.state in _PASSING else found

        try:
            found = self._poll(check, self.p.volume_timeout, lambda: ProvisionError(
                Stage.DESTROY, node, f"volume {vol.id} still {last['state']} after {self.p.volume_timeout:.0f}s; "
                "not deleted"))
        except ProvisionError as exc:
            problems.append(exc.message)
            return None
        return None if found is _GONE else found

    def _wait_gone(self, node: str, what: str, get: Callable[[], object], delete: Callable[[], object],
                   problems: list[str], redeletes: int = 4) -> None:
        """Poll until ``what`` is gone. A delete the cloud accepted and then failed (server in ERROR,
        volume in error_deleting) is asked for again, 1 s after the last one, then 2 s, 4 s, ..."""
        state = {"redeletes": 0, "last": "unknown", "fault": None, "deleted_at": time.monotonic()}

        def check():
            found = self.caller.call(Stage.DESTROY, node, get, what=f"check {what}")
            if found is None or getattr(found, "state", "") == "deleted":
                return True
            state["last"] = getattr(found, "state", "unknown")
            state["fault"] = getattr(found, "fault", None) or state["fault"]
            due = state["deleted_at"] + 2 ** state["redeletes"]
            if state["last"].startswith("error") and state["redeletes"] < redeletes and time.monotonic() >= due:
                state["redeletes"] += 1
                state["deleted_at"] = time.monotonic()
                log.warning("delete failed in the cloud, asking again node=%s what=%s state=%s", node, what, state["last"])
                self.caller.call(Stage.DESTROY, node, delete, what=f"delete {what} again")
            return None

        try:
            self._poll(check, self.p.delete_timeout, lambda: ProvisionError(
                Stage.DESTROY, node, f"{what} still exists {self.p.delete_timeout:.0f}s after its deletion "
                f"(state {state['last']}{', ' + str(state['fault']) if state['fault'] else ''}; "
                f"deleted {1 + state['redeletes']} times)"))
        except ProvisionError as exc:
            problems.append(exc.message)

    def rollback(self, track: Track) -> list[str]:
        """Remove everything ``track`` created, including a server or volume whose create answer was lost."""
        server_ids = list(track.server_ids)
        volumes: list[Volume] = []
        try:
            if track.server_unsure:
                servers = self.caller.call(Stage.DESTROY, track.node, self.adapter.list_servers, what="list servers")
                server_ids += [s.id for s in servers
                               if s.metadata.get(TAG_ATTEMPT) == track.attempt_id and s.id not in server_ids]
            listed = self.caller.call(Stage.DESTROY, track.node, self.adapter.list_volumes, what="list volumes") \
                if (track.volume_ids or track.volume_unsure) else []
            volumes = [v for v in listed if v.id in track.volume_ids or v.metadata.get(TAG_ATTEMPT) == track.attempt_id]
        except ProvisionError as exc:
            return [f"could not list what attempt {track.attempt_id} left: {exc.message}"]
        if server_ids or volumes or track.dns:
            log.info("rollback node=%s attempt=%s servers=%d volumes=%d dns=%s", track.node, track.attempt_id,
                     len(server_ids), len(volumes), track.dns)
        return self.teardown(track.node, server_ids, volumes, track.dns)
