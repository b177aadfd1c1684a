"""NodePorts: a pod's host ports must be free on the node (same protocol and port, and an
overlapping host IP: 0.0.0.0 overlaps every address)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from kubext_scheduler.framework import cycle_state, interfaces, nodeinfo, status
from kubext_scheduler.framework.cycle_state import CycleState
from kubext_scheduler.framework.interfaces import Pod
from kubext_scheduler.framework.nodeinfo import HostPort, NodeInfo
from kubext_scheduler.framework.status import Status

NAME = "NodePorts"
REASON = "node(s) didn't have free ports for the requested pod ports"
_STATE_KEY = cycle_state.key("PreFilter", NAME)
_ANY = "0.0.0.0"


@dataclasses.dataclass(frozen=True)
class _PreFilterState:
    ports: tuple[HostPort, ...]

    def clone(self) -> _PreFilterState:
        return self


def conflicts(wanted: HostPort, used: HostPort) -> bool:
    if (wanted.protocol, wanted.port) != (used.protocol, used.port):
        return False
    return _ANY in (wanted.ip, used.ip) or wanted.ip == used.ip


class NodePorts:
    name = NAME

    def pre_filter(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status | None:
        ports = tuple(nodeinfo.host_ports(pod))
        if not ports:
            return status.SKIP
        state.write(_STATE_KEY, _PreFilterState(ports))
        return None

    def filter(self, state: CycleState, pod: Pod, node: NodeInfo) -> Status | None:
        saved = state.get(_STATE_KEY, _PreFilterState)
        ports = saved.ports if saved else tuple(nodeinfo.host_ports(pod))
        for wanted in ports:
            if any(conflicts(wanted, used) for used in node.used_ports):
                return status.unschedulable(REASON)
        return None


def new(args: None) -> NodePorts:
    return NodePorts()


_filter: type[interfaces.FilterPlugin] = NodePorts
