"""Label selectors as apimachinery's ``metav1.LabelSelectorAsSelector`` builds them.

A nil selector selects nothing and ``{}`` selects everything; matchLabels and matchExpressions
(In, NotIn, Exists, DoesNotExist) are ANDed. An unknown operator is an InvalidObject (the
runtime turns it into an Error status naming the plugin).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kubext_scheduler.framework.resources import InvalidObject

_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "In":
            return present and labels[self.key] in self.values
        if self.operator == "NotIn":
            return not present or labels[self.key] not in self.values
        if self.operator == "Exists":
            return present
        return not present  # DoesNotExist


@dataclasses.dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()
    # labels.Nothing(): the selector of a nil LabelSelector.
    nothing: bool = False

    @property
    def empty(self) -> bool:
        """labels.Selector.Empty(): selects everything (and PodTopologySpread counts nothing)."""
        return not self.nothing and not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not self.nothing and all(r.matches(labels) for r in self.requirements)

    def with_labels(self, labels: Mapping[str, str]) -> Selector:
        """The selector with ``key In (value)`` added per label (matchLabelKeys); Nothing stays
        Nothing, as upstream's mergeLabelSetWithSelector."""
        if self.nothing or not labels:
            return self
        extra = tuple(Requirement(k, "In", frozenset([v])) for k, v in sorted(labels.items()))
        return Selector(extra + self.requirements)


NOTHING = Selector(nothing=True)
EVERYTHING = Selector()


def selector(raw: object, where: str = "labelSelector") -> Selector:
    if raw is None:
        return NOTHING
    if not isinstance(raw, Mapping):
        raise InvalidObject(f"{where} is not an object")
    reqs: list[Requirement] = []
    match_labels = raw.get("matchLabels") or {}
    if not isinstance(match_labels, Mapping):
        raise InvalidObject(f"{where}.matchLabels is not an object")
    for key, value in sorted(match_labels.items()):
        reqs.append(Requirement(str(key), "In", frozenset([str(value)])))
    for i, expr in enumerate(raw.get("matchExpressions") or []):
        if not isinstance(expr, Mapping):
            raise InvalidObject(f"{where}.matchExpressions[{i}] is not an object")
        operator = expr.get("operator")
        values = expr.get("values") or []
        if operator not in _OPERATORS:
            raise InvalidObject(
                f"{where}.matchExpressions[{i}].operator: {operator!r} is not a valid selector "
                f"operator (one of {', '.join(_OPERATORS)})"
            )
        if operator in ("In", "NotIn") and not values:
            raise InvalidObject(
                f"{where}.matchExpressions[{i}].values: must be non-empty for {operator}"
            )
        if operator in ("Exists", "DoesNotExist") and values:
            raise InvalidObject(
                f"{where}.matchExpressions[{i}].values: must be empty for {operator}"
            )
        reqs.append(Requirement(str(expr.get("key") or ""), operator, frozenset(map(str, values))))
    return Selector(tuple(reqs))


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    meta = obj.get("metadata") or {}
    found = meta.get("labels") if isinstance(meta, Mapping) else None
    return found if isinstance(found, Mapping) else {}


def namespace_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or "default") if isinstance(meta, Mapping) else "default"
