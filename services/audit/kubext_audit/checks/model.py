"""The audit's vocabulary: severities, rules, findings and the inventory of objects the checks
read. Plain data over plain dicts (Kubernetes objects as the API or a manifest spells them)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = Mapping[str, Any]
# A field path: keys and list indices from the object's root, e.g. ("spec", "versions", 0).
Path = tuple[str | int, ...]

# Per object: `audit.kubext.io/ignore: "SEC001,WL004"` (or "*") switches those checks off for it.
IGNORE_ANNOTATION = "audit.kubext.io/ignore"


class Severity(enum.IntEnum):
    INFO = 1
    WARNING = 2
    ERROR = 3

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r} (error, warning or info)") from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Ref:
    """Which object: ``kind/namespace/name`` (``kind/name`` for cluster-scoped ones)."""

    kind: str
    name: str
    namespace: str = ""

    @classmethod
    def of(cls, obj: Obj) -> Ref:
        meta = obj.get("metadata") or {}
        return cls(
            kind=str(obj.get("kind", "")),
            name=str(meta.get("name", "")),
            namespace=str(meta.get("namespace") or ""),
        )

    def __str__(self) -> str:
        if self.namespace:
            return f"{self.kind}/{self.namespace}/{self.name}"
        return f"{self.kind}/{self.name}"


def format_path(path: Path) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    ref: Ref
    path: Path
    message: str

    @property
    def field(self) -> str:
        return format_path(self.path)

    def line(self) -> str:
        """The one-line form: severity, ID, object, field and what is wrong."""
        return f"{self.severity} {self.rule} {self.ref} {self.field}: {self.message}"


@dataclass(frozen=True)
class Inventory:
    """Everything being audited, so a check can look at related objects (the PodDisruptionBudget
    for a Deployment, the RBAC of its ServiceAccount). ``live`` says it is a whole cluster as
    read, where a Service or endpoint that is absent really is absent."""

    objects: tuple[Obj, ...]
    live: bool = False
    # ConfigMap data values that are YAML documents, parsed by the source (the checks parse
    # nothing): (ConfigMap, data key) -> the document.
    embedded: Mapping[tuple[Ref, str], Any] = field(default_factory=dict)

    def of_kind(self, *kinds: str) -> Iterator[Obj]:
        return (o for o in self.objects if o.get("kind") in kinds)

    def get(self, kind: str, name: str, namespace: str = "") -> Obj | None:
        for obj in self.of_kind(kind):
            ref = Ref.of(obj)
            if ref.name == name and ref.namespace == namespace:
                return obj
        return None


@dataclass(frozen=True)
class Emit:
    """What a check yields: the field path and the message; the rule adds ID, severity and the
    object. ``severity`` overrides the rule's (a node agent's privilege is only info)."""

    path: Path
    message: str
    severity: Severity | None = None


CheckFn = Callable[[Obj, Inventory], Iterable[Emit]]


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    kinds: frozenset[str]
    title: str
    rationale: str
    fix: str
    check: CheckFn = field(compare=False)
    live_only: bool = False

    def run(self, obj: Obj, inventory: Inventory) -> Iterator[Finding]:
        ref = Ref.of(obj)
        for emit in self.check(obj, inventory):
            yield Finding(
                rule=self.id,
                severity=emit.severity or self.severity,
                ref=ref,
                path=emit.path,
                message=emit.message,
            )


def rule(
    id: str,
    severity: Severity,
    kinds: Iterable[str],
    *,
    title: str,
    rationale: str,
    fix: str,
    live_only: bool = False,
) -> Callable[[CheckFn], Rule]:
    """Decorator: the function becomes the check of a Rule with this ID and documentation."""

    def wrap(fn: CheckFn) -> Rule:
        return Rule(
            id=id,
            severity=severity,
            kinds=frozenset(kinds),
            title=title,
            rationale=rationale,
            fix=fix,
            check=fn,
            live_only=live_only,
        )

    return wrap


def get(obj: Any, *path: str | int) -> Any:
    """The value at ``path`` under ``obj``, or None where any step is missing or of another type."""
    for step in path:
        if isinstance(step, int):
            if not isinstance(obj, list) or step >= len(obj):
                return None
        elif not isinstance(obj, Mapping):
            return None
        obj = obj[step] if isinstance(step, int) else obj.get(step)
    return obj


def items(obj: Any, *path: str | int) -> list[tuple[int, dict[str, Any]]]:
    """The mappings in the list at ``path`` with their indices (empty where missing or not a
    list; an element of another type is skipped, so a malformed manifest cannot crash a check)."""
    found = get(obj, *path)
    if not isinstance(found, list):
        return []
    return [(index, element) for index, element in enumerate(found) if isinstance(element, dict)]


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a mapping, else an empty one (labels: a list, a string...)."""
    return value if isinstance(value, Mapping) else {}
