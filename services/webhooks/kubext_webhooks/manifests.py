"""The admission configuration objects, generated (pure) so deploy files and tests agree.

``python -m kubext_webhooks.manifests [--namespace NS] [--cert-manager]`` prints the
ValidatingWebhookConfiguration and MutatingWebhookConfiguration as YAML.

Every webhook: failurePolicy Fail (fail closed), sideEffects None, timeoutSeconds 5,
admissionReviewVersions [v1], matchPolicy Equivalent (v1beta1 Databases reach us as v1),
a namespaceSelector leaving out kube-system and our own namespace (a webhook that admits its
own pods can never restart), and matchConditions that skip calls whose answer is known.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

NAME = "kubext-webhooks"
DB_GROUP = "db.example.com"

# Skip UPDATEs that only touch metadata (finalizers, labels written by the operator): the
# database rules are about the spec.
SPEC_CHANGED = {
    "name": "spec-changed",
    "expression": "request.operation != 'UPDATE' || object.spec != oldObject.spec",
}
# A pod that is being deleted only loses finalizers; judging it again cannot change anything.
NOT_TERMINATING = {
    "name": "not-terminating",
    "expression": "request.operation != 'UPDATE' || !has(object.metadata.deletionTimestamp)",
}


def client_config(*, path: str, namespace: str, service: str, url: str | None) -> dict[str, Any]:
    """``url`` (out-of-cluster, e.g. https://127.0.0.1:8443) or the in-cluster Service."""
    if url:
        return {"url": url.rstrip("/") + path}
    return {"service": {"namespace": namespace, "name": service, "path": path, "port": 443}}


def _webhook(
    name: str,
    path: str,
    rules: list[dict[str, Any]],
    *,
    namespace: str,
    service: str,
    url: str | None,
    conditions: list[dict[str, str]],
    match_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    hook: dict[str, Any] = {
        "name": name,
        "clientConfig": client_config(path=path, namespace=namespace, service=service, url=url),
        "rules": rules,
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "sideEffects": "None",
        "timeoutSeconds": 5,
        "admissionReviewVersions": ["v1"],
        "namespaceSelector": {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "NotIn",
                    "values": sorted({"kube-system", namespace}),
                }
            ]
        },
    }
    if match_labels:
        hook["namespaceSelector"]["matchLabels"] = dict(match_labels)
    if conditions:
        hook["matchConditions"] = conditions
    return hook


def _rule(operations: list[str], group: str, version: str, resources: list[str]) -> dict[str, Any]:
    return {
        "operations": operations,
        "apiGroups": [group],
        "apiVersions": [version],
        "resources": resources,
        "scope": "Namespaced",
    }


def validating(
    *,
    namespace: str,
    service: str = NAME,
    url: str | None = None,
    name: str = NAME,
    match_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``match_labels`` makes the webhooks opt-in: only namespaces carrying them are sent."""
    common = {"namespace": namespace, "service": service, "url": url, "match_labels": match_labels}
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": NAME}},
        "webhooks": [
            _webhook(
                "pods.validate.webhooks.kubext.io",
                "/validate/pods",
                [_rule(["CREATE", "UPDATE"], "", "v1", ["pods", "pods/ephemeralcontainers"])],
                conditions=[NOT_TERMINATING],
                **common,
            ),
            _webhook(
                "databases.validate.webhooks.kubext.io",
                "/validate/databases",
                [_rule(["CREATE", "UPDATE"], DB_GROUP, "v1", ["databases"])],
                conditions=[SPEC_CHANGED],
                **common,
            ),
        ],
    }


def mutating(
    *,
    namespace: str,
    service: str = NAME,
    url: str | None = None,
    name: str = NAME,
    match_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``match_labels`` makes the webhooks opt-in: only namespaces carrying them are sent."""
    common = {"namespace": namespace, "service": service, "url": url, "match_labels": match_labels}
    pods = _webhook(
        "pods.mutate.webhooks.kubext.io",
        "/mutate/pods",
        [_rule(["CREATE"], "", "v1", ["pods"])],
        conditions=[],
        **common,
    )
    # Later webhooks may add containers we should default; our patch is idempotent.
    pods["reinvocationPolicy"] = "IfNeeded"
    databases = _webhook(
        "databases.mutate.webhooks.kubext.io",
        "/mutate/databases",
        [_rule(["CREATE", "UPDATE"], DB_GROUP, "v1", ["databases"])],
        conditions=[SPEC_CHANGED],
        **common,
    )
    databases["reinvocationPolicy"] = "Never"
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": NAME}},
        "webhooks": [pods, databases],
    }


def cert_manager_annotations(namespace: str, certificate: str = NAME) -> dict[str, str]:
    """cert-manager mode: its cainjector fills every caBundle from this Certificate."""
    return {"cert-manager.io/inject-ca-from": f"{namespace}/{certificate}"}


def all_configurations(
    *, namespace: str, url: str | None = None, cert_manager: bool = False
) -> list[dict[str, Any]]:
    out = [validating(namespace=namespace, url=url), mutating(namespace=namespace, url=url)]
    if cert_manager:
        for obj in out:
            obj["metadata"]["annotations"] = cert_manager_annotations(namespace)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubext_webhooks.manifests")
    parser.add_argument("--namespace", default="kubext-system")
    parser.add_argument("--url", help="clientConfig.url base instead of the in-cluster Service")
    parser.add_argument("--cert-manager", action="store_true", help="add cainjector annotations")
    args = parser.parse_args(argv)
    docs = all_configurations(
        namespace=args.namespace, url=args.url, cert_manager=args.cert_manager
    )
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
