"""The extension points, as kube-scheduler's framework has them, one Protocol each.

A plugin is any object with a ``name`` and the methods of the points it extends; the runtime
finds them with ``isinstance`` (the Protocols are runtime-checkable). Methods return None for
success, as Go plugins return a nil *Status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from kubext_scheduler.framework.cycle_state import CycleState
from kubext_scheduler.framework.nodeinfo import NodeInfo
from kubext_scheduler.framework.status import Status

Pod = Mapping[str, Any]
MIN_NODE_SCORE = 0
MAX_NODE_SCORE = 100


@dataclasses.dataclass(slots=True)  # hundreds built per cycle for each NormalizeScore
class NodeScore:
    name: str
    score: int


@dataclasses.dataclass(frozen=True)
class QueuedPodInfo:
    pod: Pod
    # When the pod entered the queue (seconds, any clock the queue uses).
    timestamp: float
    attempts: int = 0


@dataclasses.dataclass(frozen=True)
class PostFilterResult:
    nominated_node_name: str | None = None
    # The pods to delete so the pod fits the nominated node (DefaultPreemption's plan; the
    # standalone scheduler's I/O edge deletes them).
    victims: tuple[Pod, ...] = ()


@runtime_checkable
class Plugin(Protocol):
    name: str


class Handle(Protocol):
    """What a plugin may ask of its profile's framework (upstream's framework.Handle): run the
    filters, as preemption's what-if does."""

    def run_pre_filter(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status: ...

    def run_filter(self, state: CycleState, pod: Pod, node: NodeInfo) -> Status: ...

    def run_filter_with_nominated_pods(
        self, state: CycleState, pod: Pod, node: NodeInfo
    ) -> Status: ...


@runtime_checkable
class NeedsHandle(Protocol):
    """A plugin that gets its framework's Handle once the profile is built."""

    def set_handle(self, handle: Handle) -> None: ...


@runtime_checkable
class QueueSortPlugin(Plugin, Protocol):
    def less(self, a: QueuedPodInfo, b: QueuedPodInfo) -> bool: ...


@runtime_checkable
class PreFilterPlugin(Plugin, Protocol):
    def pre_filter(
        self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]
    ) -> Status | None: ...


@runtime_checkable
class FilterPlugin(Plugin, Protocol):
    def filter(self, state: CycleState, pod: Pod, node: NodeInfo) -> Status | None: ...


@runtime_checkable
class PostFilterPlugin(Plugin, Protocol):
    def post_filter(
        self, state: CycleState, pod: Pod, statuses: Mapping[str, Status]
    ) -> tuple[PostFilterResult | None, Status | None]: ...


@runtime_checkable
class PreScorePlugin(Plugin, Protocol):
    def pre_score(
        self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]
    ) -> Status | None: ...


@runtime_checkable
class ScorePlugin(Plugin, Protocol):
    def score(self, state: CycleState, pod: Pod, node: NodeInfo) -> tuple[int, Status | None]: ...


@runtime_checkable
class ScoresNodes(Protocol):
    """A Score plugin that also scores many nodes in one call, each exactly as ``score`` would
    (and never fails per node): the runtime then makes one call per cycle, not one per node."""

    def score_nodes(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> list[int]: ...


@runtime_checkable
class NormalizesValues(Protocol):
    """A Score plugin whose NormalizeScore reads the raw scores alone (not the cycle, not the
    nodes): it also rescales them as a list in node order, each exactly as normalize_score
    would, so the runtime builds no NodeScore per node per cycle."""

    def normalize_values(self, values: list[int]) -> list[int]: ...


@runtime_checkable
class ScoreExtensions(Protocol):
    """A Score plugin that rescales its raw scores to 0..MAX_NODE_SCORE (in place)."""

    def normalize_score(
        self, state: CycleState, pod: Pod, scores: list[NodeScore]
    ) -> Status | None: ...


@runtime_checkable
class ReservePlugin(Plugin, Protocol):
    def reserve(self, state: CycleState, pod: Pod, node_name: str) -> Status | None: ...

    def unreserve(self, state: CycleState, pod: Pod, node_name: str) -> None: ...


@runtime_checkable
class PermitPlugin(Plugin, Protocol):
    def permit(
        self, state: CycleState, pod: Pod, node_name: str
    ) -> tuple[Status | None, float]: ...


@runtime_checkable
class PreBindPlugin(Plugin, Protocol):
    def pre_bind(self, state: CycleState, pod: Pod, node_name: str) -> Status | None: ...


@runtime_checkable
class BindPlugin(Plugin, Protocol):
    def bind(self, state: CycleState, pod: Pod, node_name: str) -> Status | None: ...


@runtime_checkable
class PostBindPlugin(Plugin, Protocol):
    def post_bind(self, state: CycleState, pod: Pod, node_name: str) -> None: ...


# Each extension point's name in a KubeSchedulerConfiguration, and its Protocol (a plain
# ``type``: mypy takes no Protocol class where type[Plugin] is expected; isinstance needs no more).
POINTS: dict[str, type] = {
    "queueSort": QueueSortPlugin,
    "preFilter": PreFilterPlugin,
    "filter": FilterPlugin,
    "postFilter": PostFilterPlugin,
    "preScore": PreScorePlugin,
    "score": ScorePlugin,
    "reserve": ReservePlugin,
    "permit": PermitPlugin,
    "preBind": PreBindPlugin,
    "bind": BindPlugin,
    "postBind": PostBindPlugin,
}


def default_normalize_score(scores: list[NodeScore], *, reverse: bool = False) -> None:
    """kube-scheduler's DefaultNormalizeScore: scale so the best is MAX_NODE_SCORE; ``reverse``
    for raw scores where less is better (untolerated PreferNoSchedule taints)."""
    for s, value in zip(
        scores, default_normalize_values([s.score for s in scores], reverse=reverse), strict=True
    ):
        s.score = value


def default_normalize_values(values: list[int], *, reverse: bool = False) -> list[int]:
    """default_normalize_score on the raw scores as a list (the runtime's NormalizesValues)."""
    highest = max(values, default=0)
    if highest == 0:
        return [MAX_NODE_SCORE] * len(values) if reverse else list(values)
    if reverse:
        return [MAX_NODE_SCORE - MAX_NODE_SCORE * v // highest for v in values]
    return [MAX_NODE_SCORE * v // highest for v in values]
