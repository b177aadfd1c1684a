"""PodTopologySpread: spread matching pods evenly over topology domains (kube-scheduler's
plugin). DoNotSchedule constraints filter (PreFilter counts the matching pods per domain over
every eligible node, Filter rejects a node where ``matching + self - global minimum > maxSkew``);
ScheduleAnyway constraints score (fewer matching pods in the node's domains is better).

A pod without constraints of its own gets the plugin's default constraints: kube-scheduler's
System set (hostname maxSkew 3, zone maxSkew 5, both ScheduleAnyway) or the ``List`` given in
the args. Upstream selects the pods a default constraint counts by the pod's Services and
controllers' selectors; this scheduler has no Service or ReplicaSet cache, so a default
constraint counts the pods of the same controller (same controller ownerReference uid), and a
pod without a controller gets no default constraints (upstream's empty selector).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import pydantic

from kubext_scheduler.framework import cycle_state, interfaces, labels, status
from kubext_scheduler.framework.cycle_state import CycleState
from kubext_scheduler.framework.interfaces import NodeScore, Pod
from kubext_scheduler.framework.nodeinfo import NodeInfo
from kubext_scheduler.framework.resources import InvalidObject
from kubext_scheduler.framework.status import Status
from kubext_scheduler.plugins import nodeaffinity, tainttoleration

NAME = "PodTopologySpread"
REASON = "node(s) didn't match pod topology spread constraints"
REASON_MISSING_LABEL = REASON + " (missing required label)"
HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
_PRE_FILTER_KEY = cycle_state.key("PreFilter", NAME)
_PRE_SCORE_KEY = cycle_state.key("PreScore", NAME)
_MAX_INT32 = 2**31 - 1
_Policy = Literal["Honor", "Ignore"]
_Action = Literal["DoNotSchedule", "ScheduleAnyway"]


class DefaultConstraint(pydantic.BaseModel):
    """A corev1 TopologySpreadConstraint without a selector (it is deduced per pod)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    maxSkew: pydantic.StrictInt = pydantic.Field(gt=0)
    topologyKey: str = pydantic.Field(min_length=1)
    whenUnsatisfiable: _Action
    minDomains: pydantic.StrictInt | None = pydantic.Field(None, gt=0)
    nodeAffinityPolicy: _Policy | None = None
    nodeTaintsPolicy: _Policy | None = None
    matchLabelKeys: list[str] = []
    labelSelector: dict[str, Any] | None = None

    @pydantic.field_validator("labelSelector")
    @classmethod
    def _no_selector(cls, value: object) -> None:
        if value is not None:
            raise ValueError("constraint must not define a selector, as they deduced for each pod")
        return None

    @pydantic.model_validator(mode="after")
    def _min_domains(self) -> DefaultConstraint:
        if self.minDomains is not None and self.whenUnsatisfiable != "DoNotSchedule":
            raise ValueError("minDomains can only be set with whenUnsatisfiable: DoNotSchedule")
        return self


SYSTEM_DEFAULT_CONSTRAINTS = (
    DefaultConstraint(maxSkew=3, topologyKey=HOSTNAME, whenUnsatisfiable="ScheduleAnyway"),
    DefaultConstraint(maxSkew=5, topologyKey=ZONE, whenUnsatisfiable="ScheduleAnyway"),
)


