"""The live-only checks against the rig's cluster: a webhook configuration and a CRD whose
Services have no ready endpoints (a Service selecting no pod), and one that does not exist."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client, utils

from kubext_audit import checks, cluster, embedded


def test_live_only_checks_find_services_without_endpoints(
    kube_api: client.ApiClient, namespace: str
) -> None:
    suffix = uuid.uuid4().hex[:6]
    group = f"audit{suffix}.example.org"
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "nobody", "namespace": namespace},
        "spec": {"selector": {"app": f"none-{suffix}"}, "ports": [{"port": 443}]},
    }
    webhook: dict[str, Any] = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": f"audit-{suffix}"},
        "webhooks": [
            {
                "name": f"never.audit-{suffix}.example.org",
                "clientConfig": {"service": {"namespace": namespace, "name": "nobody"}},
                # Matches nothing (an opt-in label no namespace has) and fails open: harmless
                # to the shared cluster.
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "timeoutSeconds": 1,
                "admissionReviewVersions": ["v1"],
                "namespaceSelector": {"matchLabels": {f"audit-{suffix}": "never"}},
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["configmaps"],
                    }
                ],
            }
        ],
    }
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"things.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "things", "singular": "thing", "kind": "Thing"},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": schema},
                {"name": "v2", "served": True, "storage": False, "schema": schema},
            ],
            "conversion": {
                "strategy": "Webhook",
                "webhook": {
                    "conversionReviewVersions": ["v1"],
                    "clientConfig": {"service": {"namespace": namespace, "name": "missing"}},
                },
            },
        },
    }
    utils.create_from_dict(kube_api, service)
    admission = client.AdmissionregistrationV1Api(kube_api)
    extensions = client.ApiextensionsV1Api(kube_api)
    utils.create_from_dict(kube_api, webhook)
    utils.create_from_dict(kube_api, crd)
    try:
        listed = cluster.read(kube_api)
        assert listed.problems == []
        found = {
            (f.rule, str(f.ref), f.message)
            for f in checks.audit(embedded.inventory(listed.objects, live=True))
        }
        hook = f"ValidatingWebhookConfiguration/audit-{suffix}"
        assert (
            "WH009",
            hook,
            f"never.audit-{suffix}.example.org: Service {namespace}/nobody has no ready endpoints",
        ) in found
        assert (
            "CRD009",
            f"CustomResourceDefinition/things.{group}",
            f"Service {namespace}/missing does not exist",
        ) in found
        # The manifest-only checks see the same objects live: no caBundle is an error there.
        assert any(rule == "WH007" and ref == hook for rule, ref, _ in found)
    finally:
        admission.delete_validating_webhook_configuration(f"audit-{suffix}")
        extensions.delete_custom_resource_definition(f"things.{group}")


def test_an_unreachable_cluster_is_one_line() -> None:
    api = client.ApiClient(client.Configuration(host="https://127.0.0.1:1"))
    with pytest.raises(
        cluster.Unreachable, match="cannot reach the API server at https://127.0.0.1:1"
    ):
        cluster.read(api)
