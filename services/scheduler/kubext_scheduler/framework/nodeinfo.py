"""The node snapshot of one scheduling cycle: each node with the pods assumed or bound on it.

A NodeInfo is what every Filter and Score sees: the node object, its pods, and the sums the
resource plugins need (requested, and non-zero requested for the scorers), computed once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kubext_scheduler.framework import resources
from kubext_scheduler.framework.volumes import VolumeState

Obj = Mapping[str, Any]
_TERMINATED = ("Succeeded", "Failed")


def name_of(obj: Obj) -> str:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("name") or "") if isinstance(metadata, Mapping) else ""


def pod_key(pod: Obj) -> str:
    metadata = pod.get("metadata") or {}
    if isinstance(metadata, Mapping) and metadata.get("uid"):
        return str(metadata["uid"])
    return (
        f"{metadata.get('namespace', '') if isinstance(metadata, Mapping) else ''}/{name_of(pod)}"
    )


@dataclasses.dataclass(frozen=True)
class HostPort:
    ip: str
    protocol: str
    port: int


def host_ports(pod: Obj) -> list[HostPort]:
    """The host ports a pod's containers claim (kube-scheduler reads spec.containers only)."""
    spec = pod.get("spec") or {}
    out = []
    for container in spec.get("containers") or []:
        for port in (container.get("ports") or []) if isinstance(container, Mapping) else []:
            if not isinstance(port, Mapping) or not port.get("hostPort"):
                continue
            host_port = port["hostPort"]
            if not isinstance(host_port, int) or isinstance(host_port, bool):
                raise resources.InvalidObject(f"hostPort {host_port!r} is not a port number")
            out.append(
                HostPort(
                    ip=str(port.get("hostIP") or "0.0.0.0"),
                    protocol=str(port.get("protocol") or "TCP"),
                    port=host_port,
                )
            )
    return out


