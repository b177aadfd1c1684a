"""NodeResourceFit (the seed's plugin, section 12.5.1): does the pod fit the node's free
cpu, memory, ephemeral storage, pod slots and extended resources; and a least-allocated score
weighted by cpuWeight/memoryWeight/storageWeight.

Fixed from the seed: pod requests count init containers, sidecars and overhead
(framework.resources); the node's used share is every assumed pod's full requests; the weights
are read-only (the seed overwrote its args when they summed to zero); every insufficient
resource is reported, not only the first; pod count and extended resources are checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pydantic

from kubext_scheduler.framework import cycle_state, interfaces, resources, status
from kubext_scheduler.framework.cycle_state import CycleState
from kubext_scheduler.framework.interfaces import Pod
from kubext_scheduler.framework.nodeinfo import NodeInfo
from kubext_scheduler.framework.status import Status

NAME = "NodeResourceFit"
_STATE_KEY = cycle_state.key("PreFilter", NAME)
_SCORE_KEY = cycle_state.key("PreScore", NAME)
_Weight = pydantic.StrictInt


class Args(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    cpuWeight: _Weight = pydantic.Field(1, ge=0, le=100)
    memoryWeight: _Weight = pydantic.Field(1, ge=0, le=100)
    storageWeight: _Weight = pydantic.Field(1, ge=0, le=100)

    def weights(self) -> tuple[int, int, int]:
        """cpu, memory, storage; all zero means equal weights (the seed's fallback)."""
        chosen = (self.cpuWeight, self.memoryWeight, self.storageWeight)
        return chosen if any(chosen) else (1, 1, 1)


@dataclasses.dataclass(frozen=True)
class InsufficientResource:
    resource: str
    requested: int
    used: int
    capacity: int

    @property
    def reason(self) -> str:
        free = self.capacity - self.used
        if self.resource == resources.PODS:
            return "Too many pods"
        if self.resource == resources.CPU:
            return f"Insufficient CPU: requested {self.requested}m, available {free}m"
        if self.resource == resources.EPHEMERAL_STORAGE:
            return f"Insufficient storage: requested {self.requested}, available {free}"
        return f"Insufficient {self.resource}: requested {self.requested}, available {free}"


@dataclasses.dataclass(frozen=True)
class _PreFilterState:
    request: resources.Resources

    def clone(self) -> _PreFilterState:
        return self  # never changed after PreFilter


@dataclasses.dataclass(frozen=True)
class _ScoreState:
    # The scorers count a container without cpu/memory requests as 100m/200Mi.
    request: resources.Resources

    def clone(self) -> _ScoreState:
        return self


def fits(request: resources.Resources, node: NodeInfo) -> list[InsufficientResource]:
    """Every resource the node lacks for ``request``, in kube-scheduler's order (fitsRequest)."""
    assert node.allocatable is not None
    alloc, used = node.allocatable.resources, node.requested
    out = []
    if len(node.pods) + 1 > node.allocatable.allowed_pods:
        out.append(
            InsufficientResource(resources.PODS, 1, len(node.pods), node.allocatable.allowed_pods)
        )
    if request.is_zero():
        return out
    # (name, wanted, capacity, used), read by attribute: Resources.get per name was most of
    # a Filter's time.
    checks = [
        (resources.CPU, request.milli_cpu, alloc.milli_cpu, used.milli_cpu),
        (resources.MEMORY, request.memory, alloc.memory, used.memory),
        (
            resources.EPHEMERAL_STORAGE,
            request.ephemeral_storage,
            alloc.ephemeral_storage,
            used.ephemeral_storage,
        ),
    ]
    if request.scalar:
        checks += [
            (name, amount, alloc.get(name), used.get(name))
            for name, amount in sorted(request.scalar.items())
            if amount > 0
        ]
    for name, wanted, capacity, in_use in checks:
        if wanted > 0 and wanted > capacity - in_use:
            out.append(InsufficientResource(name, wanted, in_use, capacity))
    return out


def least_requested_score(requested: int, capacity: int) -> int:
    """(capacity - requested) * 100 / capacity, 0 when over capacity (leastRequestedScore)."""
    if capacity == 0 or requested > capacity:
        return 0
    return (capacity - requested) * interfaces.MAX_NODE_SCORE // capacity


class NodeResourceFit:
    name = NAME

    def __init__(self, args: Args | None = None) -> None:
        self.args = args or Args()

    def _request(self, state: CycleState, pod: Pod) -> resources.Resources:
        saved = state.get(_STATE_KEY, _PreFilterState)
        if saved is None:  # Filter enabled without PreFilter: compute it here
            saved = _PreFilterState(resources.pod_requests(pod))
            state.write(_STATE_KEY, saved)
        return saved.request

    def pre_filter(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status | None:
        state.write(_STATE_KEY, _PreFilterState(resources.pod_requests(pod)))
        return None

    def filter(self, state: CycleState, pod: Pod, node: NodeInfo) -> Status | None:
        missing = fits(self._request(state, pod), node)
        return status.unschedulable(*(m.reason for m in missing)) if missing else None

    def score(self, state: CycleState, pod: Pod, node: NodeInfo) -> tuple[int, Status | None]:
        return self.score_nodes(state, pod, (node,))[0], None

    def score_nodes(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> list[int]:
        # Once per cycle, not per node (upstream's preScoreState).
        saved = state.get(_SCORE_KEY, _ScoreState)
        if saved is None:
            saved = _ScoreState(resources.pod_requests(pod, non_missing=True))
            state.write(_SCORE_KEY, saved)
        pod_request = saved.request
        cpu_weight, memory_weight, storage_weight = self.args.weights()
        out = []
        for node in nodes:
            assert node.allocatable is not None
            alloc, non_zero = node.allocatable.resources, node.non_zero_requested
            score_sum = weight_sum = 0
            for weight, capacity, requested in (
                (cpu_weight, alloc.milli_cpu, non_zero.milli_cpu + pod_request.milli_cpu),
                (memory_weight, alloc.memory, non_zero.memory + pod_request.memory),
                (
                    storage_weight,
                    alloc.ephemeral_storage,
                    node.requested.ephemeral_storage + pod_request.ephemeral_storage,
                ),
            ):
                if weight == 0 or capacity == 0:
                    continue  # a resource the node does not report is not scored
                score_sum += least_requested_score(requested, capacity) * weight
                weight_sum += weight
            out.append(score_sum // weight_sum if weight_sum else 0)
        return out


def new(args: Args | None) -> NodeResourceFit:
    return NodeResourceFit(args)


_: type[interfaces.FilterPlugin] = NodeResourceFit
