"""Pods and nodes as the API server serves them, built small for tables."""

from __future__ import annotations

from typing import Any


def container(name: str = "app", **requests: str) -> dict[str, Any]:
    req = {k.replace("_", "-"): v for k, v in requests.items()}
    return {"name": name, "resources": {"requests": req} if req else {}}


def pod(
    name: str = "p",
    *,
    containers: list[dict[str, Any]] | None = None,
    init: list[dict[str, Any]] | None = None,
    overhead: dict[str, str] | None = None,
    node_name: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"containers": containers if containers is not None else [container()]}
    if init:
        body["initContainers"] = init
    if overhead:
        body["overhead"] = overhead
    if node_name:
        body["nodeName"] = node_name
    body.update(spec)
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"}, "spec": body}


def node(
    name: str = "n1",
    *,
    cpu: str = "4",
    memory: str = "8Gi",
    storage: str = "100Gi",
    pods: str = "110",
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
    unschedulable: bool = False,
    **extra: str,
) -> dict[str, Any]:
    allocatable = {"cpu": cpu, "memory": memory, "ephemeral-storage": storage, "pods": pods}
    allocatable.update(extra)
    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": spec,
        "status": {"allocatable": allocatable, "capacity": allocatable},
    }


def counting_plugins(fw: Any) -> tuple[list[str], list[str]]:
    """The nodes run_filter runs on, and the nodes each Score plugin scores, in order."""
    filtered: list[str] = []
    scored: list[str] = []
    run_filter = fw.run_filter

    def filter_counted(state: Any, p: Any, info: Any) -> Any:
        filtered.append(info.name)
        return run_filter(state, p, info)

    fw.run_filter = filter_counted
    for plugin in fw.plugins["score"]:
        score_nodes = getattr(plugin, "score_nodes", None)
        if score_nodes is None:  # scored node by node
            plugin_score = plugin.score

            def node_counted(state: Any, p: Any, info: Any, _score: Any = plugin_score) -> Any:
                scored.append(info.name)
                return _score(state, p, info)

            plugin.score = node_counted
            continue

        def nodes_counted(state: Any, p: Any, infos: Any, _score_nodes: Any = score_nodes) -> Any:
            scored.extend(info.name for info in infos)
            return _score_nodes(state, p, infos)

        plugin.score_nodes = nodes_counted
    fw._score = tuple(  # the resolved methods, resolved again with the counting ones
        (name, p.score, getattr(p, "score_nodes", None), normalize, weight)
        for (name, _, _, normalize, weight), p in zip(fw._score, fw.plugins["score"], strict=True)
    )
    return filtered, scored
