"""NodeUnschedulable: a cordoned node (``spec.unschedulable``) takes only pods that tolerate
the ``node.kubernetes.io/unschedulable:NoSchedule`` taint."""

from __future__ import annotations

from kubext_scheduler.framework import interfaces, status
from kubext_scheduler.framework.cycle_state import CycleState
from kubext_scheduler.framework.interfaces import Pod
from kubext_scheduler.framework.nodeinfo import NodeInfo
from kubext_scheduler.framework.status import Status
from kubext_scheduler.plugins import tainttoleration

NAME = "NodeUnschedulable"
REASON = "node(s) were unschedulable"
_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


class NodeUnschedulable:
    name = NAME

    def filter(self, state: CycleState, pod: Pod, node: NodeInfo) -> Status | None:
        if not (node.node.get("spec") or {}).get("unschedulable"):
            return None
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        if any(tainttoleration.tolerates(t, _TAINT) for t in tolerations):
            return None
        return status.unresolvable(REASON)


def new(args: None) -> NodeUnschedulable:
    return NodeUnschedulable()


_filter: type[interfaces.FilterPlugin] = NodeUnschedulable
