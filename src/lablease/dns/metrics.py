"""Prometheus metrics of one service instance, in its own registry (never the process-global one)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class DnsMetrics:
    """Counters for updates, deletes, rejections and DNS errors, plus request latency."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.updates = Counter("lablease_dns_updates", "Update requests done, by result (success, no-change).", ["result"], registry=r)
        self.deletes = Counter("lablease_dns_deletes", "Delete requests done, by result (deleted, absent).", ["result"], registry=r)
        self.rejections = Counter("lablease_dns_rejections", "Requests refused before reaching DNS, by reason.", ["reason"], registry=r)
        self.dns_errors = Counter("lablease_dns_errors", "DNS server failures, by rcode (or TSIG, timeout, unreachable).", ["rcode"], registry=r)
        self.latency = Histogram(
            "lablease_dns_request_seconds", "Time to answer a request, by operation.", ["operation"], registry=r,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
