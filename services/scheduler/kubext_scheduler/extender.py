"""The kube-scheduler extender edge (k8s.io/kube-scheduler/extender/v1) over one profile.

``/filter`` takes ExtenderArgs and answers ExtenderFilterResult; ``/prioritize`` answers a
HostPriorityList (0..10, kube-scheduler's MaxExtenderPriority); ``/bind`` answers
ExtenderBindingResult. Field names are kube-scheduler's JSON tags. A malformed request gets
HTTP 200 with the reason in ``error`` where the reply type has one (ExtenderFilterResult,
ExtenderBindingResult), and HTTP 400 with ``{"error": ...}`` for prioritize (HostPriorityList
has no error field; kube-scheduler then ignores this extender's scores). Never a 500.

kube-scheduler sends no pods with the nodes, so the nodes are seen with the pods ``PodSource``
gives: the cluster cache's bound and assumed pods (``cache.ClusterCache.pods_on``), or none
when the cache is off (``extender.cache: false``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kubext_scheduler.framework import resources
from kubext_scheduler.framework.cycle_state import CycleState
from kubext_scheduler.framework.nodeinfo import NodeInfo, name_of
from kubext_scheduler.framework.runtime import Framework
from kubext_scheduler.framework.status import Code

log = logging.getLogger(__name__)

MAX_EXTENDER_PRIORITY = 10
Obj = Mapping[str, Any]
# The pods bound or assumed on the named nodes (the cluster cache's view).
PodSource = Callable[[Sequence[str]], Sequence[Obj]]


class BadRequest(ValueError):
    """An ExtenderArgs or ExtenderBindingArgs the extender cannot read."""


def no_pods(names: Sequence[str]) -> Sequence[Obj]:
    return ()


def parse_args(body: bytes) -> tuple[Obj, list[Obj]]:
    """ExtenderArgs: the pod and the full nodes (``nodes.items``)."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"ExtenderArgs must be a JSON object, not {type(data).__name__}")
    pod = data.get("pod")
    if not isinstance(pod, dict) or not isinstance(pod.get("metadata", {}), dict):
        raise BadRequest("pod: expected a Pod object")
    if not isinstance(pod.get("spec", {}), dict):
        raise BadRequest("pod.spec: expected an object")
    nodes = data.get("nodes")
    if nodes is None:
        if data.get("nodenames") is not None:
            raise BadRequest(
                "nodenames: this extender keeps no node cache; configure it with "
                "nodeCacheCapable: false so that kube-scheduler sends the nodes"
            )
        raise BadRequest("nodes: missing (ExtenderArgs must carry nodes.items)")
    items = nodes.get("items") if isinstance(nodes, dict) else None
    if not isinstance(items, list):
        raise BadRequest("nodes.items: expected a list of Node objects")
    for i, node in enumerate(items):
        if not isinstance(node, dict) or not name_of(node):
            raise BadRequest(f"nodes.items[{i}]: expected a Node object with metadata.name")
    return pod, items


