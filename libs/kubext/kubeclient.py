"""Kubernetes client configuration: in-cluster when running in a pod, else a kubeconfig."""

from __future__ import annotations

import os

from kubernetes import client, config


class KubeConfigError(Exception):
    """No usable cluster credentials."""


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )


def api_client(
    *, kubeconfig: str | None = None, context: str | None = None, pool_maxsize: int | None = None
) -> client.ApiClient:
    """An ApiClient for the in-cluster service account, or ``kubeconfig`` ($KUBECONFIG, ~/.kube/config).

    ``pool_maxsize``: connections kept open to the API server (the client's default is 5 per
    CPU); a caller with more requests in flight at once (watches, worker threads) needs that
    many, or each request beyond it opens, and TLS-handshakes, a new connection."""
    cfg = client.Configuration()
    if pool_maxsize is not None:
        cfg.connection_pool_maxsize = pool_maxsize
    try:
        if kubeconfig is None and in_cluster():
            config.load_incluster_config(client_configuration=cfg)
        else:
            config.load_kube_config(
                config_file=kubeconfig or os.environ.get("KUBECONFIG") or None,
                context=context,
                client_configuration=cfg,
            )
    except (config.ConfigException, OSError) as exc:
        raise KubeConfigError(f"no Kubernetes credentials: {exc}") from None
    return client.ApiClient(configuration=cfg)
