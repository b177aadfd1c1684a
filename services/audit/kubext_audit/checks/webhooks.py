"""Admission webhook configurations: each entry of ``webhooks``, and the Service behind it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kubext_audit.checks import services
from kubext_audit.checks.model import (
    Emit,
    Inventory,
    Obj,
    Path,
    Severity,
    get,
    items,
    mapping,
    rule,
)

WEBHOOKS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
# Annotations by which cert-manager's cainjector fills in caBundle after the manifest is applied.
CA_INJECTION = (
    "cert-manager.io/inject-ca-from",
    "cert-manager.io/inject-ca-from-secret",
    "cert-manager.io/inject-apiserver-ca",
)
NAMESPACE_LABEL = "kubernetes.io/metadata.name"


def each_webhook(obj: Obj) -> Iterator[tuple[Path, dict[str, Any]]]:
    for index, webhook in items(obj, "webhooks"):
        if isinstance(webhook, dict):
            yield ("webhooks", index), webhook


def fails_closed(webhook: dict[str, Any]) -> bool:
    return webhook.get("failurePolicy", "Fail") == "Fail"


@rule(
    "WH001",
    Severity.WARNING,
    WEBHOOKS,
    title="failurePolicy is chosen explicitly",
    rationale="Unset, failurePolicy defaults to Fail: every matching request is refused while "
    "the webhook is down. Ignore lets requests through unchecked, so a validating webhook that "
    "enforces policy can be bypassed by making it unavailable.",
    fix="Set failurePolicy: Fail for policy that must hold (and exclude the system namespaces), "
    "Ignore for best-effort defaults.",
)
def failure_policy(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for path, webhook in each_webhook(obj):
        policy = webhook.get("failurePolicy")
        if policy is None:
            yield Emit((*path, "failurePolicy"), f"{webhook.get('name')}: unset (defaults to Fail)")
        elif policy == "Ignore" and obj.get("kind") == "ValidatingWebhookConfiguration":
            yield Emit(
                (*path, "failurePolicy"),
                f"{webhook.get('name')}: Ignore: the policy is skipped while the webhook is down",
                severity=Severity.INFO,
            )


@rule(
    "WH002",
    Severity.ERROR,
    WEBHOOKS,
    title="sideEffects None or NoneOnDryRun",
    rationale="A webhook with side effects (or Unknown) makes every dry-run request that it "
    "matches fail, and admissionregistration.k8s.io/v1 rejects Unknown and Some.",
    fix="Make the webhook free of side effects and set sideEffects: None (or NoneOnDryRun when "
    "it skips them for dry runs).",
)
def side_effects(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for path, webhook in each_webhook(obj):
        value = webhook.get("sideEffects")
        if value not in ("None", "NoneOnDryRun"):
            yield Emit((*path, "sideEffects"), f"{webhook.get('name')}: {value or 'unset'}")


def timeout(webhook: dict[str, Any]) -> int:
    value = webhook.get("timeoutSeconds")
    return value if isinstance(value, int) else 10  # the API server's default


@rule(
    "WH003",
    Severity.ERROR,
    WEBHOOKS,
    title="timeoutSeconds at most 10",
    rationale="The API server allows 1 to 30 s, but a client's whole request usually has about "
    "that much: a slow webhook makes every matching request time out.",
    fix="Set timeoutSeconds to 5 or less and make the webhook answer well within it.",
)
def timeout_limit(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for path, webhook in each_webhook(obj):
        if timeout(webhook) > 10:
            yield Emit((*path, "timeoutSeconds"), f"{webhook.get('name')}: {timeout(webhook)} s")


@rule(
    "WH004",
    Severity.WARNING,
    WEBHOOKS,
    title="timeoutSeconds at most 5",
    rationale="Every matching request waits up to the timeout when the webhook stalls; above "
    "5 s (the default is 10) a stalled webhook is felt as an API outage.",
    fix="Set timeoutSeconds: 5 (or less).",
)
def timeout_short(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for path, webhook in each_webhook(obj):
        seconds = timeout(webhook)
        if 5 < seconds <= 10:
            unset = "" if "timeoutSeconds" in webhook else " (unset: the default)"
            yield Emit((*path, "timeoutSeconds"), f"{webhook.get('name')}: {seconds} s{unset}")


def matches_namespaced(webhook: dict[str, Any]) -> bool:
    rules = [r for _, r in items(webhook, "rules")]
    return not rules or any(r.get("scope", "*") in ("*", "Namespaced") for r in rules)


def not_excluded(webhook: dict[str, Any], needed: list[str]) -> list[str]:
    """Those of ``needed`` the webhook may match. An opt-in selector (matchLabels, In, Exists on
    a label) skips every namespace not labelled for it, except one chosen by name: `In` on
    kubernetes.io/metadata.name matches exactly the namespaces it names."""
    selector = mapping(webhook.get("namespaceSelector"))
    by_name: set[str] | None = None
    if selector.get("matchLabels"):
        return []
    excluded: set[str] = set()
    for _, expression in items(selector, "matchExpressions"):
        operator, values = expression.get("operator"), expression.get("values") or []
        if expression.get("key") == NAMESPACE_LABEL and operator == "In":
            by_name = set(values) if by_name is None else by_name & set(values)
        elif operator in ("In", "Exists"):
            return []
        elif expression.get("key") == NAMESPACE_LABEL and operator == "NotIn":
            excluded.update(values)
    if by_name is not None:
        return [name for name in needed if name in by_name and name not in excluded]
    # A match condition naming the namespace (`request.namespace != 'kube-system'`) counts too.
    for _, condition in items(webhook, "matchConditions"):
        expression = str(condition.get("expression", ""))
        if "namespace" in expression:
            excluded.update(
                name
                for name in ("kube-system", own_namespace(webhook) or "")
                if name and (f"'{name}'" in expression or f'"{name}"' in expression)
            )
    return [name for name in needed if name not in excluded]


def own_namespace(webhook: dict[str, Any]) -> str | None:
    namespace = get(webhook, "clientConfig", "service", "namespace")
    return str(namespace) if namespace else None


@rule(
    "WH005",
    Severity.ERROR,
    WEBHOOKS,
    title="kube-system and the webhook's own namespace are excluded",
    rationale="A fail-closed webhook that matches kube-system or the namespace its own pods run "
    "in can block the pods that would bring it back: an outage that does not heal itself.",
    fix="Add a namespaceSelector with `kubernetes.io/metadata.name NotIn [kube-system, "
    "<own namespace>]` (or make it opt-in with matchLabels).",
)
def excludes_system_namespaces(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for path, webhook in each_webhook(obj):
        if not matches_namespaced(webhook):
            continue
        own = own_namespace(webhook)
        missing = not_excluded(webhook, ["kube-system", *([own] if own else [])])
        if missing:
            yield Emit(
                (*path, "namespaceSelector"),
                f"{webhook.get('name')}: does not exclude {', '.join(map(str, missing))}",
                severity=None if fails_closed(webhook) else Severity.WARNING,
            )


@rule(
    "WH006",
    Severity.ERROR,
    WEBHOOKS,
    title="admissionReviewVersions includes v1",
    rationale="The API server sends the first version in the list that it speaks; without v1 "
    "the webhook depends on v1beta1, which current API servers may no longer send.",
    fix="Set admissionReviewVersions: [v1] and answer admission.k8s.io/v1 AdmissionReviews.",
)
def review_versions(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for path, webhook in each_webhook(obj):
        versions = webhook.get("admissionReviewVersions") or []
        if "v1" not in versions:
            yield Emit((*path, "admissionReviewVersions"), f"{webhook.get('name')}: {versions}")


@rule(
    "WH007",
    Severity.WARNING,
    WEBHOOKS,
    title="a caBundle to verify the webhook's certificate",
    rationale="Without caBundle the API server verifies the webhook against its own system "
    "roots, which a private serving certificate fails: every call errors. In manifests the "
    "bundle may be injected later (cert-manager, or a webhook that manages its own TLS).",
    fix="Set clientConfig.caBundle, or the cert-manager.io/inject-ca-from annotation, or make "
    "sure the component that manages the certificate patches it in.",
)
def ca_bundle(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    annotations = get(obj, "metadata", "annotations") or {}
    if any(key in annotations for key in CA_INJECTION):
        return
    for path, webhook in each_webhook(obj):
        if get(webhook, "clientConfig", "service") and not get(webhook, "clientConfig", "caBundle"):
            yield Emit(
                (*path, "clientConfig", "caBundle"),
                f"{webhook.get('name')}: no caBundle"
                + ("" if inventory.live else " (unless injected at runtime)"),
                severity=Severity.ERROR if inventory.live else None,
            )


@rule(
    "WH008",
    Severity.INFO,
    ("MutatingWebhookConfiguration",),
    title="reinvocationPolicy chosen for mutating webhooks",
    rationale="Unset means Never: when a later mutating webhook adds a container, this one does "
    "not see it, and the defaults it applies are missing from that container.",
    fix="Set reinvocationPolicy: IfNeeded when the patch is idempotent and later webhooks may "
    "add what it mutates; Never (explicitly) otherwise.",
)
def reinvocation(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for path, webhook in each_webhook(obj):
        if "reinvocationPolicy" not in webhook:
            yield Emit((*path, "reinvocationPolicy"), f"{webhook.get('name')}: unset (Never)")


@rule(
    "WH009",
    Severity.ERROR,
    WEBHOOKS,
    title="the webhook's Service exists with ready endpoints",
    rationale="The API server calls the Service for every matching request: a missing Service "
    "or one without ready endpoints fails each of them (fail-closed) or skips the webhook.",
    fix="Deploy the webhook's pods and Service, or correct clientConfig.service.",
    live_only=True,
)
def service_ready(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for path, webhook in each_webhook(obj):
        service = get(webhook, "clientConfig", "service")
        if isinstance(service, dict):
            problem = services.service_problem(
                inventory, namespace=str(service.get("namespace")), name=str(service.get("name"))
            )
            if problem:
                yield Emit((*path, "clientConfig", "service"), f"{webhook.get('name')}: {problem}")


RULES = (
    failure_policy,
    side_effects,
    timeout_limit,
    timeout_short,
    excludes_system_namespaces,
    review_versions,
    ca_bundle,
    reinvocation,
    service_ready,
)
