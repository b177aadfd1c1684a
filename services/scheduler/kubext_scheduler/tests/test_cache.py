"""The cluster cache keeps each node's NodeInfo built and rebuilds only the nodes that changed."""

from __future__ import annotations

from typing import Any

import pytest

from kubext_scheduler import cache as cache_module
from kubext_scheduler.cache import ClusterCache
from kubext_scheduler.framework.nodeinfo import NodeInfo
from kubext_scheduler.tests.objects import container, node, pod


def bound(p: dict[str, Any], node_name: str) -> dict[str, Any]:
    return {**p, "spec": {**p["spec"], "nodeName": node_name}}


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The node names NodeInfo.of is called for, in order."""
    seen: list[str] = []
    real = NodeInfo.of

    def counting(n: Any, pods: Any = ()) -> NodeInfo:
        info = real(n, pods)
        seen.append(info.name)
        return info

    monkeypatch.setattr(cache_module.NodeInfo, "of", staticmethod(counting))
    return seen


def test_a_pod_change_updates_only_its_node_without_a_rebuild(builds: list[str]) -> None:
    cache = ClusterCache()
    cache.replace_nodes([node(f"n{i}") for i in range(50)])
    cache.snapshot()
    assert len(builds) == 50
    builds.clear()
    cache.snapshot()
    assert builds == []  # nothing changed: nothing re-summed
    first = pod("a", containers=[container(cpu="1")])
    before, _ = cache.snapshot()
    cache.assume(first, "n7")
    snapshot, _ = cache.snapshot()
    assert builds == []  # the pod is added to n7's NodeInfo, its other pods not re-summed
    assert snapshot.get("n7").requested.milli_cpu == 1000  # type: ignore[union-attr]
    assert before.get("n7").requested.milli_cpu == 0, "the older snapshot's copy is unchanged"  # type: ignore[union-attr]
    assert [a is b for a, b in zip(before.nodes, snapshot.nodes, strict=True)].count(False) == 1
    cache.set_pod(bound(first, "n7"))  # the watch confirms the assumption: counted once
    assert cache.snapshot()[0].get("n7").requested.milli_cpu == 1000  # type: ignore[union-attr]
    cache.set_node(node("n7", labels={"x": "y"}))  # a node change rebuilds that node
    assert cache.snapshot()[0].get("n7").requested.milli_cpu == 1000  # type: ignore[union-attr]
    assert builds == ["n7"]


def test_a_status_update_of_a_bound_pod_reads_no_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ClusterCache()
    cache.set_node(node("n1"))
    p = bound(pod("a", containers=[container(cpu="1")]), "n1")
    cache.set_pod(p)
    cache.snapshot()
    calls: list[str] = []
    real = cache_module.resources.pod_requests

    def counting(pod_: Any, **kwargs: Any) -> Any:
        calls.append(pod_["metadata"]["name"])
        return real(pod_, **kwargs)

    monkeypatch.setattr(cache_module.resources, "pod_requests", counting)
    running = {**p, "status": {"phase": "Running", "podIP": "10.0.0.1"}}
    cache.set_pod(running)  # kwok's status update: the same spec, so the same sums
    info = cache.snapshot()[0].get("n1")
    assert calls == []
    assert info is not None and info.pods == [running] and info.requested.milli_cpu == 1000


def _same(a: NodeInfo, b: NodeInfo) -> bool:
    # In any order: a relist places pods in its set's order (the hash seed's).
    def keyed(pods: list[Any]) -> list[Any]:
        return sorted(pods, key=lambda p: p["metadata"]["uid"])

    return (
        a.name == b.name
        and keyed(a.pods) == keyed(b.pods)
        and a.requested == b.requested
        and a.non_zero_requested == b.non_zero_requested
        and sorted(map(repr, a.used_ports)) == sorted(map(repr, b.used_ports))
        and keyed(a.pods_with_affinity) == keyed(b.pods_with_affinity)
    )


def test_updated_node_infos_are_what_a_rebuild_gives() -> None:
    cache = ClusterCache()
    cache.replace_nodes([node("n1"), node("n2")])
    cache.snapshot()
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": []}}
    ports = [{"name": "c", "ports": [{"hostPort": 80}], "resources": {}}]
    a = pod("a", containers=[container(cpu="1", memory="1Gi")])
    b = pod("b", containers=ports, affinity=anti)
    c = pod("c", containers=[container(cpu="250m")])
    cache.assume(a, "n1")
    cache.assume(b, "n1")
    cache.assume(c, "n2")
    cache.snapshot()
    cache.set_pod(bound(a, "n1"))
    cache.set_pod({**bound(b, "n1"), "status": {"phase": "Running"}})
    resized = pod("a", containers=[container(cpu="2")])  # a new spec: re-read
    cache.set_pod(bound(resized, "n1"))
    cache.forget(c)
    cache.set_pod(bound(c, "n1"))  # moved from n2 to n1
    cache.set_pod({**bound(b, "n1"), "status": {"phase": "Succeeded"}})  # finished: frees room
    snapshot, _ = cache.snapshot()
    fresh = ClusterCache()
    fresh.replace_nodes([node("n1"), node("n2")])
    fresh.replace_pods([bound(resized, "n1"), bound(c, "n1")])
    rebuilt, _ = fresh.snapshot()
    assert all(_same(x, y) for x, y in zip(snapshot.nodes, rebuilt.nodes, strict=True))
    assert snapshot.get("n1").requested.milli_cpu == 2250  # type: ignore[union-attr]


def test_snapshots_share_the_built_node_infos_and_a_what_if_clones_one() -> None:
    cache = ClusterCache()
    cache.set_node(node("n1", cpu="2"))
    cache.set_pod(bound(pod("a", containers=[container(cpu="1")]), "n1"))
    first, _ = cache.snapshot()
    second, _ = cache.snapshot()
    assert first.nodes[0] is second.nodes[0], "an unchanged node is not copied per cycle"
    trial = first.nodes[0].clone()  # what preemption and nominated pods do
    trial.remove_pod(bound(pod("a"), "n1"))
    assert cache.snapshot()[0].nodes[0].requested.milli_cpu == 1000
    cache.set_pod(bound(pod("b", containers=[container(cpu="500m")]), "n1"))
    third, _ = cache.snapshot()
    assert third.nodes[0] is not first.nodes[0] and third.nodes[0].requested.milli_cpu == 1500
    assert first.nodes[0].requested.milli_cpu == 1000, "an older snapshot's node is unchanged"


def test_a_moved_or_deleted_pod_leaves_its_old_node() -> None:
    cache = ClusterCache()
    cache.replace_nodes([node("n1"), node("n2")])
    p = pod("a", containers=[container(cpu="1")])
    cache.assume(p, "n1")
    cache.forget(p)
    cache.set_pod(bound(p, "n2"))
    snapshot, _ = cache.snapshot()
    assert [n.requested.milli_cpu for n in snapshot.nodes] == [0, 1000]
    cache.delete_pod(p)
    assert [n.requested.milli_cpu for n in cache.snapshot()[0].nodes] == [0, 0]
    assert cache.pods_on(["n1", "n2"]) == []


def test_node_infos_tells_unknown_and_unreadable_names_apart() -> None:
    cache = ClusterCache()
    cache.replace_nodes([node("ok"), node("bad", cpu="lots")])
    infos, broken, unknown = cache.node_infos(["ok", "bad", "gone"])
    assert [i.name for i in infos] == ["ok"]
    assert list(broken) == ["bad"] and unknown == ["gone"]
    cache.set_node(node("bad"))  # fixed by an update
    assert [i.name for i in cache.node_infos(["bad"])[0]] == ["bad"]


def test_a_node_info_keeps_its_pods_with_affinity_through_add_remove_and_clone() -> None:
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": []}}
    plain, spread = pod("plain"), pod("anti", affinity=anti)
    info = NodeInfo.of(node("n1"), [bound(plain, "n1"), bound(spread, "n1")])
    assert [p["metadata"]["name"] for p in info.pods_with_affinity] == ["anti"]
    copy = info.clone()
    assert copy.remove_pod(spread)
    assert copy.pods_with_affinity == [] and len(copy.pods) == 1
    assert [p["metadata"]["name"] for p in info.pods_with_affinity] == ["anti"]


def test_snapshots_follow_every_change_and_an_earlier_one_stays_as_it_was() -> None:
    cache = ClusterCache()
    cache.replace_nodes([node("a"), node("b"), node("c")])
    first, _ = cache.snapshot()
    first_nodes, first_infos = list(first.nodes), {n.name: n for n in first.nodes}

    def listed(snapshot: Any) -> list[tuple[str, list[str]]]:
        return [(n.name, sorted(p["metadata"]["name"] for p in n.pods)) for n in snapshot.nodes]

    cache.assume(pod("p1"), "b")  # one NodeInfo replaced by the pod
    second, _ = cache.snapshot()
    assert listed(second) == [("a", []), ("b", ["p1"]), ("c", [])]
    assert second.get("b") is second.nodes[1] and second.get("a") is first_infos["a"]
    cache.set_node(node("b", cpu="8"))  # rebuilt
    cache.set_node({"metadata": {"name": "c"}, "status": {"allocatable": {"cpu": "x"}}})
    cache.set_node(node("d"))  # a new node, and c unreadable: the list built again
    third, broken = cache.snapshot()
    assert listed(third) == [("a", []), ("b", ["p1"]), ("d", [])] and set(broken) == {"c"}
    assert third.get("c") is None and third.get("d") is third.nodes[2]
    cache.set_node(node("c"))  # readable again
    cache.forget(pod("p1"))
    fourth, _ = cache.snapshot()
    assert listed(fourth) == [("a", []), ("b", []), ("c", []), ("d", [])]
    assert [n.name for n in cache.all_node_infos()] == ["a", "b", "c", "d"]
    # What the earlier cycles were handed did not change under them.
    assert first.nodes == first_nodes and listed(first) == [("a", []), ("b", []), ("c", [])]
    assert listed(second) == [("a", []), ("b", ["p1"]), ("c", [])]


def test_the_nodes_with_pods_with_affinity_are_listed_again_only_when_one_changes() -> None:
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{}]}}

    def listed() -> list[str]:
        snapshot, _ = cache.snapshot()
        expected = [n.name for n in snapshot.nodes if n.pods_with_affinity]
        assert [n.name for n in snapshot.with_pod_affinity()] == expected
        return expected

    cache = ClusterCache()
    cache.replace_nodes([node(f"n{i}") for i in range(5)])
    assert listed() == []
    with_anti = pod("a", node_name="n1")
    with_anti["spec"]["affinity"] = anti
    cache.set_pod(with_anti)
    assert listed() == ["n1"]
    first, _ = cache.snapshot()
    cache.set_pod(pod("plain", node_name="n3"))  # a node without such pods: the same list
    second, _ = cache.snapshot()
    assert second.nodes[3] is not first.nodes[3]
    assert second.with_pod_affinity() is first.with_pod_affinity()
    cache.set_pod({**with_anti, "status": {"phase": "Running"}})  # its node's NodeInfo anew
    third, _ = cache.snapshot()
    assert third.with_pod_affinity() == [third.nodes[1]] and third.nodes[1] is not first.nodes[1]
    cache.delete_pod(with_anti)
    assert listed() == []
    cache.set_pod(bound({**with_anti, "metadata": {"name": "b", "uid": "b"}}, "n4"))
    cache.replace_nodes([node(f"n{i}") for i in range(6)])  # a node more: the view anew
    assert listed() == ["n4"]


def test_the_change_log_names_the_nodes_whose_node_info_changed_for_the_plugins() -> None:
    cache = ClusterCache()
    cache.replace_nodes([node("a"), node("b"), node("c")])
    start = cache.view().mark
    q = bound(pod("q", containers=[container(cpu="1")]), "a")
    cache.set_pod(q)
    cache.set_pod({**q, "status": {"phase": "Running"}})  # status only: no change
    cache.set_node(node("b", cpu="8"))
    cache.assume(pod("r"), "c")
    view = cache.view()
    # A pod's change is logged at once; a node's own when the cache next reads it.
    assert cache.changes_between(start, view.mark) == ["a", "c", "b"]
    assert view.by_name["a"].requested.milli_cpu == 1000
    assert cache.changes_between(view.mark, view.mark) == []


def test_a_mark_older_than_the_changes_kept_reads_as_everything_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cache_module, "CHANGES_KEPT", 8)
    cache = ClusterCache()
    cache.replace_nodes([node("a")])
    start = cache.view().mark
    for i in range(10):
        cache.set_pod(bound(pod(f"q{i}"), "a"))
    mark = cache.view().mark
    assert cache.changes_between(start, mark) is None
    assert cache.changes_between(mark - 2, mark) == ["a", "a"]
