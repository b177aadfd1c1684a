"""NodeAffinity: ``spec.nodeSelector`` and requiredDuringSchedulingIgnoredDuringExecution
must match the node (Filter); each matching preferredDuringScheduling term adds its weight
(Score, normalised so the best node gets 100).

A term matches when all its requirements do, and a term without requirements matches
nothing; the required terms are ORed. A requirement that cannot be evaluated (Gt with a
non-integer) does not match, as upstream's lazy-error selector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubext_scheduler.framework import interfaces, status
from kubext_scheduler.framework.cycle_state import CycleState
from kubext_scheduler.framework.interfaces import NodeScore, Pod
from kubext_scheduler.framework.nodeinfo import NodeInfo
from kubext_scheduler.framework.status import Status

NAME = "NodeAffinity"
REASON = "node(s) didn't match Pod's node affinity/selector"

Obj = Mapping[str, Any]


def _labels(node: Obj) -> Mapping[str, str]:
    return (node.get("metadata") or {}).get("labels") or {}


def _as_int(text: object) -> int | None:
    try:
        return int(str(text))
    except ValueError:
        return None


def requirement_matches(req: Obj, values_by_key: Mapping[str, str]) -> bool:
    key, operator = req.get("key"), req.get("operator")
    values = [str(v) for v in req.get("values") or []]
    present = key in values_by_key
    value = values_by_key.get(str(key))
    if operator == "In":
        return present and value in values
    if operator == "NotIn":
        return not present or value not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(values) == 1:
        have, bound = _as_int(value), _as_int(values[0])
        if have is None or bound is None:
            return False
        return have > bound if operator == "Gt" else have < bound
    return False


def term_matches(term: Obj, node: Obj) -> bool:
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    name = (node.get("metadata") or {}).get("name") or ""
    node_fields = {"metadata.name": str(name)}
    return all(requirement_matches(r, _labels(node)) for r in expressions) and all(
        r.get("key") == "metadata.name" and requirement_matches(r, node_fields) for r in fields
    )


def _affinity(pod: Pod) -> Obj:
    return ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}


def required_matches(pod: Pod, node: Obj) -> bool:
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    labels = _labels(node)
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    required = _affinity(pod).get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return True
    return any(term_matches(t, node) for t in required.get("nodeSelectorTerms") or [])


def _preferred(pod: Pod) -> list[Obj]:
    return list(_affinity(pod).get("preferredDuringSchedulingIgnoredDuringExecution") or [])


class NodeAffinity:
    name = NAME

    def pre_filter(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status | None:
        spec = pod.get("spec") or {}
        if not spec.get("nodeSelector") and not _affinity(pod).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        ):
            return status.SKIP
        return None

    def filter(self, state: CycleState, pod: Pod, node: NodeInfo) -> Status | None:
        return None if required_matches(pod, node.node) else status.unresolvable(REASON)

    def pre_score(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status | None:
        return None if _preferred(pod) else status.SKIP

    def score(self, state: CycleState, pod: Pod, node: NodeInfo) -> tuple[int, Status | None]:
        total = 0
        for term in _preferred(pod):
            weight = term.get("weight") or 0
            if weight and term_matches(term.get("preference") or {}, node.node):
                total += int(weight)
        return total, None

    def normalize_score(
        self, state: CycleState, pod: Pod, scores: list[NodeScore]
    ) -> Status | None:
        interfaces.default_normalize_score(scores)
        return None

    def normalize_values(self, values: list[int]) -> list[int]:
        return interfaces.default_normalize_values(values)


def new(args: None) -> NodeAffinity:
    return NodeAffinity()


_filter: type[interfaces.FilterPlugin] = NodeAffinity
_score: type[interfaces.ScorePlugin] = NodeAffinity
