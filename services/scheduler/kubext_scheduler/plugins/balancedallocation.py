"""NodeResourcesBalancedAllocation: prefer nodes whose cpu and memory would be used in equal
shares after placing the pod: ``(1 - standard deviation of the fractions) * 100``.

Uses the actual requests (not the 100m/200Mi defaults), as upstream, and skips pods that
request neither cpu nor memory."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from kubext_scheduler.framework import cycle_state, interfaces, resources, status
from kubext_scheduler.framework.cycle_state import CycleState
from kubext_scheduler.framework.interfaces import Pod
from kubext_scheduler.framework.nodeinfo import NodeInfo
from kubext_scheduler.framework.status import Status

NAME = "NodeResourcesBalancedAllocation"
_STATE_KEY = cycle_state.key("PreScore", NAME)


@dataclasses.dataclass(frozen=True)
class _PreScoreState:
    request: resources.Resources

    def clone(self) -> _PreScoreState:
        return self  # never changed after PreScore


def balanced_score(requested: Sequence[int], allocatable: Sequence[int]) -> int:
    fractions = [min(r / a, 1.0) for r, a in zip(requested, allocatable, strict=False) if a]
    std = 0.0
    if len(fractions) == 2:
        std = abs(fractions[0] - fractions[1]) / 2
    elif len(fractions) > 2:
        mean = sum(fractions) / len(fractions)
        std = math.sqrt(sum((f - mean) ** 2 for f in fractions) / len(fractions))
    return int((1 - std) * interfaces.MAX_NODE_SCORE)


class BalancedAllocation:
    name = NAME

    def pre_score(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status | None:
        request = resources.pod_requests(pod)
        state.write(_STATE_KEY, _PreScoreState(request))
        return status.SKIP if not (request.milli_cpu or request.memory) else None

    def score(self, state: CycleState, pod: Pod, node: NodeInfo) -> tuple[int, Status | None]:
        return self.score_nodes(state, pod, (node,))[0], None

    def score_nodes(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> list[int]:
        saved = state.get(_STATE_KEY, _PreScoreState)
        if saved is None:  # Score enabled without PreScore: compute it once here
            saved = _PreScoreState(resources.pod_requests(pod))
            state.write(_STATE_KEY, saved)
        cpu, memory = saved.request.milli_cpu, saved.request.memory
        out = []
        for node in nodes:
            assert node.allocatable is not None
            used, alloc = node.requested, node.allocatable.resources
            out.append(
                balanced_score(
                    (used.milli_cpu + cpu, used.memory + memory), (alloc.milli_cpu, alloc.memory)
                )
            )
        return out


def new(args: None) -> BalancedAllocation:
    return BalancedAllocation()


_score: type[interfaces.ScorePlugin] = BalancedAllocation
