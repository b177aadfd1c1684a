"""Shared code for every kubext service: logging, config, health/metrics, Kubernetes client, quantities."""
