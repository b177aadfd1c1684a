"""Pod and AdmissionReview builders shared by the tests."""

from __future__ import annotations

import copy
from typing import Any

RESOURCES = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"cpu": "500m", "memory": "256Mi"},
}


def container(
    name: str = "app", image: str = "gcr.io/team/app:1.0", **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "image": image,
        "resources": copy.deepcopy(RESOURCES),
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
    }
    body.update(extra)
    return body


def compliant_pod(name: str = "web", **spec: Any) -> dict[str, Any]:
    """A pod the default policy admits."""
    body: dict[str, Any] = {"containers": [container()]}
    body.update(spec)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "web", "version": "1.0", "environment": "prod"},
        },
        "spec": body,
    }


def review(
    obj: Any,
    *,
    operation: str = "CREATE",
    namespace: str = "team-a",
    old: Any = None,
    kind: dict[str, str] | None = None,
    uid: str = "0b1c-uid",
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": uid,
        "kind": kind or {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "operation": operation,
        "namespace": namespace,
        "userInfo": {"username": "alice"},
        "object": obj,
    }
    if old is not None:
        request["oldObject"] = old
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
