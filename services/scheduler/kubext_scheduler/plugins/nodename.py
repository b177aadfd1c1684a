"""NodeName: a pod that names its node (``spec.nodeName``) fits only that node."""

from __future__ import annotations

from kubext_scheduler.framework import interfaces, status
from kubext_scheduler.framework.cycle_state import CycleState
from kubext_scheduler.framework.interfaces import Pod
from kubext_scheduler.framework.nodeinfo import NodeInfo
from kubext_scheduler.framework.status import Status

NAME = "NodeName"
REASON = "node(s) didn't match the requested node name"


class NodeName:
    name = NAME

    def filter(self, state: CycleState, pod: Pod, node: NodeInfo) -> Status | None:
        wanted = (pod.get("spec") or {}).get("nodeName")
        if wanted and wanted != node.name:
            return status.unresolvable(REASON)
        return None


def new(args: None) -> NodeName:
    return NodeName()


_filter: type[interfaces.FilterPlugin] = NodeName
