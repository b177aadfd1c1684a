"""The kube-scheduler extender edge (k8s.io/kube-scheduler/extender/v1) over one profile.

Those Go types have no JSON tags, so kube-scheduler sends and expects Go's field names (``Pod``,
``NodeNames``, ``FailedNodes``, ``Host``...); its decoder matches names case-insensitively, and
so does ours when reading. The four verbs:

- ``/filter``: ExtenderArgs -> ExtenderFilterResult. With ``nodeCacheCapable: true``
  kube-scheduler sends only ``NodeNames`` and the nodes come from our own informer cache (a
  name the cache does not know is answered in ``FailedNodes``); otherwise it sends
  ``Nodes.items`` and the cache adds each node's pods.
- ``/prioritize``: ExtenderArgs -> HostPriorityList, scores 0..10 (MaxExtenderPriority); after
  the pod's ``/filter``, on that filter's NodeInfos and CycleState (kube-scheduler's one cycle).
  The names a ``/filter`` passed are scored as soon as its answer is written, while
  kube-scheduler runs its own Score plugins; the ``/prioritize`` of those names that follows
  gets that answer (the same NodeInfos and state: the same scores).
- ``/bind``: ExtenderBindingArgs -> ExtenderBindingResult: ``pods/binding`` through the
  ``Binder`` port (an API refusal is the result's ``Error``; kube-scheduler then reports
  FailedScheduling and retries). The node is checked again (pods bound since the filter, which
  kube-scheduler does not count for a resource it ignores) and the pod is assumed in the cache
  while it binds (the check: the Filters on the pod's /filter CycleState, the node read anew).
- ``/preempt``: ExtenderPreemptionArgs -> ExtenderPreemptionResult: for each candidate node and
  the victims kube-scheduler proposes (``NodeNameToVictims``, or ``NodeNameToMetaVictims`` by
  UID when nodeCacheCapable), the nodes where the pod would fit by our plugins once those
  victims are gone, each with the fewest of them needed (victims are reprieved highest
  priority first, as DefaultPreemption does); a node where it would not fit is left out.

Bad input never gets a 500: where the reply type has an error field (ExtenderFilterResult,
ExtenderBindingResult) it is HTTP 200 with the reason in ``Error``; HostPriorityList and
ExtenderPreemptionResult have none, so those answer HTTP 400 ``{"Error": ...}`` (kube-scheduler
then ignores this extender's scores, or fails that preemption attempt, and says why).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
import prometheus_client
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kubext import httpserve
from kubext_scheduler.cache import CacheView, ClusterCache
from kubext_scheduler.framework import resources
from kubext_scheduler.framework.cycle_state import CycleState
from kubext_scheduler.framework.memo import (  # noqa: F401 (the extender's names before)
    NODE_LOCAL_FILTERS,
    NODE_LOCAL_SCORES,
    SIGNATURES_PER_NODE,
    node_local_signature,
)
from kubext_scheduler.framework.nodeinfo import NodeInfo, name_of, pod_key
from kubext_scheduler.framework.runtime import Framework
from kubext_scheduler.framework.status import Code, Status
from kubext_scheduler.scheduler import Binder, BindError

log = logging.getLogger(__name__)

REQUESTS = prometheus_client.Counter(
    "kubext_extender_requests",
    "Extender requests by verb (filter, prioritize, bind, preempt) and result (ok, error).",
    ["verb", "result"],
)

MAX_EXTENDER_PRIORITY = 10
Obj = Mapping[str, Any]
# The pods bound or assumed on the named nodes (used when there is no cache).
PodSource = Callable[[Sequence[str]], Sequence[Obj]]
# How many pods seen by /filter are remembered for /bind to assume (kube-scheduler binds a pod
# soon after filtering it; older ones are simply bound without the assumption).
RECENT_PODS = 4096
# How many of those keep the candidate NodeInfos their /filter read, for their /prioritize
# (kube-scheduler prioritizes a pod right after filtering it, one pod at a time).
RECENT_CYCLES = 8
# The node-local plugins' verdicts and raw scores are kept per pod signature in the framework's
# memo (framework/memo.py), shared with the standalone cycle.


class BadRequest(ValueError):
    """A request the extender cannot read."""


def no_pods(names: Sequence[str]) -> Sequence[Obj]:
    return ()


@dataclasses.dataclass
class ExtenderArgs:
    pod: Obj
    # Exactly one of them: full nodes (nodeCacheCapable false) or names (true).
    nodes: list[Obj] | None
    names: list[str] | None

    def node_names(self) -> list[str]:
        return self.names if self.names is not None else [name_of(n) for n in self.nodes or ()]


def _folded(data: Mapping[str, Any]) -> dict[str, Any]:
    """The extender types have no JSON tags: kube-scheduler sends Go's field names ("Pod",
    "NodeNames") and Go's decoder matches them case-insensitively; so do we."""
    return {str(k).lower(): v for k, v in data.items()}


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:  # invalid UTF-8 included
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"{what} must be a JSON object, not {type(data).__name__}")
    return _folded(data)


