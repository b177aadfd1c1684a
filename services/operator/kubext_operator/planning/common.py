"""Labels, owner references, spec hashes and conditions shared by every kind the operator owns."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

MANAGED_BY = "kubext-operator"
FIELD_MANAGER = "kubext-operator"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
ANNOTATION_SPEC_HASH = "kubext.example.com/spec-hash"
"""The hash of what the operator last applied: equal hash, nothing to write."""


class PlanError(ValueError):
    """A spec that passed validation but cannot be planned; the message says why, for the user.

    Retrying cannot help, only a change of the spec: the reconciler reports it on the object
    (phase Failed, Ready False with reason InvalidSpec, a Warning Event) and does not requeue.
    """


@dataclasses.dataclass(frozen=True, slots=True)
class Owner:
    """The custom resource that owns the children (what an owner reference needs)."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str
    generation: int = 1


@dataclasses.dataclass(frozen=True, slots=True)
class Desired:
    """One child as the operator wants it; ``create_only`` children are never updated."""

    api_version: str
    kind: str
    name: str
    body: dict[str, Any]
    spec_hash: str
    create_only: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Placement:
    """Where the operator's pods may run (config.pod_placement), set on every pod template it
    makes: a node selector and tolerations, as manifests (camelCase keys)."""

    node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()

    def apply(self, pod_spec: dict[str, Any]) -> dict[str, Any]:
        """``pod_spec`` with the selector and tolerations added (none given: unchanged, so the
        spec hash of an operator without placement stays what it was)."""
        if self.node_selector:
            pod_spec["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            pod_spec["tolerations"] = [dict(t) for t in self.tolerations]
        return pod_spec


def owner_reference(owner: Owner) -> dict[str, Any]:
    """A controller reference: garbage collection deletes the child with its owner."""
    return {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels(*, app: str, instance: str, component: str | None = None) -> dict[str, str]:
    out = {LABEL_NAME: app, LABEL_INSTANCE: instance, LABEL_MANAGED_BY: MANAGED_BY}
    if component:
        out[LABEL_COMPONENT] = component
    return out


_LABEL_VALUE_JUNK = re.compile(r"[^A-Za-z0-9._-]+")


def label_value(text: str) -> str:
    """``text`` as a valid label value: at most 63 of [A-Za-z0-9._-], alphanumeric at both ends."""
    value = _LABEL_VALUE_JUNK.sub("-", text)[:63].strip("-._")
    return value or "unknown"


def image_version(image: str) -> str:
    """The tag of an image reference (``latest`` when it has none), as a label value."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return label_value(last.rsplit(":", 1)[1] if ":" in last else "latest")


def pod_labels(
    base: dict[str, str], *, app: str, version: str, extra: Mapping[str, str]
) -> dict[str, str]:
    """Pod template labels: ours, plus the ones platform pod policies ask for (the seed's
    webhook requires app, version and environment; ``extra`` comes from config.pod_labels)."""
    return {**base, "app": label_value(app), "version": label_value(version), **extra}


def selector_string(selector: dict[str, str]) -> str:
    """``matchLabels`` as the text form the scale subresource reports (sorted, comma-joined)."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector.items()))


def spec_hash(body: dict[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def child(
    *,
    api_version: str,
    kind: str,
    name: str,
    owner: Owner,
    labels: dict[str, str],
    body: dict[str, Any],
    create_only: bool = False,
) -> Desired:
    """A complete child manifest: metadata with owner reference and spec hash, then ``body``."""
    manifest: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": dict(labels),
            "ownerReferences": [owner_reference(owner)],
        },
        **body,
    }
    digest = spec_hash(manifest)
    manifest["metadata"]["annotations"] = {ANNOTATION_SPEC_HASH: digest}
    return Desired(api_version, kind, name, manifest, digest, create_only)


def set_condition(
    conditions: list[dict[str, Any]] | None,
    *,
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """Conditions with ``type_`` replaced; lastTransitionTime moves only when status changes."""
    existing = {c.get("type"): c for c in conditions or []}
    previous = existing.get(type_)
    since = previous.get("lastTransitionTime") if previous else None
    if previous is None or previous.get("status") != status or not since:
        since = now
    existing[type_] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }
    return sorted(existing.values(), key=lambda c: str(c.get("type")))


def same_status(current: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether writing ``new`` would change nothing (absent keys and ``None`` are the same)."""
    return _prune(current or {}) == _prune(new)


def _prune(value: object) -> object:
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def condition_state(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any]:
    """The ``type_`` condition's status, reason and message (not its timestamps), or {}."""
    for cond in conditions or ():
        if cond.get("type") == type_:
            return {k: cond.get(k) for k in ("status", "reason", "message")}
    return {}


def drop_condition(conditions: list[dict[str, Any]] | None, type_: str) -> list[dict[str, Any]]:
    return [c for c in conditions or [] if c.get("type") != type_]


def needs_apply(
    desired: Desired,
    *,
    observed_hash: str | None,
    observed_generation: int | None,
    expected_hash: str | None,
    synced_generation: int | None,
) -> bool:
    """Whether ``desired`` must be written. ``observed_*`` come from the watch cache (None: not
    seen); ``expected_hash``/``synced_generation`` from this process's last write, which the
    cache may not show yet. A generation above the synced one means someone else edited the
    child's spec: apply again to take it back."""
    if observed_hash is None and observed_generation is None:
        return expected_hash != desired.spec_hash
    if desired.create_only:
        return False
    if desired.spec_hash not in (observed_hash, expected_hash):
        return True
    return (
        observed_hash == desired.spec_hash
        and synced_generation is not None
        and observed_generation is not None
        and observed_generation > synced_generation
    )


def is_current(*, desired: Desired, observed_hash: str | None, facts: dict[str, Any]) -> bool:
    """The observed workload carries ``desired`` and its controller has seen that generation."""
    return observed_hash == desired.spec_hash and bool(facts.get("generation_observed", True))
