"""Every plugin this scheduler has, by the name a KubeSchedulerConfiguration uses, and the
default profile's plugin set (kube-scheduler's defaults and weights, in its order, less
the plugins not built yet)."""

from __future__ import annotations

from kubext_scheduler.framework import profiles
from kubext_scheduler.plugins import (
    balancedallocation,
    defaultpreemption,
    interpodaffinity,
    nodeaffinity,
    nodename,
    nodeports,
    noderesourcefit,
    nodeunschedulable,
    podtopologyspread,
    prioritysort,
    tainttoleration,
    volumebinding,
)

REGISTRY: dict[str, profiles.PluginSpec] = {
    spec.name: spec
    for spec in (
        profiles.PluginSpec(prioritysort.NAME, prioritysort.new),
        profiles.PluginSpec(nodename.NAME, nodename.new),
        profiles.PluginSpec(nodeunschedulable.NAME, nodeunschedulable.new),
        profiles.PluginSpec(tainttoleration.NAME, tainttoleration.new),
        profiles.PluginSpec(nodeaffinity.NAME, nodeaffinity.new),
        profiles.PluginSpec(nodeports.NAME, nodeports.new),
        profiles.PluginSpec(noderesourcefit.NAME, noderesourcefit.new, noderesourcefit.Args),
        profiles.PluginSpec(balancedallocation.NAME, balancedallocation.new),
        profiles.PluginSpec(podtopologyspread.NAME, podtopologyspread.new, podtopologyspread.Args),
        profiles.PluginSpec(interpodaffinity.NAME, interpodaffinity.new, interpodaffinity.Args),
        profiles.PluginSpec(defaultpreemption.NAME, defaultpreemption.new, defaultpreemption.Args),
        profiles.PluginSpec(volumebinding.NAME, volumebinding.new, volumebinding.Args),
    )
}

# Per point, in order, with kube-scheduler's default score weights.
DEFAULTS: dict[str, list[tuple[str, int]]] = {
    "queueSort": [(prioritysort.NAME, 0)],
    "preFilter": [
        (noderesourcefit.NAME, 0),
        (nodeports.NAME, 0),
        (nodeaffinity.NAME, 0),
        (volumebinding.NAME, 0),
        (podtopologyspread.NAME, 0),
        (interpodaffinity.NAME, 0),
    ],
    "filter": [
        (nodeunschedulable.NAME, 0),
        (nodename.NAME, 0),
        (tainttoleration.NAME, 0),
        (nodeaffinity.NAME, 0),
        (nodeports.NAME, 0),
        (noderesourcefit.NAME, 0),
        (volumebinding.NAME, 0),
        (podtopologyspread.NAME, 0),
        (interpodaffinity.NAME, 0),
    ],
    "postFilter": [(defaultpreemption.NAME, 0)],
    "preScore": [
        (tainttoleration.NAME, 0),
        (nodeaffinity.NAME, 0),
        (podtopologyspread.NAME, 0),
        (interpodaffinity.NAME, 0),
        (balancedallocation.NAME, 0),
    ],
    "score": [
        (tainttoleration.NAME, 3),
        (nodeaffinity.NAME, 2),
        (noderesourcefit.NAME, 1),
        (podtopologyspread.NAME, 2),
        (interpodaffinity.NAME, 2),
        (balancedallocation.NAME, 1),
    ],
    # VolumeBinding scores only under upstream's alpha StorageCapacityScoring gate: not here.
    "reserve": [(volumebinding.NAME, 0)],
    "preBind": [(volumebinding.NAME, 0)],
}
