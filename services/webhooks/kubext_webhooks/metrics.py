"""Prometheus metrics, under controller-runtime's webhook names where they apply.

Dashboards built for controller-runtime webhooks read ``controller_runtime_webhook_*``; the
decision (allowed, patched, warned, denied, invalid) has its own counter and histogram since
controller-runtime has no such label.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field

import prometheus_client as prom
from prometheus_client import metrics_core
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BUCKET_LABELS = [floatToGoString(b) for b in LATENCY_BUCKETS] + ["+Inf"]


@dataclass
class Latencies:
    """A histogram's state: one count per bucket (not cumulative; the last is +Inf), the sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for label, count in zip(_BUCKET_LABELS, list(self.counts), strict=True):
            running += count
            out.append((label, float(running)))
        return out


@dataclass
class WebhookStats:
    """One webhook's request metrics as plain numbers, updated by the event loop alone.

    prometheus_client takes a lock for every update and a bucket walk for every observation:
    six of those per review cost more than the envelope read. These are read at scrape time.
    """

    in_flight: int = 0
    requests: dict[int, int] = field(default_factory=dict)  # by HTTP code
    latency: Latencies = field(default_factory=Latencies)
    decisions: dict[str, Latencies] = field(default_factory=dict)  # by outcome

    def done(self, code: int, outcome: str, seconds: float) -> None:
        self.requests[code] = self.requests.get(code, 0) + 1
        bucket = bisect.bisect_left(LATENCY_BUCKETS, seconds)  # le: a bound counts as inside
        self.latency.counts[bucket] += 1
        self.latency.total += seconds
        decision = self.decisions.get(outcome)
        if decision is None:
            decision = self.decisions[outcome] = Latencies()
        decision.counts[bucket] += 1
        decision.total += seconds


class WebhookCollector:
    """The request metrics of every webhook, as Prometheus families at scrape time."""

    def __init__(self) -> None:
        self.webhooks: dict[str, WebhookStats] = {}

    def stats(self, webhook: str) -> WebhookStats:
        """The one record for ``webhook`` (two paths may count under one name)."""
        return self.webhooks.setdefault(webhook, WebhookStats())

    def collect(self) -> Iterator[metrics_core.Metric]:
        requests = metrics_core.CounterMetricFamily(
            "controller_runtime_webhook_requests",
            "Admission and conversion requests by webhook path and HTTP status code.",
            labels=["webhook", "code"],
        )
        latency = metrics_core.HistogramMetricFamily(
            "controller_runtime_webhook_latency_seconds",
            "Time to answer a webhook request.",
            labels=["webhook"],
        )
        in_flight = metrics_core.GaugeMetricFamily(
            "controller_runtime_webhook_requests_in_flight",
            "Webhook requests being answered now.",
            labels=["webhook"],
        )
        decisions = metrics_core.CounterMetricFamily(
            "kubext_webhooks_decisions",
            "Webhook answers by decision: allowed, patched, warned, denied, invalid, error.",
            labels=["webhook", "decision"],
        )
        decision_latency = metrics_core.HistogramMetricFamily(
            "kubext_webhooks_decision_latency_seconds",
            "Time to answer a webhook request, by decision.",
            labels=["webhook", "decision"],
        )
        # list(): the health server scrapes from its own thread while the loop adds keys.
        for webhook, stats in list(self.webhooks.items()):
            in_flight.add_metric([webhook], stats.in_flight)
            for code, count in list(stats.requests.items()):
                requests.add_metric([webhook, str(code)], count)
            latency.add_metric([webhook], stats.latency.cumulative(), stats.latency.total)
            for outcome, hist in list(stats.decisions.items()):
                buckets = hist.cumulative()
                decisions.add_metric([webhook, outcome], buckets[-1][1])
                decision_latency.add_metric([webhook, outcome], buckets, hist.total)
        yield from (requests, latency, in_flight, decisions, decision_latency)


@dataclass
class Metrics:
    webhooks: WebhookCollector
    policy_reloads: prom.Counter
    cert_not_after: prom.Gauge
    cert_rotations: prom.Counter
    namespace_lookups: prom.Counter

    @classmethod
    def create(cls, registry: prom.CollectorRegistry) -> Metrics:
        webhooks = WebhookCollector()
        registry.register(webhooks)
        return cls(
            webhooks=webhooks,
            policy_reloads=prom.Counter(
                "kubext_webhooks_policy_reloads_total",
                "Pod policy reloads from disk by result (success, error).",
                ["result"],
                registry=registry,
            ),
            cert_not_after=prom.Gauge(
                "kubext_webhooks_certificate_expiry_timestamp_seconds",
                "notAfter of the certificates in use (serving, ca).",
                ["certificate"],
                registry=registry,
            ),
            cert_rotations=prom.Counter(
                "kubext_webhooks_certificate_rotations_total",
                "Certificates issued by this replica (serving, ca).",
                ["certificate"],
                registry=registry,
            ),
            namespace_lookups=prom.Counter(
                "kubext_webhooks_namespace_lookups_total",
                "Namespace lookups for sidecar injection by result (hit, miss, error).",
                ["result"],
                registry=registry,
            ),
        )