class Extender:
    def __init__(self, framework: Framework, pods: PodSource = no_pods) -> None:
        self.framework = framework
        self.pods = pods

    def _node_infos(self, nodes: list[Obj]) -> tuple[list[NodeInfo], dict[str, str]]:
        """NodeInfos of the readable nodes, and a reason for each unreadable one."""
        by_node: dict[str, list[Obj]] = {}
        for pod in self.pods([name_of(n) for n in nodes]):
            by_node.setdefault((pod.get("spec") or {}).get("nodeName", ""), []).append(pod)
        infos, broken = [], {}
        for node in nodes:
            name = name_of(node)
            try:
                infos.append(NodeInfo.of(node, by_node.get(name, ())))
            except resources.InvalidObject as exc:
                broken[name] = f"node {name} cannot be read: {exc}"
        return infos, broken

    def filter(self, body: bytes) -> dict[str, Any]:
        try:
            pod, nodes = parse_args(body)
            resources.pod_requests(pod)  # an unreadable pod is the request's error, not a node's
        except (BadRequest, resources.InvalidObject) as exc:
            return {"nodes": None, "failedNodes": {}, "error": str(exc)}
        infos, broken = self._node_infos(nodes)
        failed: dict[str, str] = {}
        unresolvable: dict[str, str] = dict(broken)
        state = CycleState()
        pre = self.framework.run_pre_filter(state, pod, infos)
        if pre.code is Code.ERROR:
            return {"nodes": None, "failedNodes": {}, "error": pre.message}
        feasible_names = set()
        for info in infos:
            result = pre if not pre.is_success else self.framework.run_filter(state, pod, info)
            if result.is_success:
                feasible_names.add(info.name)
            elif result.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                unresolvable[info.name] = result.message
            else:
                failed[info.name] = result.message
        feasible = [n for n in nodes if name_of(n) in feasible_names]
        return {
            "nodes": {"apiVersion": "v1", "kind": "NodeList", "items": feasible},
            "failedNodes": failed,
            "failedAndUnresolvableNodes": unresolvable,
            "error": "",
        }

    def prioritize(self, body: bytes) -> list[dict[str, Any]]:
        """Raises BadRequest; every node gets a score 0..10 (unreadable nodes 0)."""
        pod, nodes = parse_args(body)
        try:
            resources.pod_requests(pod)
        except resources.InvalidObject as exc:
            raise BadRequest(str(exc)) from None
        infos, _ = self._node_infos(nodes)
        state = CycleState()
        totals: dict[str, int] = {}
        pre = self.framework.run_pre_score(state, pod, infos)
        if pre.is_success and infos:
            totals, scored = self.framework.run_score(state, pod, infos)
            if not scored.is_success:
                raise BadRequest(scored.message)
        elif not pre.is_success:
            raise BadRequest(pre.message)
        # Scaled against what the plugins that scored could give (a skipped one gives nothing).
        top = self.framework.max_total_score(skipped=state.skip_score) or 1
        return [
            {"host": name_of(n), "score": totals.get(name_of(n), 0) * MAX_EXTENDER_PRIORITY // top}
            for n in nodes
        ]

    def bind(self, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return {"error": f"the body is not JSON: {exc}"}
        if not isinstance(data, dict):
            return {"error": "ExtenderBindingArgs must be a JSON object"}
        for field in ("podName", "podNamespace", "podUID", "node"):
            if not isinstance(data.get(field), str) or not data[field]:
                return {"error": f"{field}: expected a non-empty string"}
        return {
            "error": "binding is not implemented by this extender (it has no API client): "
            "leave bindVerb unset so that kube-scheduler binds"
        }


def app(extender: Extender) -> Starlette:
    async def _read(request: Request) -> bytes:
        return await request.body()

    async def filter_(request: Request) -> Response:
        try:
            return JSONResponse(extender.filter(await _read(request)))
        except Exception as exc:  # answered in the protocol's own error field, never a 500
            log.exception("extender filter failed")
            return JSONResponse({"nodes": None, "failedNodes": {}, "error": f"internal: {exc}"})

    async def prioritize(request: Request) -> Response:
        try:
            return JSONResponse(extender.prioritize(await _read(request)))
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except Exception as exc:
            log.exception("extender prioritize failed")
            return JSONResponse({"error": f"internal: {exc}"}, status_code=400)

    async def bind(request: Request) -> Response:
        try:
            return JSONResponse(extender.bind(await _read(request)))
        except Exception as exc:
            log.exception("extender bind failed")
            return JSONResponse({"error": f"internal: {exc}"})

    return Starlette(
        routes=[
            Route("/filter", filter_, methods=["POST"]),
            Route("/prioritize", prioritize, methods=["POST"]),
            Route("/bind", bind, methods=["POST"]),
        ]
    )
