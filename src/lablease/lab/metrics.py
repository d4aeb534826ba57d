"""Prometheus metrics of the lab service: nodes by state, launches, retries, destroys and cloud API calls.

Three feeds, one registry per instance (no globals): the node store is read on each scrape,
the progress bus calls ``on_event``, and each provider's CloudCaller calls the observer from
``cloud_call_observer``. The engine's per-stage metrics (lablease_provision_*) stay in
lablease.provision.metrics; these are the lab-level outcomes a lab graphs and alerts on.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter as Tally
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lablease.lab.bus import LabEvent
from lablease.lab.census import census
from lablease.lab.health import Health, HealthSnapshot
from lablease.lab.usage import ACTIONS, Trail, last_use_ended
from lablease.provision.calls import CallObserver
# The engine's stage buckets (0.1 s to 20 min) suit whole launches and destroys too.
from lablease.provision.metrics import _BUCKETS as DURATION_BUCKETS
from lablease.store.nodes import NodeStore
from lablease.store.records import NodeRecord
from lablease.store.lifecycle import NodeState

log = logging.getLogger(__name__)

# Every state of the node state machine, so each machine type shows a zero rather than no series.
STATES: tuple[str, ...] = tuple(sorted(state.value for state in NodeState))
_WORD = re.compile(r"[a-z_]+")


def call_name(what: str) -> str:
    """A cloud call's label: at most two leading words of ``what`` ("delete volume v-1 again" -> "delete volume").

    CloudCaller's ``what`` names ids; a label that kept them would make one series per volume.
    """
    words: list[str] = []
    for word in what.lower().split()[:2]:
        if not _WORD.fullmatch(word):
            break
        words.append(word)
    return " ".join(words) or "unknown"


class NodeCollector(Collector):
    """Counts the store's nodes on each scrape: ``lablease_nodes`` and teuthology's ``teuthology_nodes``.

    ``teuthology_nodes{machine_type, locked, up}`` repeats teuthology-exporter's gauge (label values
    "True"/"False", all four combinations per type) so a lab's existing dashboards keep working.
    """

    def __init__(self, store: NodeStore, warm_targets: Mapping[str, Mapping[str, int]]):
        self._store = store
        self._targets = warm_targets

    def describe(self) -> Iterable[Metric]:
        return self._families() + self._census(())

    def collect(self) -> Iterable[Metric]:
        try:
            records = self._store.list()
        except Exception:  # noqa: BLE001 - a store outage must not take the other metrics down with it
            log.exception("node store unreadable; node gauges left out of this scrape")
            return []
        return self._families(records) + self._census(records)

    def _census(self, records: Sequence[NodeRecord]) -> list[Metric]:
        """The warm pool against its target, the oldest provisioning node, expired leases (lab.census)."""
        target = GaugeMetricFamily("lablease_warm_target", "The warm pool's minimum (min_ready) per OS",
                                   labels=["machine_type", "os"])
        ready = GaugeMetricFamily("lablease_warm_ready", "Warm nodes (ready, unlocked, up) per OS",
                                  labels=["machine_type", "os"])
        oldest = GaugeMetricFamily("lablease_oldest_provisioning_seconds", "Age of the oldest node in state "
                                   "provisioning (0: none)", labels=["machine_type"])
        expired = GaugeMetricFamily("lablease_expired_leases", "Nodes whose holder's lease expired (the reconciler "
                                    "takes them over)", labels=["machine_type"])
        for machine_type, figures in sorted(census(records, self._targets).items()):
            for os_name, pair in sorted(figures.warm.items()):
                target.add_metric([machine_type, os_name], pair["target"])
                ready.add_metric([machine_type, os_name], pair["ready"])
            oldest.add_metric([machine_type], figures.oldest_provisioning_seconds)
            expired.add_metric([machine_type], figures.expired_leases)
        return [target, ready, oldest, expired]

    @staticmethod
    def _families(records: Sequence[NodeRecord] = ()) -> list[Metric]:
        lab = GaugeMetricFamily("lablease_nodes", "Nodes by machine type, provisioning state and lock",
                                labels=["machine_type", "state", "locked"])
        held = GaugeMetricFamily("lablease_floating_ips", "Floating IPs the node records hold (each released "
                                 "when its node is destroyed)", labels=["machine_type"])
        teuthology = GaugeMetricFamily("teuthology_nodes", "Teuthology Nodes (teuthology-exporter compatible)",
                                       labels=["machine_type", "locked", "up"])
        by_state = Tally((n.machine_type or "", n.state, bool(n.locked)) for n in records)
        by_up = Tally((n.machine_type or "", bool(n.locked), bool(n.up)) for n in records)
        states = sorted(set(STATES) | {state for _, state, _ in by_state})
        for machine_type in sorted({n.machine_type or "" for n in records}):
            for state in states:
                for locked in (True, False):
                    lab.add_metric([machine_type, state, str(locked).lower()],
                                   by_state[machine_type, state, locked])
            for up in (True, False):
                for locked in (True, False):
                    teuthology.add_metric([machine_type, str(locked), str(up)], by_up[machine_type, locked, up])
            held.add_metric([machine_type], sum(len(n.floating_ip_ids) for n in records
                                                if (n.machine_type or "") == machine_type))
        made = GaugeMetricFamily("lablease_nodes_by_provider", "Nodes holding cloud resources, by machine type, "
                                 "the provider that made them and state", labels=["machine_type", "provider", "state"])
        for (machine_type, provider, state), count in sorted(Tally(
                (n.machine_type or "", n.provider, n.state) for n in records if n.provider).items()):
            made.add_metric([machine_type, provider, state], count)
        return [lab, teuthology, held, made]


class LabMetrics:
    """The lab service's metrics; ``on_event`` is a ProgressBus subscriber (thread-safe, quick)."""

    def __init__(self, registry: CollectorRegistry, store: NodeStore,
                 warm_targets: Mapping[str, Mapping[str, int]] | None = None):
        """``warm_targets``: each cloud machine type's ``min_ready`` (``{"ovh": {"ubuntu-22.04": 2}}``)."""
        self.registry = registry
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._destroy_started: dict[str, float] = {}  # node -> the ``at`` of its destroy/start
        registry.register(NodeCollector(store, warm_targets or {}))
        self.launches = Counter("lablease_launches_total", "Node launches that ended, by result (ready, failed)",
                                ["machine_type", "result"], registry=registry)
        self.launch_seconds = Histogram("lablease_launch_duration_seconds", "Seconds from a node's lock to ready",
                                        ["machine_type"], buckets=DURATION_BUCKETS, registry=registry)
        self.retries = Counter("lablease_launch_retries_total", "Launch attempts that failed and were retried",
                               ["machine_type", "stage"], registry=registry)
        self.destroys = Counter("lablease_destroys_total", "Node destroys that ended, by result (done, failed)",
                                ["machine_type", "result"], registry=registry)
        self.destroy_seconds = Histogram("lablease_destroy_duration_seconds", "Seconds a node's destroy took",
                                         ["machine_type"], buckets=DURATION_BUCKETS, registry=registry)
        self.api_calls = Counter("lablease_cloud_api_calls_total", "Requests sent to the cloud, retries included",
                                 ["machine_type", "call"], registry=registry)
        self.api_errors = Counter("lablease_cloud_api_errors_total", "Cloud requests that failed, by error kind",
                                  ["machine_type", "kind"], registry=registry)
        self.api_seconds = Histogram("lablease_cloud_api_call_duration_seconds", "Seconds one cloud request took",
                                     ["machine_type", "call"], registry=registry)
        self.leaks_cleaned = Counter("lablease_reconciler_leaks_cleaned_total",
                                     "Leaked resources the reconciler deleted, by kind (servers, volumes, dns)",
                                     ["machine_type", "kind"], registry=registry)
        self.reconciler_actions = Counter("lablease_reconciler_nodes_total",
                                          "Nodes the reconciler took over, retried or failed on, by action",
                                          ["machine_type", "action"], registry=registry)
        self.floating_ips = Counter("lablease_floating_ips_associated_total", "Floating IPs associated with new "
                                    "nodes, by source (new: allocated; reused: one of the lab's free ones)",
                                    ["machine_type", "source"], registry=registry)
        self.health = Gauge("lablease_provider_health", "1 for a provider's current health (ok, quota, auth, "
                            "outage, other), 0 for the others", ["machine_type", "state"], registry=registry)
        self.fallbacks = Counter("lablease_provider_fallbacks_total", "Nodes a provider could not give (quota, "
                                 "capacity) that went to the next provider of their machine type",
                                 ["machine_type", "to"], registry=registry)
        self.node_seconds = Counter("lablease_node_seconds", "Seconds cloud nodes were in use (lock answered to "
                                    "unlock or destroy start), added when each node is freed, by machine type and "
                                    "owner (one series per owner: docs/lab-service.md)", ["machine_type", "owner"],
                                    registry=registry)
        self._store = store
        self.refill_failures = Gauge("lablease_warm_pool_refill_failures", "Failed warm-pool refills in a row",
                                     ["machine_type"], registry=registry)

    def on_health(self, snapshot: HealthSnapshot) -> None:
        """Show a provider's new health: its state's series at 1, every other state's at 0."""
        for state in Health:
            self.health.labels(snapshot.machine_type, state.value).set(1 if state is snapshot.state else 0)
        self.refill_failures.labels(snapshot.machine_type).set(snapshot.failures)

    def on_reconcile(self, report: Any) -> None:
        """Count what one reconciler pass (a lablease.lab.reconciler.PassReport) deleted and did."""
        for kind, ids in report.deleted.items():
            self.leaks_cleaned.labels(report.machine_type, kind).inc(len(ids))
        for action, nodes in (("taken_over", report.taken_over), ("destroy_retried", report.destroys_retried),
                              ("failed", report.failed)):
            self.reconciler_actions.labels(report.machine_type, action).inc(len(nodes))

    def on_event(self, event: LabEvent) -> None:
        """Count the outcome ``event`` reports, if any: a ready node, a final failure, a retry, a destroy."""
        machine_type = event.machine_type
        self._first_sight(machine_type)
        if event.stage == "destroy":
            self._on_destroy(event)
        elif event.stage == "ready" and event.status == "done":
            self.launches.labels(machine_type, "ready").inc()
            self.launch_seconds.labels(machine_type).observe(event.elapsed)
        elif event.status == "failed":  # the engine says "retry" for failures it will try again
            self.launches.labels(machine_type, "failed").inc()
        elif event.status == "retry":
            self.retries.labels(machine_type, event.stage).inc()
        elif event.stage == "provider" and event.status == "fallback":  # lab.fallback: machine_type is the provider
            self.fallbacks.labels(machine_type, event.made.get("to", "")).inc()
        elif event.status == "made" and "floating_ip_id" in event.made:
            self.floating_ips.labels(machine_type, event.made.get("floating_ip_source", "new")).inc()

    def _on_destroy(self, event: LabEvent) -> None:
        """Count an ended destroy and time it: by ``elapsed`` or, lacking it, since its start event."""
        if event.status == "start":
            with self._lock:
                self._destroy_started[event.node] = event.at
            return
        if event.status == "freed":
            self._count_use(event)
            return
        if event.status not in ("done", "failed"):
            return
        with self._lock:
            started = self._destroy_started.pop(event.node, None)
        self.destroys.labels(event.machine_type, event.status).inc()
        seconds = event.elapsed if event.elapsed > 0 or started is None else event.at - started
        self.destroy_seconds.labels(event.machine_type).observe(max(0.0, seconds))

    def _count_use(self, event: LabEvent) -> None:
        """Add the in-use seconds of the lock whose destroy freed ``event.node`` (read from its trail)."""
        try:
            trail = [Trail(e.node, e.at, e.new or {}) for e in self._store.events(event.node) if e.action in ACTIONS]
        except Exception:  # noqa: BLE001 - a metric must never break a destroy; the usage report still has it
            log.warning("could not read the trail of %s for lablease_node_seconds_total", event.node, exc_info=True)
            return
        span = last_use_ended(trail, event.machine_type)
        if span is not None and span.end is not None:
            self.node_seconds.labels(event.machine_type, span.owner).inc((span.end - span.start).total_seconds())

    def _first_sight(self, machine_type: str) -> None:
        """Create a type's result series at zero, so rate() and alerts see the first failure."""
        with self._lock:
            if machine_type in self._seen:
                return
            self._seen.add(machine_type)
        for result in ("ready", "failed"):
            self.launches.labels(machine_type, result)
        for result in ("done", "failed"):
            self.destroys.labels(machine_type, result)

    def cloud_call_observer(self, machine_type: str) -> CallObserver:
        """The ``CloudCaller.on_call`` hook of one provider: counts and times each request, errors by kind."""
        def observe(what: str, seconds: float, error_kind: str | None) -> None:
            call = call_name(what)
            self.api_calls.labels(machine_type, call).inc()
            self.api_seconds.labels(machine_type, call).observe(seconds)
            if error_kind is not None:
                self.api_errors.labels(machine_type, error_kind).inc()
        return observe

    def render(self) -> tuple[bytes, str]:
        """The /metrics answer: body and content type in Prometheus' text format."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
