"""InterPodAffinity: pods placed by the labels of the pods already in a topology domain
(kube-scheduler's plugin). Filter: the pod's required affinity terms need a matching pod in
the node's domain, its required anti-affinity terms none, and no existing pod's required
anti-affinity may match the incoming pod in that domain. Score: preferred terms both ways
(the incoming pod's, and the existing pods': affinity +weight, anti-affinity -weight), and
existing pods' required affinity terms that match the incoming pod at ``hardPodAffinityWeight``.

A term's namespaces are its ``namespaces`` list, or the term's pod's own namespace when neither
``namespaces`` nor ``namespaceSelector`` is set; ``namespaceSelector`` matches the labels of the
other pod's namespace (from the namespace cache).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence

import pydantic

from kubext_scheduler.framework import cycle_state, interfaces, labels, status
from kubext_scheduler.framework.cycle_state import CycleState
from kubext_scheduler.framework.interfaces import NodeScore, Pod
from kubext_scheduler.framework.nodeinfo import NodeInfo
from kubext_scheduler.framework.resources import InvalidObject
from kubext_scheduler.framework.status import Status

NAME = "InterPodAffinity"
REASON_AFFINITY = "node(s) didn't match pod affinity rules"
REASON_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
_PRE_FILTER_KEY = cycle_state.key("PreFilter", NAME)
_PRE_SCORE_KEY = cycle_state.key("PreScore", NAME)
_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
_PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"
Pair = tuple[str, str]


class Args(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    hardPodAffinityWeight: pydantic.StrictInt = pydantic.Field(1, ge=0, le=100)
    ignorePreferredTermsOfExistingPods: pydantic.StrictBool = False


@dataclasses.dataclass(frozen=True)
class Term:
    """framework.AffinityTerm: who a PodAffinityTerm selects, and over which topology key."""

    namespaces: frozenset[str]
    namespace_selector: labels.Selector
    selector: labels.Selector
    topology_key: str
    weight: int = 0

    def matches(self, pod: Pod, namespace_labels: Mapping[str, str]) -> bool:
        in_namespace = labels.namespace_of(pod) in self.namespaces or (
            self.namespace_selector.matches(namespace_labels)
        )
        return in_namespace and self.selector.matches(labels.labels_of(pod))


def _term(owner: Pod, raw: object, where: str, weight: int = 0) -> Term:
    if not isinstance(raw, Mapping):
        raise InvalidObject(f"{where} is not an object")
    names = [str(n) for n in raw.get("namespaces") or []]
    ns_selector = raw.get("namespaceSelector")
    if not names and ns_selector is None:
        names = [labels.namespace_of(owner)]
    return Term(
        namespaces=frozenset(names),
        namespace_selector=labels.selector(ns_selector, f"{where}.namespaceSelector"),
        selector=labels.selector(raw.get("labelSelector"), f"{where}.labelSelector"),
        topology_key=str(raw.get("topologyKey") or ""),
        weight=weight,
    )


def terms(pod: Pod, kind: str, *, required: bool) -> list[Term]:
    """The pod's required (or preferred, weighted) terms of ``podAffinity`` or
    ``podAntiAffinity``."""
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get(kind) or {}
    where = f"spec.affinity.{kind}"
    if required:
        return [
            _term(pod, raw, f"{where}.{_REQUIRED}[{i}]")
            for i, raw in enumerate(affinity.get(_REQUIRED) or [])
        ]
    out = []
    for i, raw in enumerate(affinity.get(_PREFERRED) or []):
        if not isinstance(raw, Mapping):
            raise InvalidObject(f"{where}.{_PREFERRED}[{i}] is not an object")
        weight = raw.get("weight")
        if not isinstance(weight, int) or isinstance(weight, bool):
            raise InvalidObject(f"{where}.{_PREFERRED}[{i}].weight: {weight!r} is not an integer")
        term = raw.get("podAffinityTerm")
        out.append(_term(pod, term, f"{where}.{_PREFERRED}[{i}].podAffinityTerm", weight))
    return out


def _pair(node: NodeInfo, key: str) -> Pair | None:
    value = labels.labels_of(node.node).get(key)
    return None if value is None else (key, value)


def _namespace_labels(state: CycleState, namespace: str) -> Mapping[str, str]:
    if state.snapshot is not None:
        return state.snapshot.labels_of_namespace(namespace)
    return {"kubernetes.io/metadata.name": namespace}


@dataclasses.dataclass(frozen=True)
class _PreFilterState:
    affinity: list[Term]
    anti_affinity: list[Term]
    pod_matches_own_affinity: bool
    # Matching pods per topology pair: for the incoming pod's affinity and anti-affinity terms,
    # and existing pods' anti-affinity terms that match the incoming pod.
    affinity_counts: Counter[Pair]
    anti_affinity_counts: Counter[Pair]
    existing_anti_affinity_counts: Counter[Pair]

    def clone(self) -> _PreFilterState:
        return self  # never changed after PreFilter (preemption recomputes it)


@dataclasses.dataclass(frozen=True)
class _PreScoreState:
    # topology key -> value -> summed weight.
    scores: dict[str, dict[str, int]]

    def clone(self) -> _PreScoreState:
        return self


def _with_pod_affinity(state: CycleState, nodes: Sequence[NodeInfo]) -> Sequence[NodeInfo]:
    """The nodes with pods with affinity (upstream's HavePodsWithAffinityNodeInfoList): the
    cycle's snapshot has them listed once for PreFilter and PreScore."""
    snapshot = state.snapshot
    if snapshot is not None and snapshot.nodes is nodes:
        return snapshot.with_pod_affinity()
    if snapshot is None and state.pod_affinity_nodes is not None:
        return state.pod_affinity_nodes
    return [node for node in nodes if node.pods_with_affinity]


class InterPodAffinity:
    name = NAME

    def __init__(self, args: Args | None = None) -> None:
        self.args = args or Args()

    # --- filtering --------------------------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status | None:
        affinity = terms(pod, "podAffinity", required=True)
        anti = terms(pod, "podAntiAffinity", required=True)
        own_ns_labels = _namespace_labels(state, labels.namespace_of(pod))
        existing: Counter[Pair] = Counter()
        affinity_counts: Counter[Pair] = Counter()
        anti_counts: Counter[Pair] = Counter()
        # Without terms of its own only the nodes with pods with affinity count.
        for node in nodes if affinity or anti else _with_pod_affinity(state, nodes):
            # Only pods with affinity terms can have anti-affinity to this pod.
            for other in node.pods_with_affinity:
                for term in terms(other, "podAntiAffinity", required=True):
                    pair = _pair(node, term.topology_key)
                    if pair is not None and term.matches(pod, own_ns_labels):
                        existing[pair] += 1
            if not affinity and not anti:
                continue
            for other in node.pods:
                other_ns_labels = _namespace_labels(state, labels.namespace_of(other))
                # Affinity counts a pod only when it matches every term (then for each term).
                if affinity and all(t.matches(other, other_ns_labels) for t in affinity):
                    for term in affinity:
                        if (pair := _pair(node, term.topology_key)) is not None:
                            affinity_counts[pair] += 1
                for term in anti:
                    pair = _pair(node, term.topology_key)
                    if pair is not None and term.matches(other, other_ns_labels):
                        anti_counts[pair] += 1
        if not existing and not affinity and not anti:
            return status.SKIP
        self_match = all(t.matches(pod, own_ns_labels) for t in affinity)
        state.write(
            _PRE_FILTER_KEY,
            _PreFilterState(affinity, anti, self_match, affinity_counts, anti_counts, existing),
        )
        return None

    def filter(self, state: CycleState, pod: Pod, node: NodeInfo) -> Status | None:
        s = state.read(_PRE_FILTER_KEY, _PreFilterState)
        if not _satisfies_affinity(s, node):
            return status.unresolvable(REASON_AFFINITY)
        for term in s.anti_affinity:
            pair = _pair(node, term.topology_key)
            if pair is not None and s.anti_affinity_counts[pair] > 0:
                return status.unschedulable(REASON_ANTI_AFFINITY)
        if s.existing_anti_affinity_counts:
            for pair in labels.labels_of(node.node).items():
                if s.existing_anti_affinity_counts[pair] > 0:
                    return status.unschedulable(REASON_EXISTING_ANTI_AFFINITY)
        return None

    # --- scoring ----------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status | None:
        preferred = terms(pod, "podAffinity", required=False)
        preferred_anti = terms(pod, "podAntiAffinity", required=False)
        has_constraints = bool(preferred or preferred_anti)
        if self.args.ignorePreferredTermsOfExistingPods and not has_constraints:
            return status.SKIP
        all_nodes = state.snapshot.nodes if state.snapshot is not None else nodes
        own_ns_labels = _namespace_labels(state, labels.namespace_of(pod))
        scores: dict[str, dict[str, int]] = {}

        def add(
            term: Term, weight: int, target: Pod, ns_labels: Mapping[str, str], node: NodeInfo
        ) -> None:
            pair = _pair(node, term.topology_key)
            if pair is not None and term.matches(target, ns_labels):
                per_value = scores.setdefault(pair[0], {})
                per_value[pair[1]] = per_value.get(pair[1], 0) + weight

        hard = self.args.hardPodAffinityWeight
        use_existing_preferred = not self.args.ignorePreferredTermsOfExistingPods
        for node in all_nodes if has_constraints else _with_pod_affinity(state, all_nodes):
            # Without terms of its own, only existing pods' terms count (upstream's
            # PodsWithAffinity), and only pods with some affinity have them.
            others = node.pods if has_constraints else node.pods_with_affinity
            if not others or not labels.labels_of(node.node):
                continue
            for other in others:
                other_ns_labels = _namespace_labels(state, labels.namespace_of(other))
                for term in preferred:
                    add(term, term.weight, other, other_ns_labels, node)
                for term in preferred_anti:
                    add(term, -term.weight, other, other_ns_labels, node)
                if hard > 0:
                    for term in terms(other, "podAffinity", required=True):
                        add(term, hard, pod, own_ns_labels, node)
                if use_existing_preferred:
                    for term in terms(other, "podAffinity", required=False):
                        add(term, term.weight, pod, own_ns_labels, node)
                    for term in terms(other, "podAntiAffinity", required=False):
                        add(term, -term.weight, pod, own_ns_labels, node)
        if not scores:
            return status.SKIP
        state.write(_PRE_SCORE_KEY, _PreScoreState(scores))
        return None

    def score(self, state: CycleState, pod: Pod, node: NodeInfo) -> tuple[int, Status | None]:
        s = state.read(_PRE_SCORE_KEY, _PreScoreState)
        node_labels = labels.labels_of(node.node)
        return sum(
            per_value.get(node_labels[key], 0)
            for key, per_value in s.scores.items()
            if key in node_labels
        ), None

    def normalize_score(
        self, state: CycleState, pod: Pod, scores: list[NodeScore]
    ) -> Status | None:
        # Min-max to 0..100 (raw scores may be negative: anti-affinity weights).
        low = min((x.score for x in scores), default=0)
        high = max((x.score for x in scores), default=0)
        for x in scores:
            spread = high - low
            x.score = int(interfaces.MAX_NODE_SCORE * ((x.score - low) / spread)) if spread else 0
        return None


def _satisfies_affinity(s: _PreFilterState, node: NodeInfo) -> bool:
    """satisfyPodAffinity: every term's domain on this node has a matching pod; or no pod
    anywhere matches and the pod matches its own terms (the first pod of a group)."""
    pods_exist = True
    for term in s.affinity:
        pair = _pair(node, term.topology_key)
        if pair is None:
            return False
        if s.affinity_counts[pair] <= 0:
            pods_exist = False
    if pods_exist:
        return True
    return not s.affinity_counts and s.pod_matches_own_affinity


def new(args: Args | None) -> InterPodAffinity:
    return InterPodAffinity(args)


_filter: type[interfaces.FilterPlugin] = InterPodAffinity
_score: type[interfaces.ScorePlugin] = InterPodAffinity
