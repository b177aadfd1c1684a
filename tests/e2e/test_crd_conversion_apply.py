"""`./kubext up`'s CRD apply on a cluster where another manager (the operator chart, or
`kubectl apply` of the CRD file) pointed a CRD's conversion webhook at a Service: up points it at
the host's webhook server instead of failing with "exactly one of url or service is required".

What is real: the rig's API server (validation, server-side apply, managed fields) and kubectl.
Nothing else runs; the CRD is a throwaway of this test's own, never served."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import yaml

from kubext_rig import cluster, stack


def conversion_crd(group: str) -> dict[str, object]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
            "conversion": {
                "strategy": "Webhook",
                "webhook": {
                    "conversionReviewVersions": ["v1"],
                    "clientConfig": {
                        "service": {"namespace": "kubext-system", "name": "kubext-webhooks"}
                    },
                },
            },
        },
    }


def test_up_repoints_a_conversion_another_manager_set_to_a_service(
    kube_cluster: cluster.ClusterInfo, tmp_path: Path
) -> None:
    crd = conversion_crd(f"t{uuid.uuid4().hex[:8]}.kubext.io")
    name = crd["metadata"]["name"]  # type: ignore[index]
    cluster.kubectl(kube_cluster, "apply", "-f", "-", stdin=json.dumps(crd))  # another manager
    try:
        (tmp_path / "crd.yaml").write_text(yaml.safe_dump(crd))
        stack._apply_crds(kube_cluster, tmp_path, "https://127.0.0.1:1")
        got = json.loads(cluster.kubectl(kube_cluster, "get", "crd", name, "-o", "json"))
        config = got["spec"]["conversion"]["webhook"]["clientConfig"]
        assert config.get("url") == "https://127.0.0.1:1/convert" and "service" not in config
    finally:
        cluster.kubectl(kube_cluster, "delete", "crd", name, "--wait=false")
