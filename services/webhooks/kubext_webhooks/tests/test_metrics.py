"""The webhooks' request metrics: plain numbers that scrape like prometheus_client's own."""

from __future__ import annotations

import prometheus_client as prom

from kubext_webhooks import metrics

# Bucket bounds themselves (a bound is inside its bucket: le), between them, and past the last.
SECONDS = [0.0005, 0.001, 0.0007, 0.003, 2.5, 3.0, 0.0, 0.04]


def scraped(registry: prom.CollectorRegistry, prefix: str) -> list[str]:
    return [
        line
        for line in prom.generate_latest(registry).decode().splitlines()
        if line.startswith(prefix) and "_created" not in line
    ]


def test_latencies_scrape_exactly_as_a_prometheus_histogram_of_the_same_values() -> None:
    ours = prom.CollectorRegistry()
    stats = metrics.Metrics.create(ours).webhooks.stats("/validate/pods")
    for seconds in SECONDS:
        stats.done(200, "allowed", seconds)
    reference = prom.CollectorRegistry()
    histogram = prom.Histogram(
        "controller_runtime_webhook_latency_seconds",
        "Time to answer a webhook request.",
        ["webhook"],
        buckets=metrics.LATENCY_BUCKETS,
        registry=reference,
    )
    for seconds in SECONDS:
        histogram.labels("/validate/pods").observe(seconds)
    name = "controller_runtime_webhook_latency_seconds"
    assert scraped(ours, name) == scraped(reference, name)
    assert f'{name}_bucket{{le="0.001",webhook="/validate/pods"}} 4.0' in scraped(ours, name)


def test_requests_decisions_and_in_flight_by_label() -> None:
    registry = prom.CollectorRegistry()
    collector = metrics.Metrics.create(registry).webhooks
    pods = collector.stats("/validate/pods")
    assert collector.stats("/validate/pods") is pods  # the alias path shares the record
    pods.done(200, "allowed", 0.001)
    pods.done(200, "denied", 0.002)
    pods.done(400, "bad-request", 0.0001)
    pods.in_flight = 2
    collector.stats("/convert").done(200, "allowed", 0.01)
    lines = scraped(registry, "")
    for line in (
        'controller_runtime_webhook_requests_total{code="200",webhook="/validate/pods"} 2.0',
        'controller_runtime_webhook_requests_total{code="400",webhook="/validate/pods"} 1.0',
        'controller_runtime_webhook_requests_total{code="200",webhook="/convert"} 1.0',
        'controller_runtime_webhook_requests_in_flight{webhook="/validate/pods"} 2.0',
        'controller_runtime_webhook_requests_in_flight{webhook="/convert"} 0.0',
        'controller_runtime_webhook_latency_seconds_count{webhook="/validate/pods"} 3.0',
        'kubext_webhooks_decisions_total{decision="denied",webhook="/validate/pods"} 1.0',
        'kubext_webhooks_decisions_total{decision="allowed",webhook="/convert"} 1.0',
        'kubext_webhooks_decision_latency_seconds_count{decision="allowed",webhook="/validate/pods"} 1.0',
        'kubext_webhooks_decision_latency_seconds_bucket{decision="denied",le="0.001",webhook="/validate/pods"} 0.0',
        'kubext_webhooks_decision_latency_seconds_bucket{decision="denied",le="0.0025",webhook="/validate/pods"} 1.0',
    ):
        assert line in lines, line
