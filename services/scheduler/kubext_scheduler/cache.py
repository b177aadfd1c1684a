"""The scheduler's cluster cache: nodes, the pods bound to them, and the pods it has assumed.

Pure (no Kubernetes client): the informers (``cluster.py``) feed it watch events, and each
scheduling cycle takes a ``Snapshot`` from it. A pod is *assumed* on a node from the moment the
cycle picks the node until the watch shows it bound (or binding fails and it is forgotten), so
two cycles never count the same free room twice (kube-scheduler's assume cache).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from kubext_scheduler.framework import resources
from kubext_scheduler.framework.nodeinfo import NodeInfo, Snapshot, name_of, pod_key

Obj = Mapping[str, Any]
_TERMINATED = ("Succeeded", "Failed")


def node_name_of(pod: Obj) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


def holds_resources(pod: Obj) -> bool:
    """A bound pod that has not finished (a finished pod frees its node's room)."""
    return bool(node_name_of(pod)) and (pod.get("status") or {}).get("phase") not in _TERMINATED


class ClusterCache:
    """Thread-safe: informer threads write, the scheduling loop and the extender read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, Obj] = {}
        # Bound, unfinished pods by key (uid), and the assumed ones (pod with nodeName set).
        self._pods: dict[str, Obj] = {}
        self._assumed: dict[str, Obj] = {}

    # --- informer side ----------------------------------------------------------------------

    def set_node(self, node: Obj) -> Obj | None:
        """Returns the node as it was before (None for a new one)."""
        with self._lock:
            old = self._nodes.get(name_of(node))
            self._nodes[name_of(node)] = node
            return old

    def delete_node(self, name: str) -> None:
        with self._lock:
            self._nodes.pop(name, None)

    def replace_nodes(self, nodes: Sequence[Obj]) -> None:
        with self._lock:
            self._nodes = {name_of(n): n for n in nodes}

    def set_pod(self, pod: Obj) -> None:
        """A pod as the API server has it now; a bound one confirms its assumption."""
        key = pod_key(pod)
        with self._lock:
            if holds_resources(pod):
                self._pods[key] = pod
                self._assumed.pop(key, None)
            else:
                self._pods.pop(key, None)

    def delete_pod(self, pod: Obj) -> None:
        key = pod_key(pod)
        with self._lock:
            self._pods.pop(key, None)
            self._assumed.pop(key, None)

    def replace_pods(self, pods: Sequence[Obj]) -> None:
        with self._lock:
            self._pods = {pod_key(p): p for p in pods if holds_resources(p)}
            for key in set(self._assumed) & set(self._pods):
                del self._assumed[key]

    # --- scheduler side ---------------------------------------------------------------------

    def assume(self, pod: Obj, node_name: str) -> Obj:
        """Count ``pod`` on ``node_name`` until bound or forgotten; returns the assumed copy."""
        assumed = {**pod, "spec": {**(pod.get("spec") or {}), "nodeName": node_name}}
        with self._lock:
            self._assumed[pod_key(pod)] = assumed
        return assumed

    def forget(self, pod: Obj) -> None:
        with self._lock:
            self._assumed.pop(pod_key(pod), None)

    def is_assumed(self, pod: Obj) -> bool:
        with self._lock:
            return pod_key(pod) in self._assumed

    def node_count(self) -> int:
        with self._lock:
            return len(self._nodes)

    def _pods_now(self) -> list[Obj]:
        return [*self._pods.values(), *self._assumed.values()]

    def snapshot(self) -> tuple[Snapshot, dict[str, str]]:
        """The nodes with their bound and assumed pods, and why each unreadable node is left
        out (a node with an invalid allocatable must not stop every cycle)."""
        with self._lock:
            nodes = sorted(self._nodes.values(), key=name_of)
            pods = self._pods_now()
        by_node: dict[str, list[Obj]] = {}
        for pod in pods:
            by_node.setdefault(node_name_of(pod), []).append(pod)
        infos, broken = [], {}
        for node in nodes:
            try:
                infos.append(NodeInfo.of(node, by_node.get(name_of(node), ())))
            except resources.InvalidObject as exc:
                broken[name_of(node)] = f"node {name_of(node)} cannot be read: {exc}"
        return Snapshot(infos), broken

    def pods_on(self, names: Sequence[str]) -> list[Obj]:
        """The bound and assumed pods on the named nodes (the extender's PodSource)."""
        wanted = set(names)
        with self._lock:
            return [p for p in self._pods_now() if node_name_of(p) in wanted]
