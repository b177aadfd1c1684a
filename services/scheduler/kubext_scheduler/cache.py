"""The scheduler's cluster cache: nodes, the pods bound to them, the pods it has assumed, and
what plugins read beside them (namespaces' labels, PodDisruptionBudgets, and the PVCs, PVs and
StorageClasses with VolumeBinding's assumed PV/PVC updates).

Pure (no Kubernetes client): the informers (``cluster.py``) feed it watch events, and each
scheduling cycle takes a ``Snapshot`` from it. A pod is *assumed* on a node from the moment the
cycle picks the node until the watch shows it bound (or binding fails and it is forgotten), so
two cycles never count the same free room twice (kube-scheduler's assume cache).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubext_scheduler.framework import resources
from kubext_scheduler.framework.nodeinfo import (
    NodeInfo,
    Snapshot,
    name_of,
    namespace_label_map,
    pod_key,
)
from kubext_scheduler.framework.volumes import VolumeState, key_of_claim, resource_version

Obj = Mapping[str, Any]
_TERMINATED = ("Succeeded", "Failed")


def node_name_of(pod: Obj) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


def nominated_node_of(pod: Obj) -> str:
    """The node a pending pod is nominated to ("" when none, bound, or being deleted)."""
    if node_name_of(pod) or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return ""
    return str((pod.get("status") or {}).get("nominatedNodeName") or "")


def holds_resources(pod: Obj) -> bool:
    """A bound pod that has not finished (a finished pod frees its node's room)."""
    return bool(node_name_of(pod)) and (pod.get("status") or {}).get("phase") not in _TERMINATED


def _with(info: NodeInfo, pod: Obj) -> NodeInfo:
    added = info.clone()
    added.add_pod(pod)
    return added


def _without(info: NodeInfo, pod: Obj | None) -> NodeInfo | None:
    """``info`` less ``pod``; None (rebuild) when it is not there to remove."""
    removed = info.clone()
    return removed if pod is not None and removed.remove_pod(pod) else None


def _namespaced_key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


# Node changes kept for changes_between (a reader this far behind starts over).
CHANGES_KEPT = 65536


@dataclasses.dataclass(frozen=True)
class CacheView:
    """ClusterCache.view: the readable NodeInfos in name order and by name, those with pods
    with (anti-)affinity, why each unreadable node is left out, and the mark of the cache's
    change log they are as of (all shared: read them, never change them)."""

    nodes: list[NodeInfo]
    by_name: Mapping[str, NodeInfo]
    with_pod_affinity: list[NodeInfo]
    broken: Mapping[str, str]
    mark: int


class ClusterCache:
    """Thread-safe: informer threads write, the scheduling loop and the extender read.

    Each node's NodeInfo is kept built and rebuilt only when the node or one of its pods
    changes (at the next read), so a cycle over 1,000 nodes does not re-sum 5,000 pods. A
    NodeInfo, once built, is never mutated (a change builds a new one), so readers may hold it
    outside the lock. ``snapshot`` hands them out shared too (copying 1,000 per cycle was a
    third of a cycle): a cycle reads them, and a what-if (preemption, nominated pods) clones
    the one it changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, Obj] = {}
        # Bound, unfinished pods by key (uid), and the assumed ones (pod with nodeName set).
        self._pods: dict[str, Obj] = {}
        self._assumed: dict[str, Obj] = {}
        # The pod each key counts as (bound wins over assumed) on each node, by node name.
        self._by_node: dict[str, dict[str, Obj]] = {}
        self._placed: dict[str, str] = {}  # pod key -> node name it is counted on
        self._infos: dict[str, NodeInfo] = {}
        self._broken: dict[str, str] = {}
        self._dirty: set[str] = set()
        self._sorted: list[str] | None = None
        # The readable NodeInfos in name order and by name, as the last snapshot had them
        # (handed out shared, so replaced, never changed), each node's place in that list, and
        # the nodes whose NodeInfo changed since: a cycle after one assumption copies the two
        # and puts one NodeInfo in (a rebuild of 1,000 entries was a tenth of a cycle).
        self._view: list[NodeInfo] | None = None
        self._view_by_name: dict[str, NodeInfo] = {}
        self._view_index: dict[str, int] = {}
        self._view_changed: set[str] = set()
        # The view's nodes with pods with (anti-)affinity (InterPodAffinity's PreFilter reads
        # them each cycle: listing them from 1,000 nodes was 4% of the process), listed again
        # only when a node that has or had such a pod changed.
        self._view_affinity: list[NodeInfo] | None = None
        # The nodes whose NodeInfo changed for the node-local plugins (a status-only update
        # keeps NodeInfo.lineage: not one), in order: a reader keeps what it worked out per
        # node as of a mark and drops the nodes named since (changes_between). Trimmed from
        # the front; ``_changes_start`` is the mark of its first entry.
        self._changes: list[str] = []
        self._changes_start = 0
        # Namespace name -> labels (InterPodAffinity's namespaceSelector), and the
        # PodDisruptionBudgets by namespace/name (DefaultPreemption). Each change replaces the
        # whole mapping/tuple, so a snapshot shares them without copying.
        self._namespace_labels: Mapping[str, Mapping[str, str]] = {}
        self._pdbs: dict[str, Obj] = {}
        self._pdb_list: tuple[Obj, ...] = ()
        # Pending pods nominated to a node (preemptors), by key: kube-scheduler's nominator.
        self._nominated: dict[str, Obj] = {}
        # PVCs (namespace/name) and PVs (name) as the informers last saw them, and the copies
        # VolumeBinding's Reserve assumed (upstream's assume caches: an informer copy at least
        # as new as the assumed one replaces it); StorageClasses by name. The merged view is
        # built once per change; PreBind waits on the condition for PV/PVC events.
        self._claims: dict[str, Obj] = {}
        self._claims_assumed: dict[str, Obj] = {}
        self._volumes: dict[str, Obj] = {}
        self._volumes_assumed: dict[str, Obj] = {}
        self._classes: dict[str, Obj] = {}
        self._volume_view: VolumeState | None = None
        self._volume_changed = threading.Condition(self._lock)

    # --- bookkeeping (lock held) ------------------------------------------------------------

    def _place(self, key: str) -> None:
        """Count ``key`` on the node its bound (else assumed) copy names, or nowhere; the
        NodeInfos it leaves and joins are updated by that one pod, not rebuilt."""
        pod = self._pods.get(key) or self._assumed.get(key)
        old = self._placed.pop(key, None)
        old_pod = self._by_node.get(old, {}).pop(key, None) if old is not None else None
        name = node_name_of(pod) if pod is not None else None
        if pod is not None and name is not None:
            self._by_node.setdefault(name, {})[key] = pod
            self._placed[key] = name
        if old is not None and old == name and old_pod is not None and pod is not None:
            self._update_info(old, lambda info: info.with_pod_updated(old_pod, pod))
            return
        if old is not None:
            self._update_info(old, lambda info: _without(info, old_pod))
        if pod is not None and name is not None:
            self._update_info(name, lambda info: _with(info, pod))

    def _update_info(self, name: str, change: Callable[[NodeInfo], NodeInfo | None]) -> None:
        """Replace the node's built NodeInfo by ``change`` of it; where there is none to
        change (not built yet, unreadable) or the change cannot be made, rebuild it."""
        info = self._infos.get(name)
        if info is None or name in self._dirty:
            self._dirty.add(name)
            return
        try:
            changed = change(info)
        except resources.InvalidObject:
            changed = None
        if changed is None:
            self._dirty.add(name)
        else:
            self._infos[name] = changed
            self._view_changed.add(name)
            if changed.lineage is not info.lineage or changed.generation != info.generation:
                self._changed(name)

    def _changed(self, name: str) -> None:
        self._changes.append(name)
        if len(self._changes) > CHANGES_KEPT:
            drop = len(self._changes) // 2
            del self._changes[:drop]
            self._changes_start += drop

    def _refresh(self) -> None:
        for name in self._dirty:
            self._changed(name)
            node = self._nodes.get(name)
            readable = self._infos.pop(name, None) is not None
            self._broken.pop(name, None)
            if node is not None:
                try:
                    self._infos[name] = NodeInfo.of(node, self._by_node.get(name, {}).values())
                except resources.InvalidObject as exc:
                    self._broken[name] = f"node {name} cannot be read: {exc}"
            if readable and name in self._infos:
                self._view_changed.add(name)
            else:  # a node in or out of the readable list: build the list again
                self._view = None
        self._dirty.clear()
        if self._sorted is None:
            self._sorted = sorted(self._nodes)

    def _nodes_changed(self) -> None:
        self._sorted = None
        self._view = None

    def _readable(self) -> tuple[list[NodeInfo], dict[str, NodeInfo]]:
        """The readable NodeInfos in name order and by name (after _refresh; shared: never
        changed once returned)."""
        if self._view is None:
            assert self._sorted is not None
            self._view = [self._infos[n] for n in self._sorted if n in self._infos]
            self._view_by_name = {info.name: info for info in self._view}
            self._view_index = {info.name: i for i, info in enumerate(self._view)}
            self._view_affinity = None
        elif self._view_changed:
            view, by_name, index = list(self._view), dict(self._view_by_name), self._view_index
            for name in self._view_changed:
                info = self._infos[name]
                if info.pods_with_affinity or by_name[name].pods_with_affinity:
                    self._view_affinity = None
                view[index[name]] = by_name[name] = info
            self._view, self._view_by_name = view, by_name
        self._view_changed.clear()
        return self._view, self._view_by_name

    def _affinity_nodes(self) -> list[NodeInfo]:
        """The view's nodes with pods with (anti-)affinity (after _readable; shared)."""
        if self._view_affinity is None:
            assert self._view is not None
            self._view_affinity = [info for info in self._view if info.pods_with_affinity]
        return self._view_affinity

    # --- informer side ----------------------------------------------------------------------

    def set_node(self, node: Obj) -> Obj | None:
        """Returns the node as it was before (None for a new one)."""
        name = name_of(node)
        with self._lock:
            old = self._nodes.get(name)
            self._nodes[name] = node
            self._dirty.add(name)
            if old is None:
                self._nodes_changed()
            return old

    def delete_node(self, name: str) -> None:
        with self._lock:
            self._nodes.pop(name, None)
            self._dirty.add(name)
            self._nodes_changed()

    def replace_nodes(self, nodes: Sequence[Obj]) -> None:
        with self._lock:
            self._dirty |= set(self._nodes)
            self._nodes = {name_of(n): n for n in nodes}
            self._dirty |= set(self._nodes)
            self._nodes_changed()

    def set_pod(self, pod: Obj) -> None:
        """A pod as the API server has it now; a bound one confirms its assumption."""
        key = pod_key(pod)
        with self._lock:
            self._nominated.pop(key, None)
            if holds_resources(pod):
                self._pods[key] = pod
                self._assumed.pop(key, None)
            else:
                self._pods.pop(key, None)
            self._place(key)

    def delete_pod(self, pod: Obj) -> None:
        key = pod_key(pod)
        with self._lock:
            self._nominated.pop(key, None)
            self._pods.pop(key, None)
            self._assumed.pop(key, None)
            self._place(key)

    def replace_pods(self, pods: Sequence[Obj], *, nominated: Sequence[Obj] = ()) -> None:
        """Every pod listed; ``nominated``: the pending ones to count as nominated."""
        with self._lock:
            self._nominated = {pod_key(p): p for p in nominated if nominated_node_of(p)}
            self._pods = {pod_key(p): p for p in pods if holds_resources(p)}
            for key in set(self._assumed) & set(self._pods):
                del self._assumed[key]
            for key in set(self._placed) | set(self._pods) | set(self._assumed):
                self._place(key)

    def set_nominated(self, pod: Obj) -> None:
        """A pending pod as it is now: counted on its status.nominatedNodeName while it has one
        (and is neither bound nor being deleted)."""
        key = pod_key(pod)
        with self._lock:
            if nominated_node_of(pod):
                self._nominated[key] = pod
            else:
                self._nominated.pop(key, None)

    def clear_nominated(self, pod: Obj) -> None:
        with self._lock:
            self._nominated.pop(pod_key(pod), None)

    def set_namespace(self, namespace: Obj) -> None:
        with self._lock:
            self._namespace_labels = {
                **self._namespace_labels,
                **namespace_label_map([namespace]),
            }

    def delete_namespace(self, name: str) -> None:
        with self._lock:
            self._namespace_labels = {
                n: ls for n, ls in self._namespace_labels.items() if n != name
            }

    def replace_namespaces(self, namespaces: Sequence[Obj]) -> None:
        with self._lock:
            self._namespace_labels = namespace_label_map(namespaces)

    def set_pdb(self, pdb: Obj) -> None:
        with self._lock:
            self._pdbs[_namespaced_key(pdb)] = pdb
            self._pdb_list = tuple(self._pdbs.values())

    def delete_pdb(self, pdb: Obj) -> None:
        with self._lock:
            self._pdbs.pop(_namespaced_key(pdb), None)
            self._pdb_list = tuple(self._pdbs.values())

    def replace_pdbs(self, pdbs: Sequence[Obj]) -> None:
        with self._lock:
            self._pdbs = {_namespaced_key(p): p for p in pdbs}
            self._pdb_list = tuple(self._pdbs.values())

    # --- volumes (informer side) -------------------------------------------------------------

    def _volumes_changed(self, *, event: bool = True) -> None:
        self._volume_view = None
        if event:
            self._volume_changed.notify_all()

    @staticmethod
    def _drop_stale(assumed: dict[str, Obj], key: str, seen: Obj) -> None:
        held = assumed.get(key)
        if held is not None and resource_version(seen) >= resource_version(held):
            del assumed[key]

    def set_claim(self, claim: Obj) -> None:
        key = key_of_claim(claim)
        with self._lock:
            self._claims[key] = claim
            self._drop_stale(self._claims_assumed, key, claim)
            self._volumes_changed()

    def delete_claim(self, claim: Obj) -> None:
        key = key_of_claim(claim)
        with self._lock:
            self._claims.pop(key, None)
            self._claims_assumed.pop(key, None)
            self._volumes_changed()

    def replace_claims(self, claims: Sequence[Obj]) -> None:
        with self._lock:
            self._claims = {key_of_claim(c): c for c in claims}
            for key in list(self._claims_assumed):
                if key not in self._claims:
                    del self._claims_assumed[key]
                else:
                    self._drop_stale(self._claims_assumed, key, self._claims[key])
            self._volumes_changed()

    def set_volume(self, volume: Obj) -> None:
        name = name_of(volume)
        with self._lock:
            self._volumes[name] = volume
            self._drop_stale(self._volumes_assumed, name, volume)
            self._volumes_changed()

    def delete_volume(self, volume: Obj) -> None:
        name = name_of(volume)
        with self._lock:
            self._volumes.pop(name, None)
            self._volumes_assumed.pop(name, None)
            self._volumes_changed()

    def replace_volumes(self, volumes: Sequence[Obj]) -> None:
        with self._lock:
            self._volumes = {name_of(v): v for v in volumes}
            for name in list(self._volumes_assumed):
                if name not in self._volumes:
                    del self._volumes_assumed[name]
                else:
                    self._drop_stale(self._volumes_assumed, name, self._volumes[name])
            self._volumes_changed()

    def set_storage_class(self, storage_class: Obj) -> None:
        with self._lock:
            self._classes[name_of(storage_class)] = storage_class
            self._volumes_changed(event=False)

    def delete_storage_class(self, storage_class: Obj) -> None:
        with self._lock:
            self._classes.pop(name_of(storage_class), None)
            self._volumes_changed(event=False)

    def replace_storage_classes(self, classes: Sequence[Obj]) -> None:
        with self._lock:
            self._classes = {name_of(c): c for c in classes}
            self._volumes_changed(event=False)

    # --- volumes (VolumeBinding's port, framework.volumes.VolumeCache) ----------------------

    def assume_volume(self, volume: Obj) -> None:
        with self._lock:
            self._volumes_assumed[name_of(volume)] = volume
            self._volumes_changed(event=False)

    def restore_volume(self, name: str) -> None:
        with self._lock:
            self._volumes_assumed.pop(name, None)
            self._volumes_changed(event=False)

    def assume_claim(self, claim: Obj) -> None:
        with self._lock:
            self._claims_assumed[key_of_claim(claim)] = claim
            self._volumes_changed(event=False)

    def restore_claim(self, key: str) -> None:
        with self._lock:
            self._claims_assumed.pop(key, None)
            self._volumes_changed(event=False)

    def api_volume(self, name: str) -> Obj | None:
        with self._lock:
            return self._volumes.get(name)

    def api_claim(self, key: str) -> Obj | None:
        with self._lock:
            return self._claims.get(key)

    def api_node(self, name: str) -> Obj | None:
        with self._lock:
            return self._nodes.get(name)

    def wait_volume_event(self, timeout: float) -> None:
        with self._volume_changed:
            self._volume_changed.wait(timeout)

    def volume_state(self) -> VolumeState:
        with self._lock:
            return self._volume_state()

    def _volume_state(self) -> VolumeState:
        if self._volume_view is None:
            self._volume_view = VolumeState(
                claims={**self._claims, **self._claims_assumed},
                volumes={**self._volumes, **self._volumes_assumed},
                classes=dict(self._classes),
            )
        return self._volume_view

    # --- scheduler side ---------------------------------------------------------------------

    def assume(self, pod: Obj, node_name: str) -> Obj:
        """Count ``pod`` on ``node_name`` until bound or forgotten; returns the assumed copy."""
        assumed = {**pod, "spec": {**(pod.get("spec") or {}), "nodeName": node_name}}
        key = pod_key(pod)
        with self._lock:
            self._nominated.pop(key, None)  # placed: its nomination is spent (upstream's too)
            self._assumed[key] = assumed
            self._place(key)
        return assumed

    def forget(self, pod: Obj) -> None:
        key = pod_key(pod)
        with self._lock:
            if self._assumed.pop(key, None) is not None:
                self._place(key)

    def is_assumed(self, pod: Obj) -> bool:
        with self._lock:
            return pod_key(pod) in self._assumed

    def node_count(self) -> int:
        with self._lock:
            return len(self._nodes)

    def _pods_now(self) -> list[Obj]:
        return [pod for pods in self._by_node.values() for pod in pods.values()]

    def snapshot(self) -> tuple[Snapshot, dict[str, str]]:
        """The nodes (by name) with their bound and assumed pods (shared NodeInfos: clone one
        before changing it), with the namespaces' labels and the PDBs; and why each unreadable node is left out (a
        node with an invalid allocatable, or an unreadable pod on it, must not stop every
        cycle)."""
        with self._lock:
            self._refresh()
            infos, by_name = self._readable()
            with_affinity = self._affinity_nodes()
            broken = dict(self._broken)
            namespace_labels, pdbs = self._namespace_labels, self._pdb_list
            volumes = self._volume_state()
            nominated: dict[str, list[Obj]] = {}
            for pod in self._nominated.values():
                nominated.setdefault(nominated_node_of(pod), []).append(pod)
        snapshot = Snapshot(
            infos,
            namespace_labels,
            pdbs,
            nominated,
            volumes,
            by_name=by_name,
            pod_affinity_nodes=with_affinity,
        )
        return snapshot, broken

    def node_infos(self, names: Sequence[str]) -> tuple[list[NodeInfo], dict[str, str], list[str]]:
        """The named nodes' current NodeInfos (shared: read them, clone before changing one),
        why each unreadable one is left out, and the names the cache does not know."""
        with self._lock:
            self._refresh()
            infos, broken, unknown = [], {}, []
            for name in names:
                info = self._infos.get(name)
                if info is not None:
                    infos.append(info)
                elif name in self._broken:
                    broken[name] = self._broken[name]
                else:
                    unknown.append(name)
        return infos, broken, unknown

    def view(self) -> CacheView:
        """The readable NodeInfos now (shared), for a reader that keeps what it worked out
        per node (the extender's /filter)."""
        with self._lock:
            self._refresh()
            nodes, by_name = self._readable()
            return CacheView(
                nodes,
                by_name,
                self._affinity_nodes(),
                dict(self._broken),
                self._changes_start + len(self._changes),
            )

    def changes_between(self, since: int, until: int) -> list[str] | None:
        """The nodes whose NodeInfo changed after mark ``since`` up to mark ``until``
        (CacheView.mark); None when ``since`` is older than the changes kept."""
        with self._lock:
            if since < self._changes_start:
                return None
            return self._changes[since - self._changes_start : until - self._changes_start]

    def all_node_infos(self) -> list[NodeInfo]:
        """Every readable node's current NodeInfo (shared, by name), for PreFilters that look
        at the whole cluster."""
        return self.all_node_infos_with_pod_affinity()[0]

    def all_node_infos_with_pod_affinity(self) -> tuple[list[NodeInfo], list[NodeInfo]]:
        """all_node_infos, and those of them with pods with (anti-)affinity (shared)."""
        with self._lock:
            self._refresh()
            return list(self._readable()[0]), self._affinity_nodes()

    def pods_on(self, names: Sequence[str]) -> list[Obj]:
        """The bound and assumed pods on the named nodes (the extender's PodSource)."""
        with self._lock:
            return [pod for name in names for pod in self._by_node.get(name, {}).values()]
