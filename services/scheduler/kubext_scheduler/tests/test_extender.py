"""The extender verbs over HTTP (Starlette's test client): filter, prioritize, bind and preempt,
with full nodes and with the extender's own node cache (nodeCacheCapable), malformed bodies
of every verb included."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from kubext_scheduler import extender, profiles_file
from kubext_scheduler.cache import ClusterCache
from kubext_scheduler.scheduler import BindError
from kubext_scheduler.tests.objects import container, counting_plugins, node, pod

GPU_TAINT = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


class RecordingBinder:
    def __init__(self, refuse: str = "") -> None:
        self.refuse = refuse
        self.bound: list[tuple[str, str, str]] = []

    def bind(self, p: Mapping[str, Any], node_name: str) -> None:
        meta = p["metadata"]
        if self.refuse:
            raise BindError(self.refuse)
        self.bound.append((meta["namespace"], meta["name"], node_name))

    def scheduled(self, p: Mapping[str, Any], node_name: str) -> None:
        raise AssertionError("kube-scheduler writes the Scheduled Event, not the extender")

    def failed(self, p: Mapping[str, Any], message: str, *, reason: str) -> None:
        raise AssertionError("kube-scheduler writes FailedScheduling, not the extender")


def make(pods: Any = None, **kwargs: Any) -> extender.Extender:
    [fw] = profiles_file.load(None).frameworks.values()
    return extender.Extender(fw, pods, **kwargs) if pods else extender.Extender(fw, **kwargs)


def client(pods: Any = None, **kwargs: Any) -> TestClient:
    return TestClient(extender.app(make(pods, **kwargs)))


def args(p: dict, nodes: list[dict]) -> dict:
    return {"Pod": p, "Nodes": {"items": nodes}, "NodeNames": None}


def by_names(p: dict, names: list[str]) -> dict:
    return {"Pod": p, "Nodes": None, "NodeNames": names}


def bound(p: dict, node_name: str) -> dict:
    return {**p, "spec": {**p["spec"], "nodeName": node_name}}


NODES = [node("small", cpu="500m"), node("tainted", taints=[GPU_TAINT]), node("free")]


def cache_of(nodes: list[dict], pods: list[dict] = ()) -> ClusterCache:  # type: ignore[assignment]
    cache = ClusterCache()
    cache.replace_nodes(nodes)
    cache.replace_pods(list(pods))
    return cache


# --- filter -----------------------------------------------------------------------------------


def test_filter_answers_an_extender_filter_result() -> None:
    reply = client().post("/filter", json=args(pod(containers=[container(cpu="1")]), NODES))
    assert reply.status_code == 200
    body = reply.json()
    assert [n["metadata"]["name"] for n in body["Nodes"]["items"]] == ["free"]
    assert body["FailedNodes"] == {"small": "Insufficient CPU: requested 1000m, available 500m"}
    assert body["FailedAndUnresolvableNodes"] == {
        "tainted": "node(s) had untolerated taint {dedicated: gpu}"
    }
    assert body["Error"] == ""


def test_filter_counts_the_pods_the_cache_knows() -> None:
    running = pod("old", containers=[container(cpu="3500m")], node_name="free")
    reply = client(lambda names: [running]).post(
        "/filter", json=args(pod(containers=[container(cpu="1")]), NODES)
    )
    assert reply.json()["Nodes"]["items"] == []


def test_filter_by_node_names_reads_the_nodes_and_pods_from_its_own_cache() -> None:
    running = bound(pod("old", containers=[container(cpu="3500m")]), "free")
    cache = cache_of([*NODES, node("roomy", cpu="8")], [running])
    p = pod(containers=[container(cpu="1")])
    body = client(cache=cache).post("/filter", json=by_names(p, ["free", "roomy", "gone"])).json()
    assert body["Error"] == ""
    assert body["NodeNames"] == ["roomy"]
    assert body["Nodes"] is None
    assert body["FailedNodes"] == {
        "free": "Insufficient CPU: requested 1000m, available 500m",
        "gone": "node gone is not in the extender's node cache",
    }


def test_filter_by_node_names_sees_extended_resources_kube_scheduler_may_ignore() -> None:
    cache = cache_of([node("plain"), node("gpu", **{"example.com/gpu": "1"})])
    p = pod(containers=[container(**{"example.com/gpu": "1"})])
    body = client(cache=cache).post("/filter", json=by_names(p, ["plain", "gpu"])).json()
    assert body["NodeNames"] == ["gpu"]
    assert "Insufficient example.com/gpu" in body["FailedNodes"]["plain"]


def counting_filters(ext: extender.Extender) -> list[str]:
    """The nodes Framework.run_filter is run on, in order."""
    calls: list[str] = []
    run_filter = ext.framework.run_filter

    def counted(state: Any, p: Any, info: Any) -> Any:
        calls.append(info.name)
        return run_filter(state, p, info)

    ext.framework.run_filter = counted  # type: ignore[method-assign]
    return calls


def test_alike_pods_reuse_the_verdicts_on_nodes_unchanged_since() -> None:
    cache = cache_of([node("a", cpu="2"), node("b", taints=[GPU_TAINT]), node("c", cpu="2")])
    ext = make(cache=cache)
    calls = counting_filters(ext)
    http = TestClient(extender.app(ext))
    first = http.post(
        "/filter", json=by_names(pod("p1", containers=[container(cpu="1")]), ["a", "b", "c"])
    ).json()
    assert first["NodeNames"] == ["a", "c"] and set(first["FailedAndUnresolvableNodes"]) == {"b"}
    assert calls == ["a", "b", "c"]
    # Another pod asking the same (its name, uid, image and volumes differ): nothing re-run.
    alike = pod(
        "p2", containers=[{**container(cpu="1"), "image": "other"}], volumes=[{"name": "v"}]
    )
    assert http.post("/filter", json=by_names(alike, ["a", "b", "c"])).json() == first
    assert calls == ["a", "b", "c"]
    # A pod bound on a: only a is filtered again, and its verdict is the new one.
    cache.set_pod(bound(pod("q", containers=[container(cpu="1500m")]), "a"))
    third = http.post(
        "/filter", json=by_names(pod("p3", containers=[container(cpu="1")]), ["a", "b", "c"])
    ).json()
    assert third["NodeNames"] == ["c"] and "Insufficient CPU" in third["FailedNodes"]["a"]
    assert calls == ["a", "b", "c", "a"]
    # What was kept of a's old NodeInfo is gone with it: one verdict per node and key.
    [kept] = ext._verdicts.values()
    assert sorted(kept.by_name) == ["a", "b", "c"]
    assert "Insufficient CPU" in kept.by_name["a"].message
    # q's status changing (its Running update) changes nothing the Filters read; the node
    # itself changing does.
    running = bound(pod("q", containers=[container(cpu="1500m")]), "a")
    cache.set_pod({**running, "status": {"phase": "Running"}})
    p5 = pod("p5", containers=[container(cpu="1")])
    assert http.post("/filter", json=by_names(p5, ["a", "b", "c"])).json() == third
    assert calls == ["a", "b", "c", "a"]
    cache.set_node(node("b"))  # the taint removed
    fourth = http.post("/filter", json=by_names(p5, ["a", "b", "c"])).json()
    assert fourth["NodeNames"] == ["b", "c"] and calls == ["a", "b", "c", "a", "b"]
    del calls[4:]
    # A pod asking more is filtered on its own.
    bigger = pod("p4", containers=[container(cpu="2")])
    assert http.post("/filter", json=by_names(bigger, ["c"])).json()["NodeNames"] == ["c"]
    assert calls[4:] == ["c"]


def test_a_reader_behind_the_change_log_filters_every_node_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kubext_scheduler import cache as cache_module

    monkeypatch.setattr(cache_module, "CHANGES_KEPT", 4)
    cache = cache_of([node(n) for n in "abc"])
    ext = make(cache=cache)
    calls = counting_filters(ext)
    http = TestClient(extender.app(ext))
    names = ["a", "b", "c"]
    http.post("/filter", json=by_names(pod("p1"), names))
    assert calls == names
    for i in range(6):  # more changes of a than the log keeps
        cache.set_pod(bound(pod(f"q{i}", containers=[container(cpu="10m")]), "a"))
        cache.view()  # each read as its own change
    assert http.post("/filter", json=by_names(pod("p2"), names)).json()["NodeNames"] == names
    assert calls == names + names


def test_pods_with_spread_constraints_are_filtered_afresh() -> None:
    # PodTopologySpread reads the other nodes: its verdicts are not kept.
    cache = cache_of([node("a", labels={"zone": "z1"}), node("b", labels={"zone": "z2"})])
    ext = make(cache=cache)
    calls = counting_filters(ext)
    http = TestClient(extender.app(ext))
    constraint = {
        "maxSkew": 1,
        "topologyKey": "zone",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "x"}},
    }
    for name in ("s1", "s2"):
        p = pod(name, topologySpreadConstraints=[constraint])
        p["metadata"]["labels"] = {"app": "x"}
        assert http.post("/filter", json=by_names(p, ["a", "b"])).json()["NodeNames"] == ["a", "b"]
    assert calls == ["a", "b", "a", "b"]


def test_a_name_only_request_before_the_cache_listed_is_an_error() -> None:
    reply = client(cache=cache_of([node("n1")]), synced=lambda: False).post(
        "/filter", json=by_names(pod(), ["n1"])
    )
    assert reply.status_code == 200
    assert reply.json()["Error"] == "the extender's node cache has not listed the nodes yet"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(b"{not json", "the body is not JSON", id="not-json"),
        pytest.param(b"", "the body is not JSON", id="empty"),
        pytest.param(b"[]", "ExtenderArgs must be a JSON object, not list", id="not-an-object"),
        pytest.param(
            json.dumps({"nodes": {"items": []}}).encode(), "Pod: expected a Pod object", id="no-pod"
        ),
        pytest.param(
            json.dumps({"pod": {"metadata": {}, "spec": []}, "nodenames": []}).encode(),
            "Pod.spec: expected an object",
            id="spec-not-an-object",
        ),
        pytest.param(json.dumps({"pod": pod()}).encode(), "Nodes or NodeNames", id="no-nodes"),
        pytest.param(
            json.dumps({"pod": pod(), "nodenames": ["a"]}).encode(),
            "nodeCacheCapable: false",
            id="nodenames-without-cache",
        ),
        pytest.param(
            json.dumps({"pod": pod(), "nodenames": "a"}).encode(),
            "NodeNames: expected a list of node names",
            id="nodenames-not-a-list",
        ),
        pytest.param(
            json.dumps({"pod": pod(), "nodes": {"items": [{"metadata": {}}]}}).encode(),
            "Nodes.items[0]: expected a Node object with metadata.name",
            id="nameless-node",
        ),
        pytest.param(
            json.dumps(args(pod(containers=[container(memory="1 Gi")]), NODES)).encode(),
            "spec.containers[0].resources.requests.memory",
            id="invalid-quantity",
        ),
    ],
)
def test_malformed_filter_requests_get_the_error_field(body: bytes, error: str) -> None:
    reply = client().post("/filter", content=body)
    assert reply.status_code == 200
    assert error in reply.json()["Error"]
    assert reply.json()["Nodes"] is None


def test_an_unreadable_node_fails_alone() -> None:
    broken = node("broken", cpu="many")
    body = client().post("/filter", json=args(pod(), [broken, node("ok")])).json()
    assert [n["metadata"]["name"] for n in body["Nodes"]["items"]] == ["ok"]
    assert "status.allocatable.cpu" in body["FailedAndUnresolvableNodes"]["broken"]
    cached = client(cache=cache_of([broken, node("ok")]))
    body = cached.post("/filter", json=by_names(pod(), ["broken", "ok"])).json()
    assert body["NodeNames"] == ["ok"]
    assert "status.allocatable.cpu" in body["FailedAndUnresolvableNodes"]["broken"]


# --- prioritize -------------------------------------------------------------------------------


def test_prioritize_answers_a_host_priority_list_of_0_to_10() -> None:
    p = pod(containers=[container(cpu="1", memory="1Gi")])
    busy = node("busy")
    running = pod("old", containers=[container(cpu="3", memory="6Gi")], node_name="busy")
    reply = client(lambda names: [running]).post("/prioritize", json=args(p, [busy, node("idle")]))
    assert reply.status_code == 200
    scores = {h["Host"]: h["Score"] for h in reply.json()}
    assert set(scores) == {"busy", "idle"}
    assert all(0 <= s <= 10 for s in scores.values())
    assert scores["idle"] > scores["busy"]


def test_prioritize_by_node_names_scores_from_the_cache() -> None:
    running = bound(pod("old", containers=[container(cpu="3", memory="6Gi")]), "busy")
    cache = cache_of([node("busy"), node("idle")], [running])
    p = pod(containers=[container(cpu="1", memory="1Gi")])
    reply = client(cache=cache).post("/prioritize", json=by_names(p, ["busy", "idle", "gone"]))
    scores = {h["Host"]: h["Score"] for h in reply.json()}
    assert scores["idle"] > scores["busy"] and scores["gone"] == 0


def test_prioritize_after_filter_scores_on_the_filters_cycle() -> None:
    # kube-scheduler filters and scores a pod on one snapshot: a pod bound between the two
    # calls (another binding cycle) changes no score of this cycle.
    cache = cache_of([node("a"), node("b")])
    http = client(cache=cache)
    p = pod(containers=[container(cpu="1", memory="1Gi")])
    assert http.post("/filter", json=by_names(p, ["a", "b"])).json()["NodeNames"] == ["a", "b"]
    cache.set_pod(bound(pod("q", containers=[container(cpu="3", memory="6Gi")]), "a"))
    scores = {
        h["Host"]: h["Score"] for h in http.post("/prioritize", json=by_names(p, ["a", "b"])).json()
    }
    assert scores["a"] == scores["b"]
    # Another pod, or this one changed, is scored on the cache as it is now.
    changed = pod(containers=[container(cpu="2", memory="1Gi")])
    for other in (pod("r", containers=[container(cpu="1", memory="1Gi")]), changed):
        reply = http.post("/prioritize", json=by_names(other, ["a", "b"])).json()
        scores = {h["Host"]: h["Score"] for h in reply}
        assert scores["a"] < scores["b"]


def test_prioritize_reads_a_changed_pod_again() -> None:
    http = client(cache=cache_of([node("a")]))
    http.post("/filter", json=by_names(pod(), ["a"]))
    reply = http.post("/prioritize", json=by_names(pod(containers=[container(cpu="x")]), ["a"]))
    assert reply.status_code == 400
    assert "spec.containers[0].resources.requests.cpu" in reply.json()["Error"]


def test_prioritize_of_a_pod_filtered_long_ago_reads_the_cache() -> None:
    cache = cache_of([node("a"), node("b")])
    http = client(cache=cache)
    p = pod(containers=[container(cpu="1", memory="1Gi")])
    http.post("/filter", json=by_names(p, ["a", "b"]))
    for i in range(extender.RECENT_CYCLES):
        http.post("/filter", json=by_names(pod(f"other-{i}"), ["a", "b"]))
    cache.set_pod(bound(pod("q", containers=[container(cpu="3", memory="6Gi")]), "a"))
    reply = http.post("/prioritize", json=by_names(p, ["a", "b"])).json()
    scores = {h["Host"]: h["Score"] for h in reply}
    assert scores["a"] < scores["b"]


SOFT_TAINT = {"key": "spot", "value": "yes", "effect": "PreferNoSchedule"}
PREFER_FAST = {
    "nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 5,
                "preference": {
                    "matchExpressions": [{"key": "disk", "operator": "In", "values": ["fast"]}]
                },
            }
        ]
    }
}


def scoring_cache() -> ClusterCache:
    nodes = [
        node("a", labels={"disk": "fast"}),
        node("b", taints=[SOFT_TAINT]),
        node("c", cpu="8", memory="16Gi", labels={"disk": "fast"}, taints=[SOFT_TAINT]),
        node("d", cpu="2"),
    ]
    running = [
        bound(pod("r1", containers=[container(cpu="1", memory="2Gi")]), "a"),
        bound(pod("r2", containers=[container(cpu="500m", memory="512Mi")]), "d"),
    ]
    return cache_of(nodes, running)


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({}, id="no-requests"),
        pytest.param({"containers": [container(cpu="300m", memory="1Gi")]}, id="requests"),
        pytest.param({"affinity": PREFER_FAST}, id="preferred-affinity"),
        pytest.param(
            {"tolerations": [{"key": "spot", "operator": "Exists", "effect": "PreferNoSchedule"}]},
            id="tolerates-the-soft-taint",
        ),
    ],
)
def test_kept_raw_scores_give_what_the_framework_gives(spec: dict[str, Any]) -> None:
    names = ["a", "b", "c", "d"]

    def scores(http: TestClient, p: dict, *, filtered: bool) -> dict[str, int]:
        if filtered:
            assert http.post("/filter", json=by_names(p, names)).json()["NodeNames"] == names
        return {
            h["Host"]: h["Score"] for h in http.post("/prioritize", json=by_names(p, names)).json()
        }

    kept = client(cache=scoring_cache())
    fresh = client(cache=scoring_cache())  # prioritize without a filter: Framework.run_score
    for name in ("p1", "p2"):  # p2 is scored from what p1 left
        p = pod(name, **spec)
        assert scores(kept, p, filtered=True) == scores(fresh, p, filtered=False)


def test_alike_pods_reuse_the_raw_scores_on_nodes_unchanged_since() -> None:
    cache = scoring_cache()
    [fw] = profiles_file.load(None).frameworks.values()
    _, calls = counting_plugins(fw)  # the nodes each Score plugin scores
    http = TestClient(extender.app(extender.Extender(fw, cache=cache)))
    names = ["a", "b", "c", "d"]

    def prioritize(name: str) -> dict[str, int]:
        p = pod(name, containers=[container(cpu="300m", memory="1Gi")])
        http.post("/filter", json=by_names(p, names))
        return {
            h["Host"]: h["Score"] for h in http.post("/prioritize", json=by_names(p, names)).json()
        }

    first = prioritize("p1")
    per_node = len(calls) // 4
    assert per_node and sorted(calls) == sorted(names * per_node)
    assert prioritize("p2") == first and len(calls) == 4 * per_node
    cache.set_pod(bound(pod("q", containers=[container(cpu="7", memory="14Gi")]), "c"))
    third = prioritize("p3")
    assert calls[4 * per_node :] == ["c"] * per_node
    assert third["c"] < first["c"]


def test_what_is_scored_is_kept_for_clusters_larger_than_a_request() -> None:
    # kube-scheduler sends windows of the nodes, round the cluster: what one window scored
    # is still kept when the window comes round again (the memo was once pruned by its own
    # size, and cleared itself before it held a cluster of 200).
    cache = cache_of([node(f"n{i:03d}") for i in range(200)])
    ext, calls = counted_extender(cache)
    names = [f"n{i:03d}" for i in range(200)]
    windows = [names[start : start + 80] for start in range(0, 200, 40)]

    def prioritize(name: str, window: list[str]) -> None:
        body = json.dumps(by_names(pod(name), window)).encode()
        assert ext.filter(body)["NodeNames"] == window
        ext.prioritize_reply(body)

    for i, window in enumerate(windows):
        prioritize(f"first-{i}", window)
    assert set(calls) == set(names)
    calls.clear()
    for i, window in enumerate(windows):
        prioritize(f"again-{i}", window)
    assert calls == []


def counted_extender(cache: ClusterCache) -> tuple[extender.Extender, list[str]]:
    [fw] = profiles_file.load(None).frameworks.values()
    _, calls = counting_plugins(fw)  # the nodes each Score plugin scores
    return extender.Extender(fw, cache=cache), calls


def test_the_filtered_names_are_scored_ahead_and_prioritize_answers_that() -> None:
    names = ["a", "b", "c", "d"]
    ext, calls = counted_extender(scoring_cache())
    fresh = client(cache=scoring_cache())
    ext.prioritize_reply(json.dumps(by_names(pod("first"), names)).encode())  # one was asked
    p = pod("p", containers=[container(cpu="300m", memory="1Gi")])
    body = json.dumps(by_names(p, names)).encode()
    assert ext.filter(body)["NodeNames"] == names
    before = len(calls)
    ext.work_ahead()  # what the served /filter queues once its answer is written
    assert len(calls) > before  # scored here, not in /prioritize

    def scored_again(*_: Any) -> None:
        raise AssertionError("/prioritize scored the names scored ahead again")

    ext._scores = scored_again  # type: ignore[method-assign]
    answer = ext.prioritize_reply(body)
    assert json.loads(answer) == fresh.post("/prioritize", content=body).json()


def test_nothing_is_scored_ahead_until_a_prioritize_came() -> None:
    # An extender configured without prioritizeVerb is never asked: no work for nothing.
    ext, calls = counted_extender(scoring_cache())
    ext.filter(json.dumps(by_names(pod("p"), ["a", "b", "c", "d"])).encode())
    ext.work_ahead()
    assert calls == []


def test_a_prioritize_of_other_names_than_filtered_is_scored_anew() -> None:
    ext, calls = counted_extender(scoring_cache())
    fresh = client(cache=scoring_cache())
    ext.prioritize_reply(json.dumps(by_names(pod("first"), ["a", "b"])).encode())
    p = pod("p", containers=[container(cpu="300m", memory="1Gi")])
    ext.filter(json.dumps(by_names(p, ["a", "b", "c", "d"])).encode())
    ext.work_ahead()
    assert calls  # the four were scored ahead
    body = json.dumps(by_names(p, ["d", "a"])).encode()
    answer = json.loads(ext.prioritize_reply(body))
    assert [h["Host"] for h in answer] == ["d", "a"]  # not the four scored ahead
    assert answer == fresh.post("/prioritize", content=body).json()


def test_only_the_recent_cycles_keep_what_was_scored_ahead() -> None:
    names = ["a", "b", "c", "d"]
    ext, _ = counted_extender(scoring_cache())
    ext.prioritize_reply(json.dumps(by_names(pod("first"), names)).encode())
    cycles = []
    for i in range(extender.RECENT_CYCLES + 1):
        p = pod(f"p{i}")
        ext.filter(json.dumps(by_names(p, names)).encode())
        ext.work_ahead()
        cycles.append(ext._cycle_of(p))
    oldest, newest = cycles[0], cycles[-1]
    assert oldest is not None and newest is not None
    assert oldest.ahead is None and oldest.feasible is None and oldest.nodes() is None
    assert newest.ahead is not None and newest.feasible == names


def test_the_filter_answer_is_written_before_the_work_queued_after_it() -> None:
    import asyncio

    order: list[str] = []
    queued: list[Any] = []
    ext = make(cache=cache_of([node("a"), node("b")]))
    ext.work_ahead = lambda: order.append("then")  # type: ignore[method-assign]
    served = extender.app(ext)
    body = json.dumps(by_names(pod("p"), ["a", "b"])).encode()

    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def send(message: dict[str, Any]) -> None:
            queued.append(message)
            if message["type"] == "http.response.body":  # as CoalescedWrites queues its flush
                loop.call_soon(order.append, "written")

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body}

        scope = {"type": "http", "method": "POST", "path": "/filter", "headers": []}
        await served(scope, receive, send)
        assert order == []
        await asyncio.sleep(0)

    asyncio.run(main())
    assert order == ["written", "then"]
    start, sent = queued
    assert start["status"] == 200
    assert dict(start["headers"])[b"content-length"] == str(len(sent["body"])).encode()
    assert json.loads(sent["body"])["NodeNames"] == ["a", "b"]


@pytest.mark.parametrize(
    ("names", "scores"),
    [
        pytest.param(["a", "b"], [0, 10], id="plain"),
        pytest.param(['q"uote', "back\\slash", "ünï", "tab\t"], [3, 4, 5, 6], id="escaped"),
        pytest.param([], [], id="none"),
        pytest.param(["a"], [11], id="out-of-range"),
    ],
)
def test_the_host_priority_list_is_the_json_of_its_dicts(
    names: list[str], scores: list[int]
) -> None:
    expected = [{"Host": n, "Score": s} for n, s in zip(names, scores, strict=True)]
    for _ in range(2):  # the second time from the kept prefixes
        encoded = extender._host_priority_list(names, scores)
        assert encoded == orjson.dumps(expected)
        assert json.loads(encoded) == expected


def test_other_methods_and_paths_get_starlettes_answers() -> None:
    http = client()
    assert http.get("/filter").status_code == 405
    assert http.post("/nope", content=b"{}").status_code == 404


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(b"{}", "Pod: expected a Pod object", id="no-pod"),
        pytest.param(b"nope", "the body is not JSON", id="not-json"),
        pytest.param(json.dumps({"pod": pod()}).encode(), "Nodes or NodeNames", id="no-nodes"),
        pytest.param(
            json.dumps(args(pod(containers=[container(cpu="one")]), NODES)).encode(),
            "spec.containers[0].resources.requests.cpu",
            id="invalid-quantity",
        ),
    ],
)
def test_malformed_prioritize_is_a_400_with_the_reason(body: bytes, error: str) -> None:
    # HostPriorityList has no error field: kube-scheduler logs the failure, drops our scores.
    reply = client().post("/prioritize", content=body)
    assert reply.status_code == 400
    assert error in reply.json()["Error"]


# --- bind -------------------------------------------------------------------------------------

BINDING = {"PodName": "p", "PodNamespace": "default", "PodUID": "uid-p", "Node": "free"}


def test_bind_binds_through_the_binder_and_counts_the_pod_at_once() -> None:
    binder = RecordingBinder()
    cache = cache_of([node("free", cpu="2")])
    http = client(cache=cache, binder=binder)
    p = pod(containers=[container(cpu="1500m")])
    assert http.post("/filter", json=by_names(p, ["free"])).json()["NodeNames"] == ["free"]
    assert http.post("/bind", json=BINDING).json() == {"Error": ""}
    assert binder.bound == [("default", "p", "free")]
    # Before the watch shows it bound, the next pod already sees its room taken.
    other = pod("q", containers=[container(cpu="1")])
    assert http.post("/filter", json=by_names(other, ["free"])).json()["NodeNames"] == []


@pytest.mark.parametrize("spread", [False, True], ids=["node-local", "with-spread"])
def test_bind_checks_the_node_again_with_the_pods_bound_since_the_filter(spread: bool) -> None:
    binder = RecordingBinder()
    cache = cache_of([node("free", cpu="2", labels={"zone": "z1"})])
    http = client(cache=cache, binder=binder)
    constraints = [
        {
            "maxSkew": 1,
            "topologyKey": "zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "x"}},
        }
    ]
    p = pod(containers=[container(cpu="1500m")])
    if spread:  # PreFilter reads the whole cluster; the check at bind reuses it
        p["metadata"]["labels"] = {"app": "x"}
        p["spec"]["topologySpreadConstraints"] = constraints
    assert http.post("/filter", json=by_names(p, ["free"])).json()["NodeNames"] == ["free"]
    cache.set_pod(bound(pod("q", containers=[container(cpu="1")]), "free"))
    reply = http.post("/bind", json=BINDING).json()
    assert "default/p no longer fits on free" in reply["Error"]
    assert binder.bound == [] and not cache.is_assumed(p)


def test_a_refused_binding_is_the_results_error_and_frees_the_room() -> None:
    binder = RecordingBinder(refuse='pods "p" not found')
    cache = cache_of([node("free", cpu="2")])
    http = client(cache=cache, binder=binder)
    p = pod(containers=[container(cpu="1500m")])
    http.post("/filter", json=by_names(p, ["free"]))
    reply = http.post("/bind", json=BINDING)
    assert reply.status_code == 200
    assert reply.json() == {"Error": 'binding default/p to free rejected: pods "p" not found'}
    assert cache.snapshot()[0].nodes[0].requested.milli_cpu == 0


def test_without_an_api_client_bind_says_so() -> None:
    assert "leave bindVerb unset" in client().post("/bind", json=BINDING).json()["Error"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(b"{", "the body is not JSON", id="not-json"),
        pytest.param(b'"x"', "ExtenderBindingArgs must be a JSON object", id="not-an-object"),
        pytest.param(
            json.dumps({**BINDING, "Node": ""}).encode(),
            "Node: expected a non-empty string",
            id="empty-node",
        ),
        pytest.param(
            json.dumps({k: v for k, v in BINDING.items() if k != "PodUID"}).encode(),
            "PodUID: expected a non-empty string",
            id="no-uid",
        ),
    ],
)
def test_malformed_bind_requests_get_the_error_field(body: bytes, error: str) -> None:
    binder = RecordingBinder()
    reply = client(cache=cache_of([]), binder=binder).post("/bind", content=body)
    assert reply.status_code == 200
    assert error in reply.json()["Error"]
    assert binder.bound == []


# --- preempt ----------------------------------------------------------------------------------


def victim(name: str, cpu: str, priority: int, node_name: str) -> dict:
    return bound(pod(name, containers=[container(cpu=cpu)], priority=priority), node_name)


VICTIMS = [
    victim("low", "1", 1, "n1"),
    victim("mid", "2", 5, "n1"),
    victim("high", "1", 10, "n1"),
    victim("tiny-node-pod", "500m", 1, "tiny"),
]


def preempt_cache() -> ClusterCache:
    return cache_of([node("n1", cpu="4"), node("tiny", cpu="1")], VICTIMS)


PREEMPTOR = pod("urgent", containers=[container(cpu="2")], priority=100)


def test_preempt_keeps_the_fewest_victims_by_our_plugins_meta_form() -> None:
    meta = {
        "n1": {"Pods": [{"UID": "uid-low"}, {"UID": "uid-mid"}, {"UID": "uid-high"}]},
        "tiny": {"Pods": [{"UID": "uid-tiny-node-pod"}], "NumPDBViolations": 1},
        "gone": {"Pods": None},
    }
    reply = client(cache=preempt_cache()).post(
        "/preempt", json={"Pod": PREEMPTOR, "NodeNameToMetaVictims": meta}
    )
    assert reply.status_code == 200
    # Freeing all of n1 gives 4 cpu; "high" then "low" are reprieved (2 cpu still free), "mid"
    # must go. On tiny (1 cpu) the pod never fits; "gone" is not in the cache.
    assert reply.json() == {
        "NodeNameToMetaVictims": {"n1": {"Pods": [{"UID": "uid-mid"}], "NumPDBViolations": 0}}
    }


def test_preempt_reads_full_victims_too() -> None:
    # Go's decoder, and ours, match the field names case-insensitively.
    full = {"n1": {"pods": VICTIMS[:3], "numPDBViolations": 2}}
    reply = client(cache=preempt_cache()).post(
        "/preempt", json={"pod": PREEMPTOR, "nodeNameToVictims": full}
    )
    assert reply.json() == {
        "NodeNameToMetaVictims": {"n1": {"Pods": [{"UID": "uid-mid"}], "NumPDBViolations": 1}}
    }


def test_preempt_drops_a_node_whose_victims_would_not_make_room() -> None:
    meta = {"n1": {"pods": [{"uid": "uid-low"}]}}  # 1 cpu freed, 0 + 1 free: not enough
    reply = client(cache=preempt_cache()).post(
        "/preempt", json={"pod": PREEMPTOR, "nodeNameToMetaVictims": meta}
    )
    assert reply.json() == {"NodeNameToMetaVictims": {}}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(b"]", "the body is not JSON", id="not-json"),
        pytest.param(b"[]", "ExtenderPreemptionArgs must be a JSON object", id="not-an-object"),
        pytest.param(b'{"nodeNameToMetaVictims": {}}', "Pod: expected a Pod object", id="no-pod"),
        pytest.param(
            json.dumps({"pod": PREEMPTOR}).encode(),
            "NodeNameToVictims or NodeNameToMetaVictims",
            id="no-victims",
        ),
        pytest.param(
            json.dumps(
                {"pod": PREEMPTOR, "nodeNameToMetaVictims": {"n1": {"pods": [{}]}}}
            ).encode(),
            "NodeNameToMetaVictims[n1].Pods: every victim needs a UID",
            id="victim-without-uid",
        ),
        pytest.param(
            json.dumps(
                {
                    "pod": PREEMPTOR,
                    "nodeNameToMetaVictims": {"n1": {"pods": [], "numPDBViolations": -1}},
                }
            ).encode(),
            "NumPDBViolations: expected a count",
            id="negative-count",
        ),
        pytest.param(
            json.dumps(
                {
                    "pod": pod(containers=[container(cpu="2 cores")]),
                    "nodeNameToMetaVictims": {},
                }
            ).encode(),
            "spec.containers[0].resources.requests.cpu",
            id="invalid-quantity",
        ),
    ],
)
def test_malformed_preempt_is_a_400_with_the_reason(body: bytes, error: str) -> None:
    # ExtenderPreemptionResult has no error field: kube-scheduler fails that attempt with it.
    reply = client(cache=preempt_cache()).post("/preempt", content=body)
    assert reply.status_code == 400
    assert error in reply.json()["Error"]


def test_preempt_without_a_cache_is_a_400() -> None:
    reply = client().post("/preempt", json={"pod": PREEMPTOR, "nodeNameToMetaVictims": {}})
    assert reply.status_code == 400
    assert "node cache" in reply.json()["Error"]


def test_the_served_extender_answers_over_http_with_keep_alive() -> None:
    import http.client
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ext = make(cache=cache_of([node("a"), node("b")]))
    server = uvicorn.Server(extender.server_config(extender.app(ext), host="127.0.0.1", port=port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for names in (["a", "b"], ["b"]):  # two requests on one connection
            conn.request("POST", "/filter", body=json.dumps(by_names(pod("p"), names)))
            reply = conn.getresponse()
            assert reply.status == 200
            assert json.loads(reply.read())["NodeNames"] == names
        conn.request("POST", "/prioritize", body=b"not json")
        reply = conn.getresponse()
        assert reply.status == 400 and "not JSON" in json.loads(reply.read())["Error"]
        conn.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_filter_reads_the_caches_list_of_nodes_with_pods_with_affinity() -> None:
    term = {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"}
    guard = pod(
        "guard",
        node_name="a",
        affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}},
    )
    cache = cache_of([node("a"), node("b"), node("c")], [guard])
    ext = make(cache=cache)
    seen: list[Any] = []
    real = ext.framework.run_pre_filter

    def pre_filter(state: Any, p: Any, nodes: Any) -> Any:
        seen.append(state.pod_affinity_nodes)
        return real(state, p, nodes)

    ext.framework.run_pre_filter = pre_filter  # type: ignore[method-assign]
    http = TestClient(extender.app(ext))
    x = pod("x")
    x["metadata"]["labels"] = {"app": "x"}
    reply = http.post("/filter", json=by_names(x, ["a", "b", "c"])).json()
    assert reply["NodeNames"] == ["b", "c"] and "anti-affinity" in reply["FailedNodes"]["a"]
    [listed] = seen
    assert [info.name for info in listed] == ["a"]
    # A pod without the label: the guard's term does not reject it anywhere.
    assert http.post("/filter", json=by_names(pod("y"), ["a", "b"])).json()["NodeNames"] == [
        "a",
        "b",
    ]
