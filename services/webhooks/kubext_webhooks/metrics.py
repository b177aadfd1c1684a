"""Prometheus metrics, under controller-runtime's webhook names where they apply.

Dashboards built for controller-runtime webhooks read ``controller_runtime_webhook_*``; the
decision (allowed, patched, warned, denied, invalid) has its own counter and histogram since
controller-runtime has no such label.
"""

from __future__ import annotations

from dataclasses import dataclass

import prometheus_client as prom

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class Metrics:
    requests: prom.Counter
    latency: prom.Histogram
    in_flight: prom.Gauge
    decisions: prom.Counter
    decision_latency: prom.Histogram
    policy_reloads: prom.Counter
    cert_not_after: prom.Gauge
    cert_rotations: prom.Counter
    namespace_lookups: prom.Counter

    @classmethod
    def create(cls, registry: prom.CollectorRegistry) -> Metrics:
        return cls(
            requests=prom.Counter(
                "controller_runtime_webhook_requests_total",
                "Admission and conversion requests by webhook path and HTTP status code.",
                ["webhook", "code"],
                registry=registry,
            ),
            latency=prom.Histogram(
                "controller_runtime_webhook_latency_seconds",
                "Time to answer a webhook request.",
                ["webhook"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            in_flight=prom.Gauge(
                "controller_runtime_webhook_requests_in_flight",
                "Webhook requests being answered now.",
                ["webhook"],
                registry=registry,
            ),
            decisions=prom.Counter(
                "kubext_webhooks_decisions_total",
                "Webhook answers by decision: allowed, patched, warned, denied, invalid, error.",
                ["webhook", "decision"],
                registry=registry,
            ),
            decision_latency=prom.Histogram(
                "kubext_webhooks_decision_latency_seconds",
                "Time to answer a webhook request, by decision.",
                ["webhook", "decision"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
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
