"""Per-cycle state: what a plugin computed at PreFilter/PreScore for its own Filter/Score.

Keys are namespaced by plugin (``PreFilterNodeResourceFit``); values are StateData with a
``clone`` so that a copy of the cycle (preemption's what-if runs) cannot leak into the original.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kubext_scheduler.framework.nodeinfo import NodeInfo, Snapshot


class StateData(Protocol):
    def clone(self) -> StateData: ...


D = TypeVar("D")


class StateError(LookupError):
    """A key that is missing, or holds data of another type."""


def key(point: str, plugin: str) -> str:
    """The namespaced key a plugin writes at an extension point: ``key("PreFilter", NAME)``."""
    return f"{point}{plugin}"


class CycleState:
    def __init__(self) -> None:
        self._data: dict[str, StateData] = {}
        # Plugins whose PreFilter/PreScore returned Skip: their Filter/Score is not run.
        self.skip_filter: set[str] = set()
        self.skip_score: set[str] = set()
        # The cycle's whole snapshot (all nodes, namespaces, PDBs), set by Framework.schedule:
        # PreScore and PostFilter see only some nodes but count pods on all (upstream's
        # SnapshotSharedLister). None when a caller runs single points (the extender).
        self.snapshot: Snapshot | None = None
        # Without a snapshot: the cluster's node count where the caller knows it (the
        # extender's cache), which the memo is pruned by.
        self.node_count: int | None = None
        # Without a snapshot: the nodes with pods with (anti-)affinity among those PreFilter
        # is given, where the caller keeps them listed (the extender's cache), else None.
        self.pod_affinity_nodes: Sequence[NodeInfo] | None = None

    def write(self, name: str, value: StateData) -> None:
        self._data[name] = value

    def read(self, name: str, kind: type[D]) -> D:
        try:
            value = self._data[name]
        except KeyError:
            raise StateError(f"{name!r} not found in the cycle state") from None
        if not isinstance(value, kind):
            raise StateError(f"{name!r} holds {type(value).__name__}, not {kind.__name__}")
        return value

    def get(self, name: str, kind: type[D]) -> D | None:
        try:
            return self.read(name, kind)
        except StateError:
            return None

    def delete(self, name: str) -> None:
        self._data.pop(name, None)

    def clone(self) -> CycleState:
        copy = CycleState()
        copy._data = {k: v.clone() for k, v in self._data.items()}
        copy.skip_filter = set(self.skip_filter)
        copy.skip_score = set(self.skip_score)
        copy.snapshot = self.snapshot
        copy.pod_affinity_nodes = self.pod_affinity_nodes
        return copy
