"""The checks: pure functions over plain Kubernetes objects, with no I/O. ``audit`` runs every
enabled rule over an inventory and returns the findings in a stable order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kubext_audit.checks import crds, extensions, security, webhooks, workloads
from kubext_audit.checks.model import (
    IGNORE_ANNOTATION,
    Finding,
    Inventory,
    Obj,
    Ref,
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
    if not isinstance(value, str):
        return set()
    return {part.strip() for part in str(value or "").split(",") if part.strip()}


@dataclass(frozen=True)
class Unreadable:
    """An object in a shape no API server would accept, which a check could not read."""

    ref: Ref
    rule: str
    error: str

    def __str__(self) -> str:
        return f"{self.ref}: {self.rule} cannot read it (a field of the wrong type: {self.error})"


def audit(
    inventory: Inventory,
    *,
    disabled: Iterable[str] = (),
    unreadable: list[Unreadable] | None = None,
) -> list[Finding]:
    """Every finding of every enabled rule; live-only rules run on a live inventory only.

    With ``unreadable``, a check that fails on a malformed object is recorded there and the
    other checks still run; without it, the error propagates (a bug in a check, in tests)."""
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
            try:
                findings.extend(list(rule.run(obj, inventory)))
            except (AttributeError, TypeError, KeyError, ValueError) as exc:
                if unreadable is None:
                    raise
                unreadable.append(Unreadable(Ref.of(obj), rule.id, str(exc)))
    return findings