@dataclasses.dataclass
class NodeInfo:
    node: Obj
    pods: list[Obj] = dataclasses.field(default_factory=list)
    requested: resources.Resources = dataclasses.field(default_factory=resources.Resources)
    # Requests with the scorers' defaults for containers that name none (100m, 200Mi).
    non_zero_requested: resources.Resources = dataclasses.field(default_factory=resources.Resources)
    used_ports: list[HostPort] = dataclasses.field(default_factory=list)
    allocatable: resources.Allocatable | None = None
    # The pods with podAffinity or podAntiAffinity (upstream's PodsWithAffinity): what
    # InterPodAffinity reads of existing pods when the incoming one has no terms of its own.
    pods_with_affinity: list[Obj] = dataclasses.field(default_factory=list)
    # The node's name, read once: every Filter and Score asks for it (a property's
    # name_of per call was a sixth of a cycle at 1,000 nodes).
    name: str = dataclasses.field(init=False, repr=False, compare=False)
    # Counts the changes made in place (add_pod, remove_pod): what framework.memo keeps of a
    # node is worked out on one NodeInfo at one generation.
    generation: int = dataclasses.field(default=0, init=False, repr=False, compare=False)
    # Shared by the NodeInfos of one node that the node-local plugins cannot tell apart (a
    # pod's status changed: the same node, sums, ports and pod count), so what framework.memo
    # kept of one holds for the next; any other new NodeInfo (a clone included) starts its own.
    lineage: object = dataclasses.field(
        default_factory=object, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.name = name_of(self.node)

    @classmethod
    def of(cls, node: Obj, pods: Iterable[Obj] = ()) -> NodeInfo:
        """Raises resources.InvalidObject for an unreadable allocatable or pod."""
        info = cls(node=node, allocatable=resources.node_allocatable(node))
        for pod in pods:
            info.add_pod(pod)
        return info

    def add_pod(self, pod: Obj) -> None:
        self.generation += 1
        self.requested.add(resources.pod_requests(pod))
        self.non_zero_requested.add(resources.pod_requests(pod, non_missing=True))
        self.used_ports.extend(host_ports(pod))
        self.pods.append(pod)
        if has_pod_affinity(pod):
            self.pods_with_affinity.append(pod)

    def remove_pod(self, pod: Obj) -> bool:
        key = pod_key(pod)
        for i, existing in enumerate(self.pods):
            if pod_key(existing) == key:
                self.generation += 1
                del self.pods[i]
                self.requested.subtract(resources.pod_requests(existing))
                self.non_zero_requested.subtract(resources.pod_requests(existing, non_missing=True))
                for port in host_ports(existing):
                    self.used_ports.remove(port)
                self.pods_with_affinity = [p for p in self.pods_with_affinity if pod_key(p) != key]
                return True
        return False

    def with_pod_updated(self, old: Obj, new: Obj) -> NodeInfo:
        """A copy with ``old`` (on this node) replaced by ``new``, a later version of the same
        pod, last as a rebuild would have it. The same spec (a status update, the watch
        confirming an assumption) keeps the sums: nothing is re-read."""
        info = self.clone()
        if old.get("spec") != new.get("spec"):
            info.remove_pod(old)
            info.add_pod(new)
            return info
        key = pod_key(old)
        kept = [p for p in info.pods if pod_key(p) != key]
        if len(kept) == len(info.pods):  # not on this node after all: count it afresh
            info.add_pod(new)
            return info
        info.pods = kept
        info.pods.append(new)
        if has_pod_affinity(new):
            info.pods_with_affinity = [p for p in info.pods_with_affinity if pod_key(p) != key]
            info.pods_with_affinity.append(new)
        # The same spec: nothing a node-local plugin reads changed (each pod's bound and
        # Running events would otherwise send its node's kept verdicts and scores away twice).
        info.lineage, info.generation = self.lineage, self.generation
        return info

    def clone(self) -> NodeInfo:
        return NodeInfo(
            node=self.node,
            pods=list(self.pods),
            requested=self.requested.copy(),
            non_zero_requested=self.non_zero_requested.copy(),
            used_ports=list(self.used_ports),
            allocatable=self.allocatable,
            pods_with_affinity=list(self.pods_with_affinity),
        )


def has_pod_affinity(pod: Obj) -> bool:
    """Whether the pod has any podAffinity or podAntiAffinity (required or preferred)."""
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    return bool(affinity.get("podAffinity") or affinity.get("podAntiAffinity"))


def namespace_label_map(namespaces: Iterable[Obj]) -> dict[str, Mapping[str, str]]:
    out: dict[str, Mapping[str, str]] = {}
    for ns in namespaces:
        labels = (ns.get("metadata") or {}).get("labels") or {}
        out[name_of(ns)] = labels if isinstance(labels, Mapping) else {}
    return out


@dataclasses.dataclass
class Snapshot:
    """The nodes of one cycle, in a stable order, looked up by name; and what plugins read
    beside them: the namespaces' labels (namespaceSelector) and the PodDisruptionBudgets
    (preemption)."""

    nodes: list[NodeInfo]
    namespace_labels: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    pdbs: Sequence[Obj] = ()
    # Pending pods with status.nominatedNodeName (preemptors waiting for their victims to go),
    # by that node's name: filters count those of at least the pod's priority.
    nominated: Mapping[str, Sequence[Obj]] = dataclasses.field(default_factory=dict)
    # The PVCs, PVs and StorageClasses with the scheduler's assumptions (VolumeBinding).
    volumes: VolumeState = dataclasses.field(default_factory=VolumeState)
    # The nodes by name, where the caller has them built (the cache's, shared: never changed).
    by_name: Mapping[str, NodeInfo] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )
    # The nodes with pods with (anti-)affinity, where the caller keeps them listed (the
    # cache's, shared: never changed); else listed from ``nodes`` when first asked for.
    pod_affinity_nodes: Sequence[NodeInfo] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self._by_name = (
            self.by_name if self.by_name is not None else {info.name: info for info in self.nodes}
        )
        self._with_pod_affinity = self.pod_affinity_nodes

    def labels_of_namespace(self, namespace: str) -> Mapping[str, str]:
        """A namespace's labels; one not (yet) seen still has the label the API server puts on
        every namespace, so name-based namespaceSelectors work without the namespace cache."""
        found = self.namespace_labels.get(namespace)
        if found is not None:
            return found
        return {"kubernetes.io/metadata.name": namespace}

    def with_node(self, info: NodeInfo) -> Snapshot:
        """The same cycle with one node replaced (preemption's what-if without some pods)."""
        nodes = [info if n.name == info.name else n for n in self.nodes]
        return Snapshot(nodes, self.namespace_labels, self.pdbs, self.nominated, self.volumes)

    @classmethod
    def of(
        cls,
        nodes: Sequence[Obj],
        pods: Iterable[Obj] = (),
        *,
        namespaces: Iterable[Obj] = (),
        pdbs: Sequence[Obj] = (),
        volumes: VolumeState | None = None,
    ) -> Snapshot:
        """Nodes with the pods bound (``spec.nodeName``) or assumed on them."""
        infos = [NodeInfo.of(node) for node in nodes]
        by_name = {info.name: info for info in infos}
        for pod in pods:
            if (pod.get("status") or {}).get("phase") in _TERMINATED:
                continue  # a finished pod holds no resources
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name in by_name:
                by_name[node_name].add_pod(pod)
        return cls(
            infos, namespace_label_map(namespaces), list(pdbs), volumes=volumes or VolumeState()
        )

    def get(self, name: str) -> NodeInfo | None:
        return self._by_name.get(name)

    def with_pod_affinity(self) -> Sequence[NodeInfo]:
        """The nodes with pods with (anti-)affinity, listed once per snapshot."""
        if self._with_pod_affinity is None:
            self._with_pod_affinity = [n for n in self.nodes if n.pods_with_affinity]
        return self._with_pod_affinity

    def __len__(self) -> int:
        return len(self.nodes)