def _pod(data: Mapping[str, Any], read: Callable[[Obj], bool] = lambda pod: False) -> Obj:
    """The request's pod, its requests readable (an unreadable pod is the request's error);
    one ``read`` says was read already is not read again."""
    pod = data.get("pod")
    if not isinstance(pod, dict) or not isinstance(pod.get("metadata", {}), dict):
        raise BadRequest("Pod: expected a Pod object")
    if not isinstance(pod.get("spec", {}), dict):
        raise BadRequest("Pod.spec: expected an object")
    if read(pod):
        return pod
    try:
        resources.pod_requests(pod)
    except resources.InvalidObject as exc:
        raise BadRequest(f"Pod: {exc}") from None
    return pod


def parse_args(body: bytes, *, read: Callable[[Obj], bool] = lambda pod: False) -> ExtenderArgs:
    """ExtenderArgs: the pod and either ``nodes.items`` or ``nodenames``."""
    data = _json_object(body, "ExtenderArgs")
    pod = _pod(data, read)
    nodes, names = data.get("nodes"), data.get("nodenames")
    if nodes is not None:
        items = nodes.get("items") if isinstance(nodes, dict) else None
        if not isinstance(items, list):
            raise BadRequest("Nodes.items: expected a list of Node objects")
        for i, node in enumerate(items):
            if not isinstance(node, dict) or not name_of(node):
                raise BadRequest(f"Nodes.items[{i}]: expected a Node object with metadata.name")
        return ExtenderArgs(pod, items, None)
    if names is not None:
        # Checked at C speed (a generator over 1,000 names was a fifth of a /filter).
        if not isinstance(names, list) or not set(map(type, names)) <= {str} or "" in names:
            raise BadRequest("NodeNames: expected a list of node names")
        return ExtenderArgs(pod, None, names)
    raise BadRequest("Nodes or NodeNames: one is required (ExtenderArgs carries the candidates)")


@dataclasses.dataclass
class PreemptionArgs:
    pod: Obj
    # Candidate node -> the keys (uids) of its proposed victims, and the PDB violations
    # kube-scheduler counted for them.
    victims: dict[str, list[str]]
    pdb_violations: dict[str, int]


def parse_preemption_args(body: bytes) -> PreemptionArgs:
    data = _json_object(body, "ExtenderPreemptionArgs")
    pod = _pod(data)
    full, meta = data.get("nodenametovictims"), data.get("nodenametometavictims")
    field = "NodeNameToVictims" if full is not None else "NodeNameToMetaVictims"
    given = full if full is not None else meta
    if not isinstance(given, dict):
        raise BadRequest("NodeNameToVictims or NodeNameToMetaVictims: expected a map of nodes")
    victims, violations = {}, {}
    for node, entry in given.items():
        where = f"{field}[{node}]"
        entry = _folded(entry) if isinstance(entry, dict) else entry
        if entry is None:  # a node where nothing need go
            entry = {"pods": []}
        pods = entry.get("pods") if isinstance(entry, dict) else None
        if pods is None and isinstance(entry, dict):
            pods = []  # Go's nil slice
        if not isinstance(pods, list) or not all(isinstance(p, dict) for p in pods):
            raise BadRequest(f"{where}.Pods: expected a list of {'Pods' if full else 'MetaPods'}")
        if full is not None:
            keys = [pod_key(p) for p in pods]
            named = all(name_of(p) for p in pods)
        else:
            keys = [str(_folded(p).get("uid") or "") for p in pods]
            named = True
        if not all(keys) or not named:
            raise BadRequest(f"{where}.Pods: every victim needs {'metadata' if full else 'a UID'}")
        count = entry.get("numpdbviolations", 0)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise BadRequest(f"{where}.NumPDBViolations: expected a count")
        victims[node], violations[node] = keys, count
    return PreemptionArgs(pod, victims, violations)


