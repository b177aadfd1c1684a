"""Prometheus metrics under the names controller-runtime users' dashboards already query."""

from __future__ import annotations

import prometheus_client as prom

RECONCILE_TOTAL = prom.Counter(
    "controller_runtime_reconcile_total",
    "Total number of reconciliations per controller",
    ["controller", "result"],
)
RECONCILE_ERRORS = prom.Counter(
    "controller_runtime_reconcile_errors_total",
    "Total number of reconciliation errors per controller",
    ["controller"],
)
RECONCILE_TIME = prom.Histogram(
    "controller_runtime_reconcile_time_seconds",
    "Length of time per reconciliation per controller",
    ["controller"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
ACTIVE_WORKERS = prom.Gauge(
    "controller_runtime_active_workers",
    "Number of currently used workers per controller",
    ["controller"],
)
MAX_CONCURRENT = prom.Gauge(
    "controller_runtime_max_concurrent_reconciles",
    "Maximum number of concurrent reconciles per controller",
    ["controller"],
)
QUEUE_DEPTH = prom.Gauge("workqueue_depth", "Current depth of workqueue", ["name"])
QUEUE_ADDS = prom.Counter(
    "workqueue_adds_total", "Total number of adds handled by workqueue", ["name"]
)
QUEUE_RETRIES = prom.Counter(
    "workqueue_retries_total", "Total number of retries handled by workqueue", ["name"]
)
QUEUE_LATENCY = prom.Histogram(
    "workqueue_queue_duration_seconds",
    "How long in seconds an item stays in workqueue before being requested",
    ["name"],
    buckets=(0.001, 0.01, 0.1, 0.5, 1, 5, 10, 60),
)
QUEUE_WORK = prom.Histogram(
    "workqueue_work_duration_seconds",
    "How long in seconds processing an item from workqueue takes",
    ["name"],
    buckets=(0.001, 0.01, 0.1, 0.5, 1, 5, 10, 60),
)
REST_REQUESTS = prom.Counter(
    "rest_client_requests_total",
    "Number of HTTP requests, partitioned by status code, method, and host",
    ["code", "method", "host"],
)
REST_LATENCY = prom.Histogram(
    "rest_client_request_duration_seconds",
    "Request latency in seconds, broken down by verb and host",
    ["verb", "host"],
    buckets=(0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
)
LEADER = prom.Gauge(
    "leader_election_master_status",
    "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup",
    ["name"],
)

WRITES = prom.Counter(
    "kubext_operator_api_writes_total",
    "Writes this operator sent to the API server, by resource and verb (leases included)",
    ["resource", "verb"],
)