class Args(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    defaultConstraints: list[DefaultConstraint] = []
    # Upstream defaults to System, which takes no list: the seed's args need List spelled out.
    defaultingType: Literal["System", "List"] = "System"

    @pydantic.field_validator("defaultConstraints")
    @classmethod
    def _not_repeated(cls, value: list[DefaultConstraint]) -> list[DefaultConstraint]:
        seen = set()
        for i, c in enumerate(value):
            pair = (c.topologyKey, c.whenUnsatisfiable)
            if pair in seen:
                raise ValueError(f"[{i}]: {{{pair[0]}, {pair[1]}}} is duplicated")
            seen.add(pair)
        return value

    @pydantic.model_validator(mode="after")
    def _system_takes_no_list(self) -> Args:
        if self.defaultingType == "System" and self.defaultConstraints:
            raise ValueError(
                'defaultingType: Invalid value: "System": when .defaultConstraints are not '
                "empty (set defaultingType: List to use them, as kube-scheduler requires)"
            )
        return self

    def constraints(self) -> tuple[DefaultConstraint, ...]:
        if self.defaultingType == "System":
            return SYSTEM_DEFAULT_CONSTRAINTS
        return tuple(self.defaultConstraints)


class PodSelector(Protocol):
    @property
    def empty(self) -> bool: ...

    def matches(self, pod: Pod) -> bool: ...


@dataclasses.dataclass(frozen=True)
class LabelPodSelector:
    selector: labels.Selector

    @property
    def empty(self) -> bool:
        return self.selector.empty

    def matches(self, pod: Pod) -> bool:
        return self.selector.matches(labels.labels_of(pod))


def controller_uid(pod: Pod) -> str | None:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller") and ref.get("uid"):
            return str(ref["uid"])
    return None


@dataclasses.dataclass(frozen=True)
class ControllerPodSelector:
    """The pods of one controller: what a default constraint counts (see the module doc)."""

    uid: str
    empty = False

    def matches(self, pod: Pod) -> bool:
        return controller_uid(pod) == self.uid


@dataclasses.dataclass(frozen=True)
class Constraint:
    max_skew: int
    topology_key: str
    selector: PodSelector
    min_domains: int = 1
    honor_node_affinity: bool = True
    honor_node_taints: bool = False

    def includes(self, pod: Pod, node: NodeInfo) -> bool:
        """matchNodeInclusionPolicies: is the node one of the domains this constraint counts?"""
        if self.honor_node_affinity and not nodeaffinity.required_matches(pod, node.node):
            return False
        if self.honor_node_taints:
            hard = [t for t in tainttoleration.taints(node) if t.get("effect") in _HARD_EFFECTS]
            if tainttoleration.untolerated(hard, _tolerations(pod)):
                return False
        return True


_HARD_EFFECTS = ("NoSchedule", "NoExecute")


def _tolerations(pod: Pod) -> list[Mapping[str, Any]]:
    return [t for t in (pod.get("spec") or {}).get("tolerations") or [] if isinstance(t, Mapping)]


def _node_labels(node: NodeInfo) -> Mapping[str, str]:
    return labels.labels_of(node.node)


def _int(raw: object, where: str, *, default: int | None = None, minimum: int = 1) -> int:
    if raw is None and default is not None:
        return default
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < minimum:
        raise InvalidObject(f"{where}: {raw!r} is not an integer >= {minimum}")
    return raw


def _pod_constraint(raw: Mapping[str, Any], pod: Pod, where: str) -> Constraint:
    key = raw.get("topologyKey")
    if not key or not isinstance(key, str):
        raise InvalidObject(f"{where}.topologyKey: required")
    selector = labels.selector(raw.get("labelSelector"), f"{where}.labelSelector")
    pod_labels = labels.labels_of(pod)
    keys = [k for k in raw.get("matchLabelKeys") or [] if k in pod_labels]
    selector = selector.with_labels({k: pod_labels[k] for k in keys})
    return Constraint(
        max_skew=_int(raw.get("maxSkew"), f"{where}.maxSkew"),
        topology_key=key,
        selector=LabelPodSelector(selector),
        min_domains=_int(raw.get("minDomains"), f"{where}.minDomains", default=1),
        honor_node_affinity=(raw.get("nodeAffinityPolicy") or "Honor") == "Honor",
        honor_node_taints=(raw.get("nodeTaintsPolicy") or "Ignore") == "Honor",
    )


def constraints_of(
    pod: Pod, action: str, defaults: Sequence[DefaultConstraint]
) -> list[Constraint]:
    """The pod's constraints for ``action`` (DoNotSchedule or ScheduleAnyway), or the defaults
    for a pod that has none of its own (getConstraints)."""
    own = (pod.get("spec") or {}).get("topologySpreadConstraints") or []
    if own:
        out = []
        for i, raw in enumerate(own):
            if not isinstance(raw, Mapping):
                raise InvalidObject(f"spec.topologySpreadConstraints[{i}] is not an object")
            if raw.get("whenUnsatisfiable") not in ("DoNotSchedule", "ScheduleAnyway"):
                raise InvalidObject(
                    f"spec.topologySpreadConstraints[{i}].whenUnsatisfiable: "
                    f"{raw.get('whenUnsatisfiable')!r} is not DoNotSchedule or ScheduleAnyway"
                )
            if raw["whenUnsatisfiable"] == action:
                out.append(_pod_constraint(raw, pod, f"spec.topologySpreadConstraints[{i}]"))
        return out
    chosen = [c for c in defaults if c.whenUnsatisfiable == action]
    uid = controller_uid(pod)
    if not chosen or uid is None:
        return []
    return [
        Constraint(
            max_skew=c.maxSkew,
            topology_key=c.topologyKey,
            selector=ControllerPodSelector(uid),
            min_domains=c.minDomains or 1,
            honor_node_affinity=(c.nodeAffinityPolicy or "Honor") == "Honor",
            honor_node_taints=(c.nodeTaintsPolicy or "Ignore") == "Honor",
        )
        for c in chosen
    ]


def count_matching(pods: Sequence[Pod], selector: PodSelector, namespace: str) -> int:
    """countPodsMatchSelector: terminating pods and other namespaces do not count; an empty
    (match-everything) selector counts nothing."""
    if selector.empty:
        return 0
    return sum(
        1
        for p in pods
        if not (p.get("metadata") or {}).get("deletionTimestamp")
        and labels.namespace_of(p) == namespace
        and selector.matches(p)
    )


def _has_all_keys(node_labels: Mapping[str, str], constraints: Sequence[Constraint]) -> bool:
    return all(c.topology_key in node_labels for c in constraints)


@dataclasses.dataclass(frozen=True)
class _PreFilterState:
    constraints: list[Constraint]
    # Per constraint: matching pods per topology value, over the eligible nodes.
    counts: list[dict[str, int]]

    def min_match(self, i: int) -> int:
        domains = self.counts[i]
        if len(domains) < self.constraints[i].min_domains:
            return 0  # fewer eligible domains than minDomains: the global minimum is 0
        return min(domains.values(), default=_MAX_INT32)

    def clone(self) -> _PreFilterState:
        return self  # never changed after PreFilter (preemption recomputes it)


@dataclasses.dataclass(frozen=True)
class _PreScoreState:
    constraints: list[Constraint]
    ignored: frozenset[str]
    counts: list[dict[str, int]]
    weights: list[float]

    def clone(self) -> _PreScoreState:
        return self


class PodTopologySpread:
    name = NAME

    def __init__(self, args: Args | None = None) -> None:
        self.args = args or Args()
        self.defaults = self.args.constraints()
        self.system_defaulted = self.args.defaultingType == "System"

    # --- filtering --------------------------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status | None:
        constraints = constraints_of(pod, "DoNotSchedule", self.defaults)
        if not constraints:
            return status.SKIP
        namespace = labels.namespace_of(pod)
        counts: list[dict[str, int]] = [{} for _ in constraints]
        for node in nodes:
            node_labels = _node_labels(node)
            if not _has_all_keys(node_labels, constraints):
                continue
            for i, c in enumerate(constraints):
                if not c.includes(pod, node):
                    continue
                value = node_labels[c.topology_key]
                counts[i][value] = counts[i].get(value, 0) + count_matching(
                    node.pods, c.selector, namespace
                )
        state.write(_PRE_FILTER_KEY, _PreFilterState(constraints, counts))
        return None

    def filter(self, state: CycleState, pod: Pod, node: NodeInfo) -> Status | None:
        s = state.read(_PRE_FILTER_KEY, _PreFilterState)
        node_labels = _node_labels(node)
        for i, c in enumerate(s.constraints):
            if c.topology_key not in node_labels:
                return status.unresolvable(REASON_MISSING_LABEL)
            self_match = 1 if c.selector.matches(pod) else 0
            matching = s.counts[i].get(node_labels[c.topology_key], 0)
            if matching + self_match - s.min_match(i) > c.max_skew:
                return status.unschedulable(REASON)
        return None

    # --- scoring ----------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status | None:
        all_nodes = state.snapshot.nodes if state.snapshot is not None else nodes
        if not all_nodes:
            return status.SKIP
        constraints = constraints_of(pod, "ScheduleAnyway", self.defaults)
        if not constraints:
            return status.SKIP
        own = bool((pod.get("spec") or {}).get("topologySpreadConstraints"))
        require_all = own or not self.system_defaulted
        ignored: set[str] = set()
        counts: list[dict[str, int]] = [{} for _ in constraints]
        for node in nodes:
            node_labels = _node_labels(node)
            if require_all and not _has_all_keys(node_labels, constraints):
                ignored.add(node.name)
                continue
            for i, c in enumerate(constraints):
                if c.topology_key != HOSTNAME:  # per-node counts are taken in Score
                    counts[i].setdefault(node_labels.get(c.topology_key, ""), 0)
        weights = []
        for i, c in enumerate(constraints):
            size = len(counts[i]) if c.topology_key != HOSTNAME else len(nodes) - len(ignored)
            weights.append(math.log(size + 2))
        namespace = labels.namespace_of(pod)
        for node in all_nodes:
            node_labels = _node_labels(node)
            if require_all and not _has_all_keys(node_labels, constraints):
                continue
            for i, c in enumerate(constraints):
                if not c.includes(pod, node):
                    continue
                value = node_labels.get(c.topology_key, "")
                if value in counts[i]:
                    counts[i][value] += count_matching(node.pods, c.selector, namespace)
        state.write(
            _PRE_SCORE_KEY, _PreScoreState(constraints, frozenset(ignored), counts, weights)
        )
        return None

    def score(self, state: CycleState, pod: Pod, node: NodeInfo) -> tuple[int, Status | None]:
        s = state.read(_PRE_SCORE_KEY, _PreScoreState)
        if node.name in s.ignored:
            return 0, None
        node_labels = _node_labels(node)
        total = 0.0
        for i, c in enumerate(s.constraints):
            if c.topology_key not in node_labels:
                continue
            if c.topology_key == HOSTNAME:
                count = count_matching(node.pods, c.selector, labels.namespace_of(pod))
            else:
                count = s.counts[i].get(node_labels[c.topology_key], 0)
            # scoreForCount: fewer matching pods score lower (better, reversed below); maxSkew-1
            # lifts constraints that tolerate more skew.
            total += count * s.weights[i] + (c.max_skew - 1)
        return math.floor(total + 0.5), None  # Go's math.Round for non-negative values

    def normalize_score(
        self, state: CycleState, pod: Pod, scores: list[NodeScore]
    ) -> Status | None:
        s = state.read(_PRE_SCORE_KEY, _PreScoreState)
        counted = [x.score for x in scores if x.name not in s.ignored]
        low, high = min(counted, default=0), max(counted, default=0)
        for x in scores:
            if x.name in s.ignored:
                x.score = 0
            elif high == 0:
                x.score = interfaces.MAX_NODE_SCORE
            else:
                x.score = interfaces.MAX_NODE_SCORE * (high + low - x.score) // high
        return None


def new(args: Args | None) -> PodTopologySpread:
    return PodTopologySpread(args)


_filter: type[interfaces.FilterPlugin] = PodTopologySpread
_score: type[interfaces.ScorePlugin] = PodTopologySpread
