"""Pod mutation: default labels and annotations, resources, securityContext, the logging sidecar.

Pure: :func:`patch` returns RFC 6902 operations valid against the pod as it is (missing or null
``labels``/``annotations``/``volumes``, keys with ``/`` or ``~``), and applying them yields a pod
for which :func:`patch` returns ``[]``: the webhook is idempotent, so reinvocation
(``reinvocationPolicy: IfNeeded``) never injects the sidecar twice.
"""

from __future__ import annotations

import copy
from typing import Any

from kubext import config, quantity
from kubext_webhooks import podshape, review

Op = dict[str, Any]

# The seed's restricted container securityContext (12.4.2 / 12.9.2).
RESTRICTED_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


class SidecarSettings(config.StrictModel):
    enabled: bool = True
    name: str = "logging-sidecar"
    image: str = "fluent/fluent-bit:1.9"
    # A pod annotation "true"/"false" decides; without it, the namespace label does.
    annotation: str = "sidecar.example.com/inject"
    namespace_label: str = "sidecar.example.com/inject"
    volume_name: str = "varlog"
    mount_path: str = "/var/log"
    requests: dict[str, str] = {"cpu": "100m", "memory": "128Mi"}
    limits: dict[str, str] = {"cpu": "200m", "memory": "256Mi"}


class MutationSettings(config.StrictModel):
    enabled: bool = True
    # Not "version": defaulting a label the policy requires would make the requirement moot.
    default_labels: dict[str, str] = {"managed-by": "admission-webhook"}
    default_annotations: dict[str, str] = {"mutated-by": "admission-webhook"}
    # Set once, at the first mutation; empty disables it.
    timestamp_annotation: str = "mutation-timestamp"
    default_requests: dict[str, str] = {"cpu": "100m", "memory": "128Mi"}
    default_limits: dict[str, str] = {"cpu": "500m", "memory": "512Mi"}
    security_context: dict[str, Any] = RESTRICTED_SECURITY_CONTEXT
    sidecar: SidecarSettings = SidecarSettings()


def escape(token: str) -> str:
    """One JSON Pointer reference token (RFC 6901): ``~`` -> ``~0``, then ``/`` -> ``~1``."""
    return token.replace("~", "~0").replace("/", "~1")


def _add(path: str, value: Any) -> Op:
    return {"op": "add", "path": path, "value": value}


def _map_ops(parent: str, key: str, current: Any, wanted: dict[str, Any]) -> list[Op]:
    """Add the missing keys of ``wanted`` under ``parent/key`` (a map that may be absent)."""
    missing = {k: v for k, v in wanted.items() if current is None or k not in current}
    if not missing:
        return []
    if current is None:
        return [_add(f"{parent}/{escape(key)}", missing)]
    return [_add(f"{parent}/{escape(key)}/{escape(k)}", v) for k, v in missing.items()]


def sidecar_wanted(
    pod: dict[str, Any], settings: MutationSettings, namespace_labels: dict[str, str] | None
) -> bool:
    """Whether the pod asks for the sidecar: its annotation, else its namespace's label."""
    sidecar = settings.sidecar
    if not sidecar.enabled:
        return False
    annotations: dict[str, str] = podshape.meta(pod).get("annotations") or {}
    if sidecar.annotation in annotations:
        return annotations[sidecar.annotation] == "true"
    return (namespace_labels or {}).get(sidecar.namespace_label) == "true"


def needs_namespace(pod: dict[str, Any], settings: MutationSettings) -> bool:
    """Whether :func:`sidecar_wanted` depends on the namespace (so it is worth looking up)."""
    sidecar = settings.sidecar
    if not (settings.enabled and sidecar.enabled):
        return False
    annotations = podshape.meta(pod).get("annotations") or {}
    containers = (pod.get("spec") or {}).get("containers") or []
    has_sidecar = any(c.get("name") == sidecar.name for c in containers)
    return sidecar.annotation not in annotations and not has_sidecar


def _cap(default: str, bound: Any, *, below: bool) -> str | Any:
    """``default``, clamped below (or above) an existing ``bound`` so requests <= limits holds."""
    if bound is None:
        return default
    try:
        d, b = quantity.parse_quantity(default), quantity.parse_quantity(bound)
    except quantity.QuantityError:
        return default
    if (below and b.value < d.value) or (not below and b.value > d.value):
        return bound
    return default


