"""Taking a node apart: detach and delete its volumes, delete its servers, wait until all is gone, drop its name.

Every wait here looks at the provider's shared listings (``watch.Watch``): the volumes of all nodes
being destroyed at once are answered by one volume listing per interval, their servers by one server
listing. A node's volumes are waited on together, not one after another. Teardown waits are never
cancelled: a rollback always runs to its end.

This is the part of ``Lifecycle`` (which inherits it) that removes things; it holds no state of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, TypeVar

from lablease.config.lab import ProviderConfig
from lablease.provision.adapters.base import CloudAdapter, Server, Volume
from lablease.provision.calls import CloudCaller
from lablease.provision.errors import ProvisionError, Stage
from lablease.provision.waiting import cancelled
from lablease.provision.watch import View, Watch

log = logging.getLogger(__name__)
R = TypeVar("R")

# Volume states Cinder passes through and refuses to delete in; a teardown waits them out.
PASSING = frozenset({"creating", "attaching", "detaching", "reserved", "downloading"})


class Teardown:
    """Mixed into ``Lifecycle``; uses its provider, adapter, caller, DNS client, watches and poll pace."""

    p: ProviderConfig
    adapter: CloudAdapter
    caller: CloudCaller
    dns: Any
    servers: Watch[Server]
    volumes: Watch[Volume]
    poll_first: float
    poll_cap: float
    cancel: threading.Event

    def _wait(self, watch: Watch, check: Callable[[View], R | None], *, since: int, stage: Stage, node: str,
              timeout: float, on_timeout: Callable[[], Exception], cancel_as: tuple[Stage, str, str] | None = None,
              absent_is_gone: bool = False) -> R:
        """``watch.wait`` at the engine's pace. ``cancel_as`` (stage, node, what) lets ``cancel`` stop the wait;
        teardown's waits leave it out, so that a rollback always runs to its end."""
        extra: dict[str, Any] = {}
        if cancel_as is not None:
            extra = {"cancel": self.cancel, "on_cancel": lambda: cancelled(*cancel_as)}
        return watch.wait(check, since=since, stage=stage, node=node, timeout=timeout, on_timeout=on_timeout,
                          absent_is_gone=absent_is_gone, first=self.poll_first, cap=self.poll_cap, **extra)

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

        volumes = self._settled(node, volumes, problems)
        detaching = [v.id for v in volumes
                     if v.attached_to and attempt(f"detach volume {v.id}", lambda v=v: a.detach_volume(v))]
        if detaching:
            self._wait_detached(node, detaching, self.volumes.mark(), problems)
        deleting = [v.id for v in volumes if attempt(f"delete volume {v.id}", lambda v=v: a.delete_volume(v.id))]
        volumes_deleted = self.volumes.mark()
        gone_servers = [s for s in server_ids if attempt(f"delete server {s}", lambda s=s: a.delete_server(s))]
        servers_deleted = self.servers.mark()
        self._wait_gone(node, self.volumes, deleting, volumes_deleted, a.delete_volume, problems)
        self._wait_gone(node, self.servers, gone_servers, servers_deleted, a.delete_server, problems)
        if dns and self.dns is not None:
            try:
                self.dns.delete(node)
            except Exception as exc:  # DNSClientError: the record may outlive us; say so
                problems.append(f"DNS record of {node}: {exc}")
        return problems

    def confirm_gone(self, node: str, pick: Callable[[list[Server], list[Volume]], tuple[list[str], list[Volume]]],
                     rounds: int = 2) -> list[str]:
        """What listings begun now still show of ``node`` (``pick`` chooses its servers and volumes from them).

        A destroy is done only when these show nothing: a server or volume the first listing missed
        (made by a create whose answer was lost, or shown late) is torn down too, then looked for again.
        """
        timeout = self.p.api_retry_time + self.p.api_timeout
        problems: list[str] = []
        for round_ in range(rounds + 1):
            try:
                server_ids, volumes = pick(self.servers.fresh(Stage.DESTROY, node, timeout),
                                           self.volumes.fresh(Stage.DESTROY, node, timeout))
            except ProvisionError as exc:
                return [f"could not confirm that nothing of {node} is left: {exc.message}"]
            if not server_ids and not volumes:
                return []
            if round_ == rounds:
                break
            log.warning("destroy found more of the node node=%s servers=%s volumes=%s", node,
                        ",".join(server_ids) or "-", ",".join(v.id for v in volumes) or "-")
            problems = self.teardown(node, server_ids, volumes, dns=False)
        left = [f"server {sid}" for sid in server_ids] + [f"volume {v.name} ({v.id}, {v.state})" for v in volumes]
        return [f"still there after {rounds} rounds of deletes: {', '.join(left)}"] + problems

    def _settled(self, node: str, volumes: list[Volume], problems: list[str]) -> list[Volume]:
        """``volumes`` once each has left a passing state such as creating (those gone meanwhile left out).

        A rollback can come while a volume it made is still being created or attached, and Cinder
        refuses to delete it then; without this wait the volume would be left behind.
        """
        pending = {v.id: v.state for v in volumes if v.state in PASSING}
        if not pending:
            return volumes
        settled: dict[str, Volume | None] = {}

        def check(view: View[Volume]) -> bool | None:
            for vid in sorted(pending):
                found = view.find(vid)
                if found is not None and found.state in PASSING:
                    pending[vid] = found.state
                    continue
                settled[vid] = found
                del pending[vid]
            return True if not pending else None

        try:
            self._wait(self.volumes, check, since=self.volumes.mark(), stage=Stage.DESTROY, node=node,
                       timeout=self.p.volume_timeout, absent_is_gone=True, on_timeout=lambda: ProvisionError(
                           Stage.DESTROY, node, "; ".join(f"volume {vid} still {state} after "
                                                          f"{self.p.volume_timeout:.0f}s; not deleted"
                                                          for vid, state in sorted(pending.items()))))
        except ProvisionError as exc:
            problems.append(exc.message)
        kept = []
        for vol in volumes:
            if vol.id in pending:
                continue  # still passing: not deleted (said in problems)
            now = settled.get(vol.id, vol)
            if now is not None:
                kept.append(now)
        return kept

    def _wait_detached(self, node: str, volume_ids: list[str], since: int, problems: list[str]) -> None:
        """Wait until the volumes are available again (a volume gone meanwhile needs nothing more)."""
        pending = {vid: "unknown" for vid in volume_ids}

        def check(view: View[Volume]) -> bool | None:
            for vid in sorted(pending):
                vol = view.find(vid)
                if vol is not None:
                    pending[vid] = vol.state
                    if vol.state.startswith("error"):
                        problems.append(f"volume {vol.name or vid} failed to detach (state {vol.state})")
                    elif vol.state != "available":
                        continue
                del pending[vid]
            return True if not pending else None

        try:
            self._wait(self.volumes, check, since=since, stage=Stage.DESTROY, node=node, absent_is_gone=True,
                       timeout=self.p.volume_timeout, on_timeout=lambda: ProvisionError(
                           Stage.DESTROY, node, "; ".join(f"volume {vid} did not detach within "
                                                          f"{self.p.volume_timeout:.0f}s (last state {state})"
                                                          for vid, state in sorted(pending.items()))))
        except ProvisionError as exc:
            problems.append(exc.message)

    def _wait_gone(self, node: str, watch: Watch, ids: list[str], since: int, delete: Callable[[str], object],
                   problems: list[str], redeletes: int = 4) -> None:
        """Poll until every one of ``ids`` is gone. A delete the cloud accepted and then failed (server in
        ERROR, volume in error_deleting) is asked for again, 1 s after the last one, then 2 s, 4 s, ..."""
        if not ids:
            return
        kind = watch.kind[:-1]
        now = time.monotonic()
        state = {rid: {"redeletes": 0, "last": "unknown", "fault": None, "deleted_at": now} for rid in ids}
        pending = set(ids)

        def check(view: View) -> bool | None:
            for rid in sorted(pending):
                found = view.find(rid)
                if found is None or getattr(found, "state", "") == "deleted":
                    pending.discard(rid)
                    continue
                s = state[rid]
                s["last"] = getattr(found, "state", "unknown")
                s["fault"] = getattr(found, "fault", None) or s["fault"]
                due = s["deleted_at"] + 2 ** s["redeletes"]
                if s["last"].startswith("error") and s["redeletes"] < redeletes and time.monotonic() >= due:
                    s["redeletes"] += 1
                    s["deleted_at"] = time.monotonic()
                    log.warning("delete failed in the cloud, asking again node=%s what=%s %s state=%s",
                                node, kind, rid, s["last"])
                    try:
                        self.caller.call(Stage.DESTROY, node, lambda rid=rid: delete(rid),
                                         what=f"delete {kind} {rid} again")
                    except ProvisionError as exc:
                        problems.append(exc.message)
                        pending.discard(rid)
            return True if not pending else None

        def timed_out() -> ProvisionError:
            return ProvisionError(Stage.DESTROY, node, "; ".join(
                f"{kind} {rid} still exists {self.p.delete_timeout:.0f}s after its deletion (state "
                f"{state[rid]['last']}{', ' + str(state[rid]['fault']) if state[rid]['fault'] else ''}; "
                f"deleted {1 + state[rid]['redeletes']} times)" for rid in sorted(pending)))

        try:
            self._wait(watch, check, since=since, stage=Stage.DESTROY, node=node, timeout=self.p.delete_timeout,
                       on_timeout=timed_out, absent_is_gone=True)
        except ProvisionError as exc:
            problems.append(exc.message)
