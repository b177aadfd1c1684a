"""Pod validation: the policy's rules over one Pod, every violation with its field path.

Pure: ``violations(pod, policy, namespace)`` lists what is wrong, ``decide(request, policy)``
turns that into an admission decision (deny in Enforce mode, warnings in Audit mode).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from kubext import quantity
from kubext_webhooks import podshape, policy, review

DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = {"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
# Init and regular containers carry resources; ephemeral containers may not (the API server
# rejects resources on them), so the resources rule skips them.
RESOURCE_LISTS = ("containers", "initContainers")


@dataclass(frozen=True)
class Violation:
    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def image_location(image: str) -> tuple[str, str]:
    """(registry host, repository path) of an image reference, Docker's way.

    The first path component is a registry only if it looks like a host (has a ``.`` or a
    ``:``, or is ``localhost``); otherwise the image lives on Docker Hub.
    """
    name = image.split("@", 1)[0]
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, path = first.lower(), rest
    else:
        host, path = DOCKER_HUB, name if sep else f"library/{name}"
    if host in _DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
    # Drop the tag: a ':' after the last '/'.
    head, slash, last = path.rpartition("/")
    path = head + slash + last.split(":", 1)[0]
    return host, path


def registry_allowed(image: str, allowed: list[str]) -> bool:
    """Whether ``image`` comes from one of ``allowed`` (``host`` or ``host/path-prefix``)."""
    host, path = image_location(image)
    for entry in allowed:
        entry_host, _, prefix = entry.partition("/")
        if entry_host in _DOCKER_HUB_ALIASES:
            entry_host = DOCKER_HUB
        if entry_host != host:
            continue
        if not prefix or path == prefix or path.startswith(prefix + "/"):
            return True
    return False


def _registries(refs: list[podshape.ContainerRef], rule: policy.RegistriesRule) -> list[Violation]:
    out = []
    for ref in refs:
        image = ref.body.get("image")
        if not image:
            out.append(
                Violation(
                    f"{ref.path}.image", "allowedRegistries", f"container {ref.name!r} has no image"
                )
            )
        elif not registry_allowed(image, rule.registries):
            host, _ = image_location(image)
            out.append(
                Violation(
                    f"{ref.path}.image",
                    "allowedRegistries",
                    f"image {image!r} of container {ref.name!r} is from registry {host!r}, "
                    f"which is not allowed (allowed: {', '.join(rule.registries)})",
                )
            )
    return out


def _privileged(refs: list[podshape.ContainerRef]) -> list[Violation]:
    out = []
    for ref in refs:
        if (ref.body.get("securityContext") or {}).get("privileged") is True:
            out.append(
                Violation(
                    f"{ref.path}.securityContext.privileged",
                    "noPrivileged",
                    f"container {ref.name!r} is privileged, which is not allowed",
                )
            )
    return out


def _root_settings(context: dict[str, Any], path: str, who: str) -> list[Violation]:
    out = []
    if context.get("runAsNonRoot") is False:
        out.append(
            Violation(f"{path}.runAsNonRoot", "noRunAsRoot", f"{who} sets runAsNonRoot to false")
        )
    if context.get("runAsUser") == 0:
        out.append(
            Violation(f"{path}.runAsUser", "noRunAsRoot", f"{who} runs as root (runAsUser 0)")
        )
    return out


def _run_as_root(pod: dict[str, Any], refs: list[podshape.ContainerRef]) -> list[Violation]:
    spec = pod.get("spec") or {}
    out = _root_settings(spec.get("securityContext") or {}, "spec.securityContext", "the pod")
    for ref in refs:
        out += _root_settings(
            ref.body.get("securityContext") or {},
            f"{ref.path}.securityContext",
            f"container {ref.name!r}",
        )
    return out


def _host_namespaces(pod: dict[str, Any]) -> list[Violation]:
    spec = pod.get("spec") or {}
    return [
        Violation(f"spec.{field}", "noHostNamespaces", f"{field} is not allowed")
        for field in ("hostNetwork", "hostPID", "hostIPC")
        if spec.get(field) is True
    ]


@functools.lru_cache(maxsize=4096)
def _sign(raw: str | int | float) -> int:
    """1 for a positive quantity, 0 for zero or less, -1 for text that is no quantity.

    Cached: pods repeat a handful of values ("100m", "128Mi") and parsing is the costly part.
    """
    try:
        return 1 if quantity.parse_quantity(raw).value > 0 else 0
    except quantity.QuantityError:
        return -1


def _resources(refs: list[podshape.ContainerRef], rule: policy.ResourcesRule) -> list[Violation]:
    out = []
    for ref in refs:
        if ref.list_name not in RESOURCE_LISTS:
            continue
        resources = ref.body.get("resources") or {}
        for kind in ("requests", "limits"):
            values = resources.get(kind) or {}
            for name in rule.resources:
                raw = values.get(name)
                if raw is None:
                    message = f"container {ref.name!r} must set {kind}.{name}"
                else:
                    sign = _sign(raw)
                    if sign > 0:
                        continue
                    if sign == 0:
                        message = f"container {ref.name!r} must set a non-zero {kind}.{name}"
                    else:
                        message = f"container {ref.name!r}: {kind}.{name} {raw!r} is not a quantity"
                out.append(Violation(f"{ref.path}.resources.{kind}.{name}", "resources", message))
    return out


def _labels(pod: dict[str, Any], rule: policy.LabelsRule) -> list[Violation]:
    labels = podshape.meta(pod).get("labels") or {}
    return [
        Violation(
            f"metadata.labels.{name}", "requiredLabels", f"required label {name!r} is missing"
        )
        for name in rule.labels
        if not labels.get(name)
    ]


def violations(
    pod: dict[str, Any], pod_policy: policy.PodPolicy, *, exempt: frozenset[str] = frozenset()
) -> list[Violation]:
    """Every violation of ``pod_policy`` by a well-shaped ``pod`` (see :func:`podshape.check`)."""
    rules = pod_policy.spec.rules
    refs = list(podshape.containers(pod))  # once for every rule
    out: list[Violation] = []
    if rules.required_labels.enabled and "requiredLabels" not in exempt:
        out += _labels(pod, rules.required_labels)
    if rules.no_host_namespaces.enabled and "noHostNamespaces" not in exempt:
        out += _host_namespaces(pod)
    if rules.no_run_as_root.enabled and "noRunAsRoot" not in exempt:
        out += _run_as_root(pod, refs)
    if rules.allowed_registries.enabled and "allowedRegistries" not in exempt:
        out += _registries(refs, rules.allowed_registries)
    if rules.no_privileged.enabled and "noPrivileged" not in exempt:
        out += _privileged(refs)
    if rules.resources.enabled and "resources" not in exempt:
        out += _resources(refs, rules.resources)
    return out


def decide(request: review.AdmissionRequest, pod_policy: policy.PodPolicy) -> review.Decision:
    """The validating webhook's answer for a Pod CREATE/UPDATE (or its ephemeralcontainers)."""
    if request.operation in ("DELETE", "CONNECT"):
        return review.Decision.allow()
    if request.kind != "Pod" or request.group != "":
        shown = "/".join(p for p in (request.group, request.version) if p) + f" {request.kind}"
        return review.Decision.invalid(f"this webhook validates core/v1 Pods, got {shown.strip()}")
    pod = request.object
    problem = podshape.check(pod)
    if problem:
        return review.Decision.invalid(f"malformed Pod: {problem}")
    metadata = podshape.meta(pod)
    if request.operation == "UPDATE" and metadata.get("deletionTimestamp"):
        return review.Decision.allow()  # a pod on its way out: let finalizers be removed
    namespace = request.namespace or metadata.get("namespace") or ""
    mode, exempt = pod_policy.for_namespace(namespace)
    found = violations(pod, pod_policy, exempt=exempt)
    if found and request.operation == "UPDATE" and podshape.check(request.old_object) is None:
        # Ratchet: an update is judged only on what it makes worse, so pods admitted under an
        # older policy can still get their labels or finalizers changed.
        before = set(violations(request.old_object or {}, pod_policy, exempt=exempt))
        found = [v for v in found if v not in before]
    if not found:
        return review.Decision.allow()
    summary = "; ".join(str(v) for v in found)
    who = podshape.display_name(pod, namespace)
    if mode is policy.Mode.AUDIT:
        decision = review.Decision.allow(
            warnings=[f"policy {pod_policy.name} (audit): {v}" for v in found]
        )
        decision.audit_annotations = {"policy-violations": summary[:4000]}
        return decision
    count = f"{len(found)} violation{'s' if len(found) != 1 else ''}"
    return review.Decision.deny(f"pod {who} violates policy {pod_policy.name} ({count}): {summary}")
