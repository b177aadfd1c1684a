"""Live-cluster source: the objects the checks read, listed through the kubernetes client (the
one module that imports it). Kubeconfig (``--kubeconfig``, ``--context``) or in-cluster.

Lists are read raw (JSON as the API server sends it), so no field is lost to the client's
models. A list that fails (RBAC forbids it, the group is not served) is a problem naming the
resource; the others are still read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

# (kind, apiVersion, plural, namespaced): what the checks read, and what they look up.
RESOURCES = (
    ("CustomResourceDefinition", "apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    (
        "ValidatingWebhookConfiguration",
        "admissionregistration.k8s.io/v1",
        "validatingwebhookconfigurations",
        False,
    ),
    (
        "MutatingWebhookConfiguration",
        "admissionregistration.k8s.io/v1",
        "mutatingwebhookconfigurations",
        False,
    ),
    ("APIService", "apiregistration.k8s.io/v1", "apiservices", False),
    ("Namespace", "v1", "namespaces", False),
    ("ClusterRole", "rbac.authorization.k8s.io/v1", "clusterroles", False),
    ("ClusterRoleBinding", "rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    ("CSIDriver", "storage.k8s.io/v1", "csidrivers", False),
    ("Deployment", "apps/v1", "deployments", True),
    ("StatefulSet", "apps/v1", "statefulsets", True),
    ("DaemonSet", "apps/v1", "daemonsets", True),
    ("CronJob", "batch/v1", "cronjobs", True),
    ("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets", True),
    ("ServiceAccount", "v1", "serviceaccounts", True),
    # A scheduler's KubeSchedulerConfiguration is shipped in one (EXT004).
    ("ConfigMap", "v1", "configmaps", True),
    ("Service", "v1", "services", True),
    ("EndpointSlice", "discovery.k8s.io/v1", "endpointslices", True),
    ("Role", "rbac.authorization.k8s.io/v1", "roles", True),
    ("RoleBinding", "rbac.authorization.k8s.io/v1", "rolebindings", True),
)


class Unreachable(Exception):
    """No usable configuration, or the API server does not answer: one line saying which."""


@dataclass
class Listed:
    objects: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def api_client(*, kubeconfig: str | None, context: str | None) -> client.ApiClient:
    cfg = client.Configuration()
    try:
        if kubeconfig or context:
            config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=cfg
            )
        else:
            try:
                config.load_incluster_config(client_configuration=cfg)
            except ConfigException:
                config.load_kube_config(client_configuration=cfg)
    except (ConfigException, OSError) as exc:
        raise Unreachable(f"no usable cluster configuration: {exc}") from None
    return client.ApiClient(cfg)


def list_path(api_version: str, plural: str, namespace: str | None) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def read(api: client.ApiClient, *, namespace: str | None = None) -> Listed:
    """Every resource of RESOURCES (namespaced ones in ``namespace`` when given)."""
    listed = Listed()
    for kind, api_version, plural, namespaced in RESOURCES:
        path = list_path(api_version, plural, namespace if namespaced else None)
        try:
            # The client's two-step raw call (kubernetes >= 29): serialize, then send.
            method, url, headers, _, _ = api.param_serialize(
                "GET", path, auth_settings=["BearerToken"]
            )
            response = api.call_api(method, url, header_params=headers, _request_timeout=30)
            response.read()
        except Exception as exc:  # urllib3 connection errors: the cluster is not there
            host = api.configuration.host
            raise Unreachable(f"cannot reach the API server at {host}: {exc}") from None
        if response.status >= 400:
            listed.problems.append(
                f"cannot list {plural} ({path}): {response.status} {response.reason}"
            )
            continue
        body = json.loads(response.data)
        for item in body.get("items") or []:
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", api_version)
            listed.objects.append(item)
    return listed
