"""TaintToleration: a node's NoSchedule/NoExecute taints must be tolerated (Filter); each
untolerated PreferNoSchedule taint lowers the node's score (Score, normalised in reverse)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubext_scheduler.framework import interfaces, status
from kubext_scheduler.framework.cycle_state import CycleState
from kubext_scheduler.framework.interfaces import NodeScore, Pod
from kubext_scheduler.framework.nodeinfo import NodeInfo
from kubext_scheduler.framework.status import Status

NAME = "TaintToleration"
_FILTERED = ("NoSchedule", "NoExecute")


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """corev1 Toleration.ToleratesTaint: effect (empty = any), key (empty with Exists = any),
    then Exists or Equal on the value."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return bool(key) and (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def _tolerations(pod: Pod) -> list[Mapping[str, Any]]:
    raw = (pod.get("spec") or {}).get("tolerations")
    return [t for t in raw if isinstance(t, Mapping)] if raw else []


def taints(node: NodeInfo) -> list[Mapping[str, Any]]:
    raw = (node.node.get("spec") or {}).get("taints")
    return [t for t in raw if isinstance(t, Mapping)] if raw else []


def untolerated(
    node_taints: Sequence[Mapping[str, Any]], tolerations: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    return [t for t in node_taints if not any(tolerates(tol, t) for tol in tolerations)]


class TaintToleration:
    name = NAME

    def filter(self, state: CycleState, pod: Pod, node: NodeInfo) -> Status | None:
        relevant = [t for t in taints(node) if t.get("effect") in _FILTERED]
        if not relevant:
            return None
        for taint in untolerated(relevant, _tolerations(pod)):
            return status.unresolvable(
                f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"
            )
        return None

    def pre_score(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status | None:
        return None

    def score(self, state: CycleState, pod: Pod, node: NodeInfo) -> tuple[int, Status | None]:
        return self.score_nodes(state, pod, (node,))[0], None

    def score_nodes(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> list[int]:
        # Only tolerations that can apply to PreferNoSchedule count (upstream's filter).
        prefer = [
            t for t in _tolerations(pod) if (t.get("effect") or "") in ("", "PreferNoSchedule")
        ]
        out = []
        for node in nodes:
            soft = [t for t in taints(node) if t.get("effect") == "PreferNoSchedule"]
            out.append(len(untolerated(soft, prefer)) if soft else 0)
        return out

    def normalize_score(
        self, state: CycleState, pod: Pod, scores: list[NodeScore]
    ) -> Status | None:
        interfaces.default_normalize_score(scores, reverse=True)
        return None

    def normalize_values(self, values: list[int]) -> list[int]:
        return interfaces.default_normalize_values(values, reverse=True)


def new(args: None) -> TaintToleration:
    return TaintToleration()


_filter: type[interfaces.FilterPlugin] = TaintToleration
_score: type[interfaces.ScorePlugin] = TaintToleration
