"""Where the pod template sits in each workload kind, its containers, and whether the workload is
a node agent (CNI, CSI node plugin, device plugin) that needs host access by design."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kubext_audit.checks.model import Obj, Path, get, items

POD_TEMPLATE: dict[str, Path] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
WORKLOADS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})
POD_KINDS = frozenset(POD_TEMPLATE)

# Host directories that mark a DaemonSet as a node agent, and which kind of agent it is.
NODE_AGENT_DIRS = (
    ("/opt/cni/bin", "CNI plugin"),
    ("/etc/cni/net.d", "CNI plugin"),
    ("/var/lib/kubelet/plugins_registry", "CSI node plugin"),
    ("/var/lib/kubelet/plugins", "CSI node plugin"),
    ("/var/lib/kubelet/device-plugins", "device plugin"),
)


def pod_spec_path(obj: Obj) -> Path | None:
    return POD_TEMPLATE.get(str(obj.get("kind")))


def pod_spec(obj: Obj) -> dict[str, Any]:
    path = pod_spec_path(obj)
    spec = get(obj, *path) if path else None
    return spec if isinstance(spec, dict) else {}


def containers(obj: Obj, *, init: bool = False) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Each container with its path; the init containers too when ``init``."""
    base = pod_spec_path(obj)
    if base is None:
        return
    spec = pod_spec(obj)
    for key in ("containers", "initContainers") if init else ("containers",):
        for index, container in items(spec, key):
            if isinstance(container, dict):
                yield (*base, key, index), container


def host_paths(obj: Obj) -> list[str]:
    return [
        str(get(volume, "hostPath", "path"))
        for _, volume in items(pod_spec(obj), "volumes")
        if get(volume, "hostPath", "path")
    ]


def node_agent(obj: Obj) -> str | None:
    """'CNI plugin', 'CSI node plugin' or 'device plugin' for a DaemonSet that mounts that
    agent's host directory; None for anything else."""
    if obj.get("kind") != "DaemonSet":
        return None
    mounted = [p.rstrip("/") for p in host_paths(obj)]
    for directory, agent in NODE_AGENT_DIRS:
        if any(p == directory or p.startswith(directory + "/") for p in mounted):
            return agent
    return None


def replicas(obj: Obj) -> int:
    """Declared replicas; Kubernetes defaults an unset count to 1."""
    value = get(obj, "spec", "replicas")
    return value if isinstance(value, int) else 1


def labels_match(selector: Any, labels: Any) -> bool:
    """A LabelSelector (matchLabels and the four operators) against a label map."""
    if not isinstance(selector, dict):
        return False
    labels = labels if isinstance(labels, dict) else {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for _, expression in items(selector, "matchExpressions"):
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))
