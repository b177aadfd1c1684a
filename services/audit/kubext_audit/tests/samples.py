"""Minimal manifests that pass every check, to break one field at a time in the tests."""

from __future__ import annotations

import copy
from typing import Any

from kubext_audit import checks
from kubext_audit.checks.model import Finding, Inventory

LABELS = {"app.kubernetes.io/name": "ctl", "app.kubernetes.io/component": "controller"}


def good_deployment() -> dict[str, Any]:
    container = {
        "name": "ctl",
        "image": "example.org/ctl:1.2.3",
        "args": ["--leader-elect"],
        "resources": {
            "requests": {"cpu": "10m", "memory": "64Mi"},
            "limits": {"cpu": "1", "memory": "128Mi"},
        },
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}},
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "ctl", "namespace": "sys", "labels": dict(LABELS)},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "ctl"}},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "serviceAccountName": "ctl",
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "affinity": {
                        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}
                    },
                    "containers": [container],
                },
            },
        },
    }


def pdb() -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "ctl", "namespace": "sys"},
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "ctl"}},
        },
    }


def binding(account: str = "ctl", namespace: str = "sys") -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": account, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }


def run(
    *objects: dict[str, Any], live: bool = False, disabled: tuple[str, ...] = ()
) -> list[Finding]:
    return checks.audit(Inventory(tuple(objects), live=live), disabled=disabled)


def triples(findings: list[Finding]) -> set[tuple[str, str, str]]:
    return {(f.rule, str(f.ref), f.field) for f in findings}


def deep(obj: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(obj)