def parse_binding_args(body: bytes) -> tuple[str, str, str, str]:
    """ExtenderBindingArgs: podName, podNamespace, podUID, node."""
    data = _json_object(body, "ExtenderBindingArgs")
    fields = ("PodName", "PodNamespace", "PodUID", "Node")
    for field in fields:
        value = data.get(field.lower())
        if not isinstance(value, str) or not value:
            raise BadRequest(f"{field}: expected a non-empty string")
    name, namespace, uid, node = (data[f.lower()] for f in fields)
    return name, namespace, uid, node


def _priority(pod: Obj) -> int:
    value = (pod.get("spec") or {}).get("priority")
    return value if isinstance(value, int) else 0


@dataclasses.dataclass
class _Cycle:
    """One pod's scheduling cycle as /filter left it, for the same pod's /prioritize and /bind:
    kube-scheduler filters and scores a pod on one snapshot with one CycleState, and so do we
    (its /prioritize scores the NodeInfos its /filter read, after PreFilter's state; its /bind
    checks the node again with Filter alone, on that state)."""

    pod: Obj
    state: CycleState
    # PreFilter passed (else /bind checks from scratch).
    pre_filtered: bool
    # The candidates /filter read (dropped once the cycle is no longer recent).
    candidates: list[NodeInfo] | None
    # The cache's NodeInfos were read (by names): its raw scores may be kept.
    by_names: bool = False
    # The names /filter passed (by names) and their NodeInfos, in the order sent; and
    # /prioritize's answer for them once score_ahead worked it out.
    feasible: list[str] | None = None
    feasible_infos: list[NodeInfo] | None = None
    ahead: tuple[list[str], bytes] | None = None
    _by_name: dict[str, NodeInfo] | None = None

    def nodes(self) -> dict[str, NodeInfo] | None:
        """The candidates by name (None once dropped)."""
        if self._by_name is None and self.candidates is not None:
            self._by_name = {info.name: info for info in self.candidates}
        return self._by_name

    def drop_nodes(self) -> None:
        """What only the next /prioritize reads (the scored-ahead answer ~15 kB at 420 names,
        for each of RECENT_PODS cycles otherwise)."""
        self.candidates = self.feasible_infos = self._by_name = None
        self.feasible = self.ahead = None


@dataclasses.dataclass
class _KeptVerdicts:
    """One filter key's verdicts by node name, as of a mark of the cache's change log."""

    by_name: dict[str, Status]
    mark: int


def _in_view(view: CacheView, names: list[str]) -> tuple[list[NodeInfo], dict[str, str], list[str]]:
    """The named nodes' NodeInfos in the view, why each unreadable one is left out, and the
    names the cache does not know (ClusterCache.node_infos on a view)."""
    by_name = view.by_name
    if by_name.keys() >= set(names):  # the usual request, at C speed
        return list(map(by_name.__getitem__, names)), {}, []
    infos = [by_name[n] for n in names if n in by_name]
    missing = [n for n in names if n not in by_name]
    broken = {n: view.broken[n] for n in missing if n in view.broken}
    return infos, broken, [n for n in missing if n not in view.broken]


