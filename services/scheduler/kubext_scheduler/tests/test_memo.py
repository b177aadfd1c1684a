"""The standalone cycle keeps the node-local plugins' verdicts and raw scores per pod signature
(framework.memo) while the node is unchanged: fewer plugin runs, the same decisions."""

from __future__ import annotations

import random
from typing import Any

from kubext_scheduler import profiles_file
from kubext_scheduler.cache import ClusterCache
from kubext_scheduler.framework.cycle_state import CycleState
from kubext_scheduler.framework.nodeinfo import NodeInfo, Snapshot
from kubext_scheduler.framework.runtime import Framework
from kubext_scheduler.tests.objects import container, counting_plugins, node, pod

SOFT_TAINT = {"key": "spot", "value": "true", "effect": "PreferNoSchedule"}
HARD_TAINT = {"key": "gpu", "value": "true", "effect": "NoSchedule"}


def framework() -> Framework:
    [fw] = profiles_file.load(None).frameworks.values()
    return fw


def cluster() -> ClusterCache:
    cache = ClusterCache()
    cache.replace_nodes(
        [
            node("a", cpu="2", labels={"zone": "z1"}),
            node("b", cpu="4", taints=[HARD_TAINT]),
            node("c", cpu="4", taints=[SOFT_TAINT], labels={"zone": "z2"}),
            node("d", cpu="3", labels={"zone": "z2"}),
        ]
    )
    return cache


def schedule(fw: Framework, cache: ClusterCache, p: dict[str, Any]) -> str | None:
    snapshot, _ = cache.snapshot()
    result = fw.schedule(p, snapshot, state=CycleState(), rng=random.Random(0))
    if result.node_name:
        cache.assume(p, result.node_name)
    return result.node_name


def test_alike_pods_rerun_the_node_local_plugins_only_on_the_nodes_changed_since() -> None:
    fw, cache = framework(), cluster()
    filtered, scored = counting_plugins(fw)
    first = schedule(fw, cache, pod("p1", containers=[container(cpu="1")]))
    assert sorted(filtered) == ["a", "b", "c", "d"]
    assert first is not None and set(scored) == {"a", "c", "d"}
    filtered.clear()
    scored.clear()
    # Alike (other name, uid, image, volumes): only the node the first was assumed on runs.
    alike = pod("p2", containers=[{**container(cpu="1"), "image": "x"}], volumes=[{"name": "v"}])
    second = schedule(fw, cache, alike)
    assert filtered == [first]
    assert scored and set(scored) == {first}
    filtered.clear()
    # A pod asking something else is filtered on every node.
    schedule(fw, cache, pod("p3", containers=[container(cpu="1500m")]))
    assert sorted(filtered) == ["a", "b", "c", "d"]
    assert second is not None


def test_kept_verdicts_and_scores_give_the_decisions_of_fresh_cycles() -> None:
    def run(keep: bool) -> list[tuple[str | None, dict[str, int]]]:
        fw, cache = framework(), cluster()
        if not keep:
            fw.filter_key = lambda state, p: b""  # type: ignore[method-assign]
            fw.score_key = lambda state, p: b""  # type: ignore[method-assign]
        out = []
        for i in range(14):  # the nodes fill up: verdicts and scores change as they do
            p = pod(f"p{i}", containers=[container(cpu=("500m", "1", "300m")[i % 3])])
            if i % 4 == 0:
                p["spec"]["tolerations"] = [{"key": "spot", "operator": "Exists"}]
            snapshot, _ = cache.snapshot()
            result = fw.schedule(p, snapshot, state=CycleState(), rng=random.Random(i))
            if result.node_name:
                cache.assume(p, result.node_name)
            out.append((result.node_name, result.scores))
        return out

    kept, fresh = run(True), run(False)
    assert kept == fresh
    assert [n for n, _ in kept].count(None) > 0  # it ran until some pod fit nowhere


def test_a_node_info_changed_in_place_is_filtered_again() -> None:
    fw = framework()
    infos = [NodeInfo.of(node("a", cpu="2")), NodeInfo.of(node("b", cpu="2"))]
    p = pod("p1", containers=[container(cpu="1500m")])
    first = fw.schedule(p, Snapshot(infos), state=CycleState(), rng=random.Random(0))
    assert first.node_name in ("a", "b") and not first.statuses
    for info in infos:  # a caller filling the nodes in place (the cache never does)
        info.add_pod(pod(f"on-{info.name}", containers=[container(cpu="1")], node_name=info.name))
    again = fw.schedule(pod("p2", containers=[container(cpu="1500m")]), Snapshot(infos))
    assert again.node_name is None
    assert sorted(again.statuses) == ["a", "b"]


def test_pods_with_spread_constraints_are_filtered_on_every_node_each_cycle() -> None:
    fw, cache = framework(), cluster()
    filtered, _ = counting_plugins(fw)
    constraint = {
        "maxSkew": 1,
        "topologyKey": "zone",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "x"}},
    }
    for name in ("s1", "s2"):
        p = pod(name, topologySpreadConstraints=[constraint])
        p["metadata"]["labels"] = {"app": "x"}
        schedule(fw, cache, p)
    assert sorted(filtered) == sorted(["a", "b", "c", "d"] * 2)


def test_what_is_kept_outlives_cycles_that_score_a_few_of_many_nodes() -> None:
    # 90 nodes, the pods select the 3 of pool a: 3 candidates scored of 90 nodes kept.
    fw, cache = framework(), ClusterCache()
    cache.replace_nodes(
        [node(f"n{i:02d}", labels={"pool": "a" if i % 30 == 0 else "b"}) for i in range(90)]
    )
    filtered, scored = counting_plugins(fw)
    first = schedule(fw, cache, pod("p1", nodeSelector={"pool": "a"}))
    assert len(filtered) == 90 and set(scored) == {"n00", "n30", "n60"}
    filtered.clear()
    scored.clear()
    schedule(fw, cache, pod("p2", nodeSelector={"pool": "a"}))
    assert filtered == [first]
    assert set(scored) == {first}


def test_a_bound_pods_status_updates_keep_its_nodes_verdicts_and_scores() -> None:
    fw, cache = framework(), cluster()
    filtered, scored = counting_plugins(fw)
    first = pod("p1", containers=[container(cpu="1")])
    on = schedule(fw, cache, first)
    assert on is not None
    schedule(fw, cache, pod("p2", containers=[container(cpu="1")]))  # sees the assumption
    filtered.clear()
    scored.clear()
    # The watch: p1 bound (the assumed spec), then Running (kwok's status): new NodeInfos of
    # its node that the node-local plugins cannot tell from the one they last read.
    bound = {**first, "spec": {**first["spec"], "nodeName": on}, "status": {"phase": "Pending"}}
    cache.set_pod(bound)
    cache.set_pod({**bound, "status": {"phase": "Running", "podIP": "10.0.0.9"}})
    [info], _, _ = cache.node_infos([on])
    assert [p["status"]["phase"] for p in info.pods if p["metadata"]["name"] == "p1"] == ["Running"]
    third = schedule(fw, cache, pod("p3", containers=[container(cpu="1")]))
    assert third is not None
    assert on not in filtered and on not in scored
    # A changed spec is read again.
    cache.set_pod({**bound, "spec": {**bound["spec"], "priority": 5}})
    schedule(fw, cache, pod("p4", containers=[container(cpu="1")]))
    assert on in filtered
