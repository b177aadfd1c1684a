"""DefaultPreemption (PostFilter): when a pod fits no node, find the node where deleting the
fewest, least important lower-priority pods makes it fit, respecting PodDisruptionBudgets as
far as possible (kube-scheduler's plugin and its preemption evaluator).

Pure: it returns the plan (``PostFilterResult``: the nominated node and the victims); the
standalone scheduler's I/O edge sets ``status.nominatedNodeName`` and deletes the victims, and
the pod is placed by a later cycle once they are gone. What-if checks re-run the profile's
PreFilter and Filter on a copy of the snapshot without the victims (the Handle), so the
spread and affinity plugins see the removal as upstream's PreFilterExtensions would.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from kubext_scheduler.framework import interfaces, labels, status
from kubext_scheduler.framework.cycle_state import CycleState
from kubext_scheduler.framework.interfaces import Pod, PostFilterResult
from kubext_scheduler.framework.nodeinfo import NodeInfo, Snapshot, name_of
from kubext_scheduler.framework.status import Code, Status

NAME = "DefaultPreemption"
NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NEVER = "not eligible due to preemptionPolicy=Never."
TERMINATING = "not eligible due to a terminating pod on the nominated node."
# The DisruptionTarget condition the scheduler puts on a victim before deleting it.
DISRUPTION_REASON = "PreemptionByScheduler"


class Args(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    minCandidateNodesPercentage: pydantic.StrictInt = pydantic.Field(10, ge=0, le=100)
    minCandidateNodesAbsolute: pydantic.StrictInt = pydantic.Field(100, ge=0)

    @pydantic.model_validator(mode="after")
    def _not_both_zero(self) -> Args:
        if self.minCandidateNodesPercentage == 0 and self.minCandidateNodesAbsolute == 0:
            raise ValueError(
                "minCandidateNodesPercentage and minCandidateNodesAbsolute cannot both be zero"
            )
        return self

    def candidates_to_find(self, nodes: int) -> int:
        """calculateNumCandidates: a percentage of the nodes, at least the absolute number."""
        wanted = max(
            nodes * self.minCandidateNodesPercentage // 100, self.minCandidateNodesAbsolute
        )
        return min(wanted, nodes)


def priority(pod: Pod) -> int:
    """corev1helpers.PodPriority: spec.priority (resolved from the PriorityClass by the API
    server's Priority admission), 0 when unset."""
    value = (pod.get("spec") or {}).get("priority")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def start_time(pod: Pod) -> float:
    """status.startTime in seconds; a pod not started yet counts as starting now (latest)."""
    raw = (pod.get("status") or {}).get("startTime")
    if isinstance(raw, str):
        try:
            return dt.datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return math.inf


def more_important(a: Pod, b: Pod) -> bool:
    pa, pb = priority(a), priority(b)
    return pa > pb if pa != pb else start_time(a) < start_time(b)


def _importance_key(pod: Pod) -> tuple[int, float]:
    return (-priority(pod), start_time(pod))


def terminating_by_preemption(pod: Pod) -> bool:
    if not (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(
        c.get("type") == "DisruptionTarget"
        and c.get("status") == "True"
        and c.get("reason") == DISRUPTION_REASON
        for c in (pod.get("status") or {}).get("conditions") or []
        if isinstance(c, Mapping)
    )


def split_by_pdb_violation(
    pods: Sequence[Pod], pdbs: Sequence[Mapping[str, Any]]
) -> tuple[list[Pod], list[Pod]]:
    """filterPodsWithPDBViolation: walking the pods in order, each matching PDB's
    disruptionsAllowed is spent; a pod that takes one below zero violates it."""
    allowed = [int((p.get("status") or {}).get("disruptionsAllowed") or 0) for p in pdbs]
    violating: list[Pod] = []
    fine: list[Pod] = []
    for pod in pods:
        pod_labels = labels.labels_of(pod)
        violated = False
        if pod_labels:
            for i, pdb in enumerate(pdbs):
                if labels.namespace_of(pdb) != labels.namespace_of(pod):
                    continue
                try:
                    selector = labels.selector((pdb.get("spec") or {}).get("selector"))
                except ValueError:
                    continue
                if selector.empty or not selector.matches(pod_labels):
                    continue
                if name_of(pod) in ((pdb.get("status") or {}).get("disruptedPods") or {}):
                    continue  # already counted as disrupted by the PDB controller
                allowed[i] -= 1
                if allowed[i] < 0:
                    violated = True
        (violating if violated else fine).append(pod)
    return violating, fine


@dataclasses.dataclass(frozen=True)
class Candidate:
    node: str
    # Most important first.
    victims: tuple[Pod, ...]
    pdb_violations: int


def pick_candidate(candidates: Sequence[Candidate]) -> Candidate:
    """pickOneNodeForPreemption: fewest PDB violations, then the lowest highest-priority
    victim, the smallest priority sum, the fewest victims, the latest start of the most
    important victims; then the first."""

    def earliest_top_start(c: Candidate) -> float:
        top = max(priority(v) for v in c.victims)
        return min(start_time(v) for v in c.victims if priority(v) == top)

    scores = (
        lambda c: -c.pdb_violations,
        lambda c: -priority(c.victims[0]),
        lambda c: -sum(priority(v) + 2**31 for v in c.victims),
        lambda c: -len(c.victims),
        earliest_top_start,
    )
    remaining = list(candidates)
    for score in scores:
        best = max(score(c) for c in remaining)
        remaining = [c for c in remaining if score(c) == best]
        if len(remaining) == 1:
            break
    return remaining[0]


class DefaultPreemption:
    name = NAME

    def __init__(self, args: Args | None = None) -> None:
        self.args = args or Args()
        self._handle: interfaces.Handle | None = None

    def set_handle(self, handle: interfaces.Handle) -> None:
        self._handle = handle

    def post_filter(
        self, state: CycleState, pod: Pod, statuses: Mapping[str, Status]
    ) -> tuple[PostFilterResult | None, Status | None]:
        snapshot = state.snapshot
        if snapshot is None or self._handle is None:
            return None, status.error("DefaultPreemption runs only inside a scheduling cycle")
        eligible, why = self.eligible(pod, snapshot, statuses)
        if not eligible:
            return None, status.unschedulable(why)
        candidates = self.find_candidates(pod, snapshot, statuses)
        if not candidates:
            return None, status.unschedulable(f"preemption: {NO_VICTIMS}")
        chosen = pick_candidate(candidates)
        return PostFilterResult(chosen.node, chosen.victims), status.SUCCESS

    def eligible(
        self, pod: Pod, snapshot: Snapshot, statuses: Mapping[str, Status]
    ) -> tuple[bool, str]:
        """PodEligibleToPreemptOthers."""
        if (pod.get("spec") or {}).get("preemptionPolicy") == "Never":
            return False, NEVER
        nominated = (pod.get("status") or {}).get("nominatedNodeName")
        if nominated:
            found = statuses.get(nominated)
            if found is not None and found.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                return True, ""
            info = snapshot.get(nominated)
            if info is not None and any(
                priority(p) < priority(pod) and terminating_by_preemption(p) for p in info.pods
            ):
                return False, TERMINATING  # wait for the victims of the last preemption
        return True, ""

    def find_candidates(
        self, pod: Pod, snapshot: Snapshot, statuses: Mapping[str, Status]
    ) -> list[Candidate]:
        # Only nodes rejected as Unschedulable may be helped; UnschedulableAndUnresolvable
        # (a taint, a selector) stays so whatever is deleted.
        helpable = [
            n
            for n in snapshot.nodes
            if (s := statuses.get(n.name)) and s.code is Code.UNSCHEDULABLE
        ]
        wanted = self.args.candidates_to_find(len(helpable))
        found: list[Candidate] = []
        for node in helpable:
            candidate = self.select_victims(pod, snapshot, node)
            if candidate is not None:
                found.append(candidate)
                if len(found) >= wanted:
                    break
        return found

    def _fits(self, pod: Pod, snapshot: Snapshot, node: NodeInfo) -> bool:
        assert self._handle is not None
        trial = snapshot.with_node(node)
        state = CycleState()
        state.snapshot = trial
        if not self._handle.run_pre_filter(state, pod, trial.nodes).is_success:
            return False
        # As upstream's SelectVictimsOnNode: room promised to a nominated pod of at least this
        # priority is not the preemptor's to take.
        return self._handle.run_filter_with_nominated_pods(state, pod, node).is_success

    def select_victims(self, pod: Pod, snapshot: Snapshot, node: NodeInfo) -> Candidate | None:
        """SelectVictimsOnNode: remove every lower-priority pod; if the pod fits then, add them
        back most important first (PDB-violating ones before the others) while it still fits;
        the ones that cannot come back are the victims."""
        trial = node.clone()
        lower = [p for p in trial.pods if priority(p) < priority(pod)]
        if not lower:
            return None
        for victim in lower:
            trial.remove_pod(victim)
        if not self._fits(pod, snapshot, trial):
            return None
        lower.sort(key=_importance_key)
        violating, fine = split_by_pdb_violation(lower, snapshot.pdbs)
        victims: list[Pod] = []
        violations = 0
        for group, counts in ((violating, True), (fine, False)):
            for candidate in group:
                trial.add_pod(candidate)
                if not self._fits(pod, snapshot, trial):
                    trial.remove_pod(candidate)
                    victims.append(candidate)
                    violations += counts
        if violating and fine:
            victims.sort(key=_importance_key)
        if not victims:
            return None  # it fits with everything back: nothing to preempt here
        return Candidate(node.name, tuple(victims), violations)


def new(args: Args | None) -> DefaultPreemption:
    return DefaultPreemption(args)


_post_filter: type[interfaces.PostFilterPlugin] = DefaultPreemption