def _resources_ops(path: str, container: dict[str, Any], settings: MutationSettings) -> list[Op]:
    resources = container.get("resources")
    requests = (resources or {}).get("requests")
    limits = (resources or {}).get("limits")
    want_requests = {
        name: _cap(value, (limits or {}).get(name), below=True)
        for name, value in settings.default_requests.items()
    }
    want_limits = {
        name: _cap(value, (requests or {}).get(name), below=False)
        for name, value in settings.default_limits.items()
    }
    if resources is None:
        wanted: dict[str, Any] = {}
        if want_requests:
            wanted["requests"] = want_requests
        if want_limits:
            wanted["limits"] = want_limits
        return [_add(f"{path}/resources", wanted)] if wanted else []
    return _map_ops(f"{path}/resources", "requests", requests, want_requests) + _map_ops(
        f"{path}/resources", "limits", limits, want_limits
    )


def sidecar_container(settings: MutationSettings) -> dict[str, Any]:
    sidecar = settings.sidecar
    return {
        "name": sidecar.name,
        "image": sidecar.image,
        "volumeMounts": [{"name": sidecar.volume_name, "mountPath": sidecar.mount_path}],
        "resources": {"requests": dict(sidecar.requests), "limits": dict(sidecar.limits)},
        "securityContext": copy.deepcopy(settings.security_context),
    }


def patch(pod: dict[str, Any], settings: MutationSettings, *, inject: bool, now: str) -> list[Op]:
    """The operations that bring a well-shaped ``pod`` to its mutated form (``[]`` if it is)."""
    ops: list[Op] = []
    metadata = pod.get("metadata")
    annotations_wanted = dict(settings.default_annotations)
    if settings.timestamp_annotation:
        annotations_wanted[settings.timestamp_annotation] = now
    if metadata is None:
        new_meta = {}
        if settings.default_labels:
            new_meta["labels"] = dict(settings.default_labels)
        if annotations_wanted:
            new_meta["annotations"] = annotations_wanted
        if new_meta:
            ops.append(_add("/metadata", new_meta))
    else:
        ops += _map_ops("/metadata", "labels", metadata.get("labels"), settings.default_labels)
        ops += _map_ops("/metadata", "annotations", metadata.get("annotations"), annotations_wanted)

    spec = pod.get("spec")
    if spec is None:
        return ops  # nothing to default; the API server rejects a pod without a spec anyway
    for list_name in ("containers", "initContainers"):
        for index, container in enumerate(spec.get(list_name) or ()):
            path = f"/spec/{list_name}/{index}"
            ops += _resources_ops(path, container, settings)
            if not container.get("securityContext") and settings.security_context:
                ops.append(
                    _add(f"{path}/securityContext", copy.deepcopy(settings.security_context))
                )

    if inject:
        sidecar = settings.sidecar
        containers = spec.get("containers")
        if not any(c.get("name") == sidecar.name for c in containers or ()):
            container = sidecar_container(settings)
            ops.append(
                _add("/spec/containers/-", container)
                if containers is not None
                else _add("/spec/containers", [container])
            )
        volumes = spec.get("volumes")
        if not any(v.get("name") == sidecar.volume_name for v in volumes or ()):
            volume = {"name": sidecar.volume_name, "emptyDir": {}}
            ops.append(
                _add("/spec/volumes/-", volume)
                if volumes is not None
                else _add("/spec/volumes", [volume])
            )
    return ops


def decide(
    request: review.AdmissionRequest,
    settings: MutationSettings,
    *,
    namespace_labels: dict[str, str] | None,
    now: str,
) -> review.Decision:
    """The mutating webhook's answer. Only CREATE is mutated: a running pod's spec is immutable."""
    if request.operation != "CREATE" or not settings.enabled:
        return review.Decision.allow()
    if request.kind != "Pod" or request.group != "":
        return review.Decision.invalid(f"this webhook mutates core/v1 Pods, got {request.kind!r}")
    pod = request.object
    problem = podshape.check(pod)
    if problem:
        return review.Decision.invalid(f"malformed Pod: {problem}")
    inject = sidecar_wanted(pod, settings, namespace_labels)
    decision = review.Decision.allow()
    decision.patch = patch(pod, settings, inject=inject, now=now)
    return decision
