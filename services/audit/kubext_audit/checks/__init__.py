"""The checks: pure functions over plain Kubernetes objects, with no I/O. ``audit`` runs every
enabled rule over an inventory and returns the findings in a stable order."""

from __future__ import annotations

from collections.abc import Iterable

from kubext_audit.checks import crds, extensions, security, webhooks, workloads
from kubext_audit.checks.model import (
    IGNORE_ANNOTATION,
    Finding,
    Inventory,
    Obj,
    Rule,
    get,
)

RULES: tuple[Rule, ...] = (
    *crds.RULES,
    *webhooks.RULES,
    *workloads.RULES,
    *security.RULES,
    *extensions.RULES,
)
BY_ID = {r.id: r for r in RULES}
assert len(BY_ID) == len(RULES), "duplicate rule IDs"


def ignored_by_annotation(obj: Obj) -> set[str]:
    value = get(obj, "metadata", "annotations", IGNORE_ANNOTATION)
    return {part.strip() for part in str(value or "").split(",") if part.strip()}


def audit(inventory: Inventory, *, disabled: Iterable[str] = ()) -> list[Finding]:
    """Every finding of every enabled rule; live-only rules run on a live inventory only."""
    off = set(disabled)
    findings: list[Finding] = []
    for obj in inventory.objects:
        ignored = ignored_by_annotation(obj)
        if "*" in ignored:
            continue
        for rule in RULES:
            if rule.id in off or rule.id in ignored or obj.get("kind") not in rule.kinds:
                continue
            if rule.live_only and not inventory.live:
                continue
            findings.extend(rule.run(obj, inventory))
    return findings
