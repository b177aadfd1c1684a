"""What the node-local plugins decided about a node, kept while the node is unchanged.

The Filter plugins in NODE_LOCAL_FILTERS (the Score plugins in NODE_LOCAL_SCORES) decide on a
node from that node's NodeInfo and the pod's spec alone: not its metadata, not other nodes,
not its volumes. While every other Filter (Score) plugin of the profile is skipped for a pod
(PreFilter's or PreScore's Skip), pods alike in what those read get the same verdicts (raw
scores) on a node whose NodeInfo has not changed since, so they are kept per pod signature
(upstream's opportunistic batching signs pods for the same reason). NormalizeScore reads every
candidate and is redone for each cycle. The standalone cycle (``Framework.schedule``) keeps
verdicts and raw scores here, the extender its raw scores (its /filter keeps its verdicts by
node name, dropped by the cache's change log: ``Extender._kept_verdicts``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

import orjson

from kubext_scheduler.framework.nodeinfo import NodeInfo
from kubext_scheduler.framework.status import Status

Obj = Mapping[str, Any]

NODE_LOCAL_FILTERS = frozenset(
    {
        "NodeUnschedulable",
        "NodeName",
        "TaintToleration",
        "NodeAffinity",
        "NodePorts",
        "NodeResourceFit",
    }
)
NODE_LOCAL_SCORES = frozenset(
    {"TaintToleration", "NodeAffinity", "NodeResourceFit", "NodeResourcesBalancedAllocation"}
)
# Signatures whose verdicts (and raw scores) one node keeps before they are dropped.
SIGNATURES_PER_NODE = 64

_UNSIGNED = frozenset({"volumes", "containers", "initContainers", "ephemeralContainers"})


def _container_signature(container: Any) -> Any:
    if not isinstance(container, Mapping):
        return container
    return [container.get(k) for k in ("resources", "ports", "restartPolicy")]


def node_local_signature(pod: Obj) -> bytes:
    """What the node-local plugins read of a pod: its spec less the volumes and the
    containers' names, images, commands, environment and mounts (unique per pod, read by none
    of them)."""
    spec = pod.get("spec") or {}
    signed = {k: v for k, v in spec.items() if k not in _UNSIGNED}
    for field in ("containers", "initContainers"):
        if isinstance(spec.get(field), list):
            signed[field] = [_container_signature(c) for c in spec[field]]
    return orjson.dumps(signed, option=orjson.OPT_SORT_KEYS)


def keyed(signature: bytes, skipped: Collection[str]) -> bytes:
    """The key of a pod's verdicts or raw scores: its signature and the plugins skipped for it
    (which decide the ones that run)."""
    return signature + b"\0" + ",".join(sorted(skipped)).encode()


@dataclasses.dataclass
class Kept:
    """What is kept of one node while it is this NodeInfo, at this generation (the cache never
    mutates one it handed out, a changed node being a new NodeInfo; a NodeInfo changed in
    place counts a new generation), by key."""

    info: NodeInfo
    generation: int = 0
    # The lineage of ``info`` (NodeInfo.lineage): a later NodeInfo of it, at this
    # generation, is the same to the node-local plugins.
    lineage: object = None
    verdicts: dict[bytes, Status] = dataclasses.field(default_factory=dict)
    # Key -> (the Score plugins that ran, their raw scores, the weighted sum of the scores of
    # those that do not normalise: final once worked out).
    scores: dict[bytes, tuple[tuple[str, ...], tuple[int, ...], int]] = dataclasses.field(
        default_factory=dict
    )

    def keep_verdict(self, key: bytes, verdict: Status) -> None:
        if len(self.verdicts) >= SIGNATURES_PER_NODE:
            self.verdicts.clear()
        self.verdicts[key] = verdict

    def keep_scores(
        self, key: bytes, plugins: tuple[str, ...], row: tuple[int, ...], fixed_sum: int
    ) -> None:
        if len(self.scores) >= SIGNATURES_PER_NODE:
            self.scores.clear()
        self.scores[key] = (plugins, row, fixed_sum)


class NodeMemo:
    """Node name -> what is kept of it (dropped with the NodeInfo it was worked out on).
    Used by one scheduling thread or the extender's event loop; a lost race only recomputes."""

    def __init__(self) -> None:
        self._kept: dict[str, Kept] = {}
        # ``get(name)``: the record of a node, or None; the dict's own method (the cycle's
        # loops call it once per node: a method of ours around it was 4% of the process).
        self.get = self._kept.get

    def __len__(self) -> int:
        return len(self._kept)

    def of(self, info: NodeInfo, node_count: int) -> Kept:
        """What is kept of the node as ``info`` (a fresh record once it changed; the record of
        an earlier NodeInfo of its lineage at the same generation carries over);
        ``node_count``: the cluster's nodes, to drop those gone from it now and then."""
        kept = self._kept.get(info.name)
        if (
            kept is not None
            and kept.info is not info
            and kept.lineage is info.lineage
            and kept.generation == info.generation
        ):
            kept.info = info
        if kept is None or kept.info is not info or kept.generation != info.generation:
            kept = Kept(info, info.generation, info.lineage)
            if len(self._kept) >= 2 * node_count + 64:
                self._kept.clear()  # nodes gone from the cluster
            self._kept[info.name] = kept
        return kept