class Extender:
    """The verbs over one profile's framework.

    ``cache``: the informer cache (nodes and their bound and assumed pods); without it the
    extender reads only full nodes from requests and sees their pods through ``pods``.
    ``binder``: binds for ``/bind``; without it ``/bind`` answers that it cannot.
    ``synced``: whether the cache has listed (before that a name-only request is an error, not
    a claim that every node is unknown)."""

    def __init__(
        self,
        framework: Framework,
        pods: PodSource = no_pods,
        *,
        cache: ClusterCache | None = None,
        binder: Binder | None = None,
        synced: Callable[[], bool] = lambda: True,
    ) -> None:
        self.framework = framework
        self.pods = cache.pods_on if cache is not None else pods
        self.cache = cache
        self.binder = binder
        self.synced = synced
        self._recent: collections.OrderedDict[str, _Cycle] = collections.OrderedDict()
        self._with_nodes: collections.deque[_Cycle] = collections.deque()
        self._recent_lock = threading.Lock()
        self._bind_lock = threading.Lock()  # check-then-assume of one binding at a time
        self._prioritized = False  # a /prioritize came: score_ahead is worth its work
        self._ahead: _Cycle | None = None  # the last /filter's cycle, for work_ahead
        self._verdicts: dict[bytes, _KeptVerdicts] = {}  # by filter key (_kept_verdicts)

    # --- nodes ------------------------------------------------------------------------------

    def _node_infos(self, args: ExtenderArgs) -> tuple[list[NodeInfo], dict[str, str], list[str]]:
        """NodeInfos of the candidates, a reason for each unreadable one, and unknown names."""
        if args.names is not None:
            if self.cache is None:
                raise BadRequest(
                    "nodenames: this extender runs without a node cache (extender.cache: "
                    "false); configure it with nodeCacheCapable: false"
                )
            if not self.synced():
                raise BadRequest("the extender's node cache has not listed the nodes yet")
            return self.cache.node_infos(args.names)
        nodes = args.nodes or []
        cached: dict[str, NodeInfo] = {}
        if self.cache is not None:
            known, _, _ = self.cache.node_infos([name_of(n) for n in nodes])
            cached = {info.name: info for info in known}
        infos, broken, need_pods = [], {}, []
        for node in nodes:
            info = cached.get(name_of(node))
            # The cache's NodeInfo serves when it holds this very version of the node.
            if info is not None and _version(info.node) and _version(info.node) == _version(node):
                infos.append(info)
            else:
                need_pods.append(node)
        by_node: dict[str, list[Obj]] = {}
        if need_pods:
            for pod in self.pods([name_of(n) for n in need_pods]):
                by_node.setdefault((pod.get("spec") or {}).get("nodeName", ""), []).append(pod)
        for node in need_pods:
            name = name_of(node)
            try:
                infos.append(NodeInfo.of(node, by_node.get(name, ())))
            except resources.InvalidObject as exc:
                broken[name] = f"node {name} cannot be read: {exc}"
        return infos, broken, []

    def _cluster_by_name(self) -> dict[str, NodeInfo]:
        assert self.cache is not None
        return {info.name: info for info in self.cache.all_node_infos()}

    def _remember(self, cycle: _Cycle) -> None:
        uid = (cycle.pod.get("metadata") or {}).get("uid")
        if not uid:
            return
        with self._recent_lock:
            self._recent[uid] = cycle
            self._recent.move_to_end(uid)
            while len(self._recent) > RECENT_PODS:
                self._recent.popitem(last=False)
            # Only the last few keep their candidates (a cycle's are ~half the cluster).
            if len(self._with_nodes) == RECENT_CYCLES:
                self._with_nodes.popleft().drop_nodes()
            self._with_nodes.append(cycle)

    def _cycle_of(self, pod: Obj) -> _Cycle | None:
        """The recent /filter cycle of this very pod (same UID and same object)."""
        uid = (pod.get("metadata") or {}).get("uid")
        with self._recent_lock:
            cycle = self._recent.get(uid) if uid else None
        return cycle if cycle is not None and cycle.pod == pod else None

    # --- verbs ------------------------------------------------------------------------------

    def _view_for(self, args: ExtenderArgs) -> CacheView | None:
        """The cache's view for a request by names (None otherwise, or without a cache)."""
        if args.names is None or self.cache is None:
            return None
        if not self.synced():
            raise BadRequest("the extender's node cache has not listed the nodes yet")
        return self.cache.view()

    def _kept_verdicts(
        self, state: CycleState, pod: Obj, names: list[str], key: bytes, view: CacheView
    ) -> list[Status]:
        """The node-local Filters' verdicts on the named nodes (all in the view), kept per
        filter key (Framework.filter_key) and node name until the cache logs a change of that
        node: a pod alike an earlier one reads them at C speed, and only the nodes changed
        since are filtered (the framework's memo checked each node's NodeInfo in Python, 1,000
        names a cycle). On the event loop only."""
        kept = self._verdicts.get(key)
        if kept is None:
            if len(self._verdicts) >= SIGNATURES_PER_NODE:
                self._verdicts.clear()
            kept = self._verdicts[key] = _KeptVerdicts({}, view.mark)
        elif kept.mark != view.mark:
            assert self.cache is not None
            changed = self.cache.changes_between(kept.mark, view.mark)
            if changed is None:
                kept.by_name.clear()
            else:
                drop = kept.by_name.pop
                for name in changed:
                    drop(name, None)
            kept.mark = view.mark
        verdicts = kept.by_name
        missing = set(names).difference(verdicts)
        if missing:
            run_filter, by_name, errors = self.framework.run_filter, view.by_name, {}
            for name in [n for n in names if n in missing] if len(missing) > 1 else missing:
                verdict = run_filter(state, pod, by_name[name])
                if verdict.code is Code.ERROR:
                    errors[name] = verdict  # not kept
                else:
                    verdicts[name] = verdict
            if errors:
                return [errors.get(n) or verdicts[n] for n in names]
        return list(map(verdicts.__getitem__, names))

    def filter(self, body: bytes) -> dict[str, Any]:
        try:
            args = parse_args(body)
            view = self._view_for(args)
            if view is None:
                infos, broken, unknown = self._node_infos(args)
            else:
                assert args.names is not None
                infos, broken, unknown = _in_view(view, args.names)
        except BadRequest as exc:
            return {"Nodes": None, "NodeNames": None, "FailedNodes": {}, "Error": str(exc)}
        failed = {name: f"node {name} is not in the extender's node cache" for name in unknown}
        unresolvable: dict[str, str] = dict(broken)
        state = CycleState()
        # What PreFilter sees: every node of the cluster (spread and affinity count pods on
        # nodes kube-scheduler did not send) with those with pods with affinity listed by the
        # cache (InterPodAffinity listed them from 1,000 nodes per /filter: 7% of the extender
        # in py-spy under extender_bench), else the candidates.
        cluster: Sequence[NodeInfo] = infos
        if view is not None:
            cluster, state.pod_affinity_nodes = view.nodes, view.with_pod_affinity
        elif self.cache is not None:
            cluster, state.pod_affinity_nodes = self.cache.all_node_infos_with_pod_affinity()
        if self.cache is not None:
            state.node_count = len(cluster)  # what the memo keeps is pruned by it
        pre = self.framework.run_pre_filter(state, args.pod, cluster)
        by_names = args.names is not None
        cycle = _Cycle(args.pod, state, pre.is_success, infos if by_names else None, by_names)
        self._remember(cycle)
        if pre.code is Code.ERROR:
            return {"Nodes": None, "NodeNames": None, "FailedNodes": {}, "Error": pre.message}
        framework, pod = self.framework, args.pod
        # Only NodeInfos of the cache are kept by signature: full nodes' are built anew.
        key = framework.filter_key(state, pod) if by_names and pre.is_success else b""
        names = args.names
        known = names if names is not None and len(infos) == len(names) else [i.name for i in infos]
        if not pre.is_success:
            results: Sequence[Status] = [pre] * len(infos)
        elif key and view is not None:
            results = self._kept_verdicts(state, pod, known, key, view)
        else:
            results = [framework.run_filter(state, pod, info) for info in infos]
        success, error = Code.SUCCESS, Code.ERROR
        passed = [result.code is success for result in results]
        feasible = list(itertools.compress(infos, passed))  # in the order sent
        for info, result in zip(infos, results, strict=True) if len(feasible) < len(infos) else ():
            code = result.code
            if code is success:
                continue
            if code is error:
                return {"Nodes": None, "NodeNames": None, "FailedNodes": {}, "Error": _why(result)}
            elif code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                unresolvable[info.name] = result.message
            else:
                failed[info.name] = result.message
        reply: dict[str, Any] = {
            "FailedNodes": failed,
            "FailedAndUnresolvableNodes": unresolvable,
            "Error": "",
        }
        if by_names:
            reply["Nodes"] = None
            reply["NodeNames"] = cycle.feasible = list(itertools.compress(known, passed))
            cycle.feasible_infos = feasible
            self._ahead = cycle
        else:
            feasible_names = {info.name for info in feasible}
            items = [n for n in args.nodes or () if name_of(n) in feasible_names]
            reply["Nodes"] = {"apiVersion": "v1", "kind": "NodeList", "items": items}
            reply["NodeNames"] = None
        return reply

    def prioritize(self, body: bytes) -> list[dict[str, Any]]:
        """Raises BadRequest; every node gets a score 0..10 (unreadable or unknown ones 0).
        After the pod's /filter (by node names): on its NodeInfos and CycleState."""
        args, cycle = self._prioritize_args(body)
        return self._priorities(args, cycle)

    def prioritize_reply(self, body: bytes) -> bytes:
        """prioritize as JSON: the list score_ahead worked out when these are the names the
        pod's /filter passed (the same NodeInfos and CycleState: the same scores)."""
        args, cycle = self._prioritize_args(body)
        self._prioritized = True
        ahead = cycle.ahead if cycle is not None else None
        if ahead is not None and ahead[0] == args.names:
            return ahead[1]
        return _host_priority_list(*self._scores(args, cycle))

    def score_ahead(self, cycle: _Cycle) -> None:
        """Score the nodes the pod's /filter passed before kube-scheduler asks: it sends them to
        /prioritize after its own Score plugins, and this runs meanwhile (on the other core),
        off its serial cycle. Only once a /prioritize came (an extender without
        prioritizeVerb is never asked) and for more than one node (one is not scored)."""
        names = cycle.feasible
        if not self._prioritized or cycle.ahead is not None or names is None or len(names) < 2:
            return
        try:
            scores = self._scores(ExtenderArgs(cycle.pod, None, names), cycle)
        except BadRequest:
            return  # /prioritize works it out again and answers the error
        cycle.ahead = (names, _host_priority_list(*scores))

    def work_ahead(self) -> None:
        """score_ahead of the last /filter's cycle (called once its answer is sent)."""
        cycle, self._ahead = self._ahead, None
        if cycle is not None:
            self.score_ahead(cycle)

    def _prioritize_args(self, body: bytes) -> tuple[ExtenderArgs, _Cycle | None]:
        cycle: _Cycle | None = None

        def filtered(pod: Obj) -> bool:
            nonlocal cycle
            cycle = self._cycle_of(pod)
            return cycle is not None

        return parse_args(body, read=filtered), cycle

    def _priorities(self, args: ExtenderArgs, cycle: _Cycle | None) -> list[dict[str, Any]]:
        names, scores = self._scores(args, cycle)
        return [{"Host": name, "Score": score} for name, score in zip(names, scores, strict=True)]

    def _scores(self, args: ExtenderArgs, cycle: _Cycle | None) -> tuple[list[str], list[int]]:
        """The names asked for and each one's score, 0..MAX_EXTENDER_PRIORITY."""
        usable = cycle is not None and cycle.pre_filtered and cycle.candidates is not None
        by_names = False
        if usable and args.names is not None and args.names == cycle.feasible:
            # kube-scheduler's usual call: the names this pod's /filter passed (no candidates
            # by name built for it).
            assert cycle is not None and cycle.feasible_infos is not None
            state, infos, by_names = cycle.state, list(cycle.feasible_infos), cycle.by_names
        elif usable and args.names is not None:
            assert cycle is not None
            seen = cycle.nodes()
            assert seen is not None
            state, infos = cycle.state, [seen[n] for n in args.names if n in seen]
            by_names = cycle.by_names
            if len(infos) < len(args.names):  # names its /filter was not sent
                more, _, _ = self._node_infos(
                    ExtenderArgs(args.pod, None, [n for n in args.names if n not in seen])
                )
                infos.extend(more)
        else:
            infos, _, _ = self._node_infos(args)
            state = CycleState()
        totals: dict[str, int] = {}
        pre = self.framework.run_pre_score(state, args.pod, infos)
        if pre.is_success and infos:
            key = self.framework.score_key(state, args.pod) if by_names else b""
            totals, scored = self.framework.run_score(state, args.pod, infos, key=key)
            if not scored.is_success:
                raise BadRequest(scored.message)
        elif not pre.is_success:
            raise BadRequest(pre.message)
        # Scaled against what the plugins that scored could give (a skipped one gives nothing).
        top = self.framework.max_total_score(skipped=state.skip_score) or 1
        names = args.node_names()
        get = totals.get
        return names, [get(name, 0) * MAX_EXTENDER_PRIORITY // top for name in names]

    def bind(self, body: bytes) -> dict[str, Any]:
        try:
            name, namespace, uid, node = parse_binding_args(body)
        except BadRequest as exc:
            return {"Error": str(exc)}
        if self.binder is None:
            return {
                "Error": "this extender has no API client to bind with (standalone.enabled and "
                "extender.cache both false): leave bindVerb unset so that kube-scheduler binds"
            }
        with self._recent_lock:
            seen = self._recent.pop(uid, None)
        pod: Obj = (
            seen.pod if seen else {"metadata": {"name": name, "namespace": namespace, "uid": uid}}
        )
        if seen is not None and self.cache is not None:
            # kube-scheduler filters the next pods before this one is bound, and counts no
            # resource it ignores (managedResources ignoredByScheduler): check the node again
            # with every pod bound or binding there, then count this one while it binds.
            with self._bind_lock:
                infos, _, _ = self.cache.node_infos([node])
                if not infos or not self._still_fits(seen, infos[0]):
                    return {
                        "Error": f"{namespace}/{name} no longer fits on {node} (pods bound "
                        "there since it was filtered); it will be retried"
                    }
                self.cache.assume(pod, node)
        try:
            self.binder.bind(pod, node)
        except BindError as exc:
            if self.cache is not None:
                self.cache.forget(pod)
            return {"Error": f"binding {namespace}/{name} to {node} rejected: {exc}"}
        return {"Error": ""}

    def preempt(self, body: bytes) -> dict[str, Any]:
        """Raises BadRequest. Only nodes the cache knows are considered."""
        args = parse_preemption_args(body)
        if self.cache is None:
            raise BadRequest("preempt needs the extender's node cache (extender.cache: true)")
        if not self.synced():
            raise BadRequest("the extender's node cache has not listed the nodes yet")
        infos, _, _ = self.cache.node_infos(list(args.victims))
        cluster = self._cluster_by_name()
        result: dict[str, Any] = {}
        for info in infos:
            kept = self._fewest_victims(args.pod, info, args.victims[info.name], cluster)
            if kept is None:
                continue
            result[info.name] = {
                "Pods": [{"UID": key} for key in kept],
                # We read no PodDisruptionBudgets: kube-scheduler's count, as no more victims
                # than remain can violate one.
                "NumPDBViolations": min(args.pdb_violations[info.name], len(kept)),
            }
        return {"NodeNameToMetaVictims": result}

    def _still_fits(self, cycle: _Cycle, node: NodeInfo) -> bool:
        """The node as it is now passes the pod's Filters, on its cycle's PreFilter state (the
        whole cluster was read there; the node's own pods are read again here)."""
        if not cycle.pre_filtered:
            return self._fits(cycle.pod, node, self._cluster_by_name())
        return self.framework.run_filter(cycle.state, cycle.pod, node).is_success

    def _fits(self, pod: Obj, node: NodeInfo, cluster: Mapping[str, NodeInfo]) -> bool:
        state = CycleState()
        nodes = [node if name == node.name else other for name, other in cluster.items()]
        pre = self.framework.run_pre_filter(state, pod, nodes)
        return pre.is_success and self.framework.run_filter(state, pod, node).is_success

    def _fewest_victims(
        self, pod: Obj, info: NodeInfo, keys: Sequence[str], cluster: Mapping[str, NodeInfo]
    ) -> list[str] | None:
        """The victims (keys) still needed for ``pod`` to fit on the node, or None."""
        by_key = {pod_key(p): p for p in info.pods}
        victims = [by_key[k] for k in keys if k in by_key]  # a victim already gone frees itself
        trial = info.clone()
        for victim in victims:
            trial.remove_pod(victim)
        if not self._fits(pod, trial, cluster):
            return None
        needed = []
        for victim in sorted(victims, key=_priority, reverse=True):
            trial.add_pod(victim)
            if not self._fits(pod, trial, cluster):
                trial.remove_pod(victim)
                needed.append(victim)
        return [pod_key(v) for v in needed]


def _version(node: Obj) -> str:
    return str((node.get("metadata") or {}).get("resourceVersion") or "")


def _why(result: Status) -> str:
    return f"{result.plugin}: {result.message}" if result.plugin else result.message


# Each node's '{"Host":<name>,"Score":' and each score's '<n>}': a HostPriorityList of 420
# nodes joined from them costs half what building and encoding 420 dicts does.
_HOST_PREFIXES: dict[str, bytes] = {}
_SCORE_SUFFIXES = [b"%d}" % score for score in range(MAX_EXTENDER_PRIORITY + 1)]


def _host_priority_list(names: Sequence[str], scores: Sequence[int]) -> bytes:
    """orjson.dumps([{"Host": name, "Score": score}, ...]), the same bytes."""
    if scores and (min(scores) < 0 or max(scores) > MAX_EXTENDER_PRIORITY):  # not ours to mend
        return orjson.dumps([{"Host": n, "Score": s} for n, s in zip(names, scores, strict=True)])
    prefixes, suffixes = _HOST_PREFIXES, _SCORE_SUFFIXES
    if len(prefixes) > 65536:  # names of nodes long gone
        prefixes.clear()
    parts = []
    for name, score in zip(names, scores, strict=True):
        prefix = prefixes.get(name)
        if prefix is None:
            prefix = prefixes[name] = b'{"Host":' + orjson.dumps(name) + b',"Score":'
        parts.append(prefix + suffixes[score])
    return b"[" + b",".join(parts) + b"]"


_JSON_HEADERS = [(b"content-type", b"application/json")]
# A verb's answer: (HTTP status, JSON body, what to run once it is written or None).
Answer = tuple[int, bytes, Callable[[], None] | None]
Verb = Callable[[bytes], Awaitable[Answer]]


class ExtenderApp:
    """The extender's ASGI app: a POST to a verb's path is read and answered here, past
    Starlette's middleware, router and Request/Response objects (about 5% of the extender's
    samples under the scheduler bench); anything else goes to ``rest`` (Starlette's 404 and
    405 answers).

    A verb's ``then`` is queued on the event loop once its answer is sent: the write's flush
    (httpserve.CoalescedWrites) is queued first, so the answer leaves before ``then`` runs."""

    def __init__(self, verbs: dict[str, Verb]) -> None:
        self.verbs = verbs

        async def unreachable(request: Request) -> Response:  # POSTs never get here
            raise AssertionError(request.url.path)

        self.rest = Starlette(routes=[Route(path, unreachable, methods=["POST"]) for path in verbs])

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            verb = self.verbs.get(scope["path"])
            if verb is not None:
                body = await _body(receive)
                if body is None:  # kube-scheduler went away: nobody to answer
                    return
                status, answer, then = await verb(body)
                headers = [*_JSON_HEADERS, (b"content-length", str(len(answer)).encode())]
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": answer})
                if then is not None:
                    asyncio.get_running_loop().call_soon(then)
                return
        await self.rest(scope, receive, send)


async def _body(receive: Callable[[], Awaitable[dict[str, Any]]]) -> bytes | None:
    """The request's body, or None when the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def server_config(served: ExtenderApp, *, host: str, port: int) -> Any:
    """The uvicorn.Config the extender is served with (httptools, one send per response)."""
    import uvicorn

    return uvicorn.Config(
        served,
        host=host,
        port=port,
        http=httpserve.httptools_protocol(),
        lifespan="off",
        log_config=None,
        access_log=False,
    )


def app(extender: Extender) -> ExtenderApp:
    def with_error_field(
        verb: str, call: Callable[[bytes], dict[str, Any]], then: Callable[[], None] | None = None
    ) -> Verb:
        """A verb whose reply has ``error``: every failure is answered there (HTTP 200);
        ``then`` runs once the answer is written."""

        async def answer(body: bytes) -> Answer:
            try:
                # bind's API call blocks: off the event loop, so filters go on meanwhile.
                reply = await run_in_threadpool(call, body) if verb == "bind" else call(body)
            except Exception as exc:  # a bug of ours: still the protocol's answer, never a 500
                log.exception("extender verb failed", extra={"verb": verb})
                reply = {"Error": f"internal: {exc}"}
                if verb == "filter":
                    reply.update(Nodes=None, NodeNames=None, FailedNodes={})
            if reply.get("Error"):
                log.info(
                    "extender answered an error", extra={"verb": verb, "error": reply["Error"]}
                )
            REQUESTS.labels(verb, "error" if reply.get("Error") else "ok").inc()
            return 200, orjson.dumps(reply), then

        return answer

    def without_error_field(verb: str, call: Callable[[bytes], Any]) -> Verb:
        """HostPriorityList and ExtenderPreemptionResult have no error field: HTTP 400.
        ``call`` may answer JSON already encoded."""

        async def answer(body: bytes) -> Answer:
            try:
                reply = call(body)
                REQUESTS.labels(verb, "ok").inc()
                return 200, reply if isinstance(reply, bytes) else orjson.dumps(reply), None
            except BadRequest as exc:
                message = str(exc)
            except Exception as exc:
                log.exception("extender verb failed", extra={"verb": verb})
                message = f"internal: {exc}"
            REQUESTS.labels(verb, "error").inc()
            return 400, orjson.dumps({"Error": message}), None

        return answer

    return ExtenderApp(
        {
            "/filter": with_error_field("filter", extender.filter, extender.work_ahead),
            "/prioritize": without_error_field("prioritize", extender.prioritize_reply),
            "/bind": with_error_field("bind", extender.bind),
            "/preempt": without_error_field("preempt", extender.preempt),
        }
    )
