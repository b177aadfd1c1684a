"""Each plugin through the real framework (a profile built from the registry), against
hand-computed expectations of kube-scheduler's semantics."""

from __future__ import annotations

import random
from typing import Any

import pytest

from kubext_scheduler.framework import profiles
from kubext_scheduler.framework.cycle_state import CycleState
from kubext_scheduler.framework.nodeinfo import NodeInfo, Snapshot
from kubext_scheduler.framework.runtime import Framework
from kubext_scheduler.framework.status import Code
from kubext_scheduler.plugins import noderesourcefit, registry
from kubext_scheduler.tests.objects import container, node, pod


def framework(**profile: Any) -> Framework:
    data = {"apiVersion": profiles.V1, "kind": "KubeSchedulerConfiguration", "profiles": [profile]}
    loaded = profiles.load(data, registry.REGISTRY, registry.DEFAULTS)
    [fw] = loaded.frameworks.values()
    return fw


def only(point_plugins: dict[str, list[str]], **extra: Any) -> Framework:
    """A profile with every default disabled and just these plugins enabled per point."""
    plugins = {
        point: {"disabled": [{"name": "*"}], "enabled": [{"name": n} for n in names]}
        for point, names in point_plugins.items()
    }
    for point in ("preFilter", "filter", "preScore", "score"):
        plugins.setdefault(point, {"disabled": [{"name": "*"}]})
    return framework(plugins=plugins, **extra)


def filter_statuses(fw: Framework, p: dict, nodes: list[NodeInfo]) -> dict[str, Any]:
    state = CycleState()
    assert fw.run_pre_filter(state, p, nodes).is_success
    return {n.name: fw.run_filter(state, p, n) for n in nodes}


# --- NodeResourceFit ------------------------------------------------------------------------

FIT = {"preFilter": ["NodeResourceFit"], "filter": ["NodeResourceFit"]}


@pytest.mark.parametrize(
    ("pod_", "node_", "existing", "reasons"),
    [
        pytest.param(pod(containers=[container(cpu="1")]), node(cpu="2"), [], (), id="fits"),
        pytest.param(
            pod(containers=[container(cpu="1500m")]),
            node(cpu="2"),
            [pod("old", containers=[container(cpu="1")], node_name="n1")],
            ("Insufficient CPU: requested 1500m, available 1000m",),
            id="assumed-pods-count",
        ),
        pytest.param(
            pod(containers=[container(memory="2Gi", ephemeral_storage="2Gi")]),
            node(memory="1Gi", storage="1Gi"),
            [],
            (
                f"Insufficient memory: requested {2 << 30}, available {1 << 30}",
                f"Insufficient storage: requested {2 << 30}, available {1 << 30}",
            ),
            id="every-resource-reported",
        ),
        pytest.param(
            pod(containers=[container(cpu="100m")], init=[container("i", cpu="3")]),
            node(cpu="2"),
            [],
            ("Insufficient CPU: requested 3000m, available 2000m",),
            id="init-container-counted",
        ),
        pytest.param(
            pod(containers=[container(cpu="1900m")], overhead={"cpu": "200m"}),
            node(cpu="2"),
            [],
            ("Insufficient CPU: requested 2100m, available 2000m",),
            id="overhead-counted",
        ),
        pytest.param(
            pod(containers=[container(**{"example.com/gpu": "2"})]),
            node(**{"example.com/gpu": "1"}),
            [],
            ("Insufficient example.com/gpu: requested 2, available 1",),
            id="extended-resource",
        ),
        pytest.param(
            pod(containers=[container(**{"example.com/gpu": "1"})]),
            node(),
            [],
            ("Insufficient example.com/gpu: requested 1, available 0",),
            id="extended-resource-absent",
        ),
        pytest.param(
            pod(), node(pods="1"), [pod("old", node_name="n1")], ("Too many pods",), id="pod-count"
        ),
    ],
)
def test_node_resource_fit_filter(pod_, node_, existing, reasons) -> None:
    info = NodeInfo.of(node_, existing)
    result = filter_statuses(only(FIT), pod_, [info])["n1"]
    assert result.reasons == reasons
    assert result.code is (Code.SUCCESS if not reasons else Code.UNSCHEDULABLE)
    if reasons:
        assert result.plugin == "NodeResourceFit"


def test_node_resource_fit_score_is_weighted_least_allocated() -> None:
    fw = only(
        {"score": ["NodeResourceFit"]},
        pluginConfig=[
            {
                "name": "NodeResourceFit",
                "args": {"cpuWeight": 3, "memoryWeight": 1, "storageWeight": 0},
            }
        ],
    )
    # n1: cpu (1+1)/4 used -> 50, memory (2+2)/8Gi -> 50: 50. n2: cpu 1/4 -> 75, mem 2/8 -> 75.
    p = pod(containers=[container(cpu="1", memory="2Gi")])
    n1 = NodeInfo.of(
        node("n1"), [pod("old", containers=[container(cpu="1", memory="2Gi")], node_name="n1")]
    )
    n2 = NodeInfo.of(node("n2"))
    totals, result = fw.run_score(CycleState(), p, [n1, n2])
    assert result.is_success
    assert totals == {"n1": 50, "n2": 75}
    # cpu 3:1 against memory: n3 has cpu to spare but little memory.
    n3 = NodeInfo.of(node("n3", cpu="8", memory="4Gi"))
    totals, _ = fw.run_score(CycleState(), p, [n3])
    assert totals == {"n3": (87 * 3 + 50 * 1) // 4}


def test_node_resource_fit_zero_weights_mean_equal_weights_and_args_stay_as_given() -> None:
    zero = noderesourcefit.Args(cpuWeight=0, memoryWeight=0, storageWeight=0)
    plugin = noderesourcefit.NodeResourceFit(zero)
    equal = noderesourcefit.NodeResourceFit(noderesourcefit.Args())
    p = pod(containers=[container(cpu="1", memory="1Gi", ephemeral_storage="10Gi")])
    info = NodeInfo.of(node())
    assert plugin.score(CycleState(), p, info) == equal.score(CycleState(), p, info)
    assert (zero.cpuWeight, zero.memoryWeight, zero.storageWeight) == (0, 0, 0)  # seed mutated


def test_best_effort_pods_score_with_the_default_requests() -> None:
    plugin = noderesourcefit.NodeResourceFit()
    info = NodeInfo.of(node(cpu="1", memory="1000Mi", storage="0"))
    # cpu (1000-100)/1000 -> 90, memory (1000-200)/1000 -> 80; storage not reported: skipped.
    assert plugin.score(CycleState(), pod(), info) == (85, None)


# --- NodeName, NodeUnschedulable, TaintToleration, NodeAffinity, NodePorts -------------------


def test_node_name() -> None:
    fw = only({"filter": ["NodeName"]})
    nodes = [NodeInfo.of(node("n1")), NodeInfo.of(node("n2"))]
    got = filter_statuses(fw, pod(node_name="n2"), nodes)
    assert got["n2"].is_success
    assert got["n1"].code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert got["n1"].reasons == ("node(s) didn't match the requested node name",)


def test_node_unschedulable_unless_tolerated() -> None:
    fw = only({"filter": ["NodeUnschedulable"]})
    cordoned = [NodeInfo.of(node(unschedulable=True))]
    assert filter_statuses(fw, pod(), cordoned)["n1"].reasons == ("node(s) were unschedulable",)
    tolerant = pod(tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}])
    assert filter_statuses(fw, tolerant, cordoned)["n1"].is_success


GPU_TAINT = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("tolerations", "ok"),
    [
        pytest.param([], False, id="none"),
        pytest.param([{"key": "dedicated", "value": "gpu"}], True, id="equal-any-effect"),
        pytest.param([{"key": "dedicated", "value": "cpu"}], False, id="other-value"),
        pytest.param(
            [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}], True, id="exists"
        ),
        pytest.param([{"operator": "Exists"}], True, id="exists-every-key"),
        pytest.param(
            [{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}],
            False,
            id="other-effect",
        ),
    ],
)
def test_taint_toleration_filter(tolerations, ok) -> None:
    fw = only({"filter": ["TaintToleration"]})
    got = filter_statuses(
        fw, pod(tolerations=tolerations), [NodeInfo.of(node(taints=[GPU_TAINT]))]
    )["n1"]
    assert got.is_success is ok
    if not ok:
        assert got.reasons == ("node(s) had untolerated taint {dedicated: gpu}",)


def test_taint_toleration_score_prefers_fewer_untolerated_prefer_no_schedule_taints() -> None:
    fw = only({"preScore": ["TaintToleration"], "score": ["TaintToleration"]})
    soft = [{"key": f"k{i}", "value": "v", "effect": "PreferNoSchedule"} for i in range(2)]
    nodes = [
        NodeInfo.of(node("a")),
        NodeInfo.of(node("b", taints=soft[:1])),
        NodeInfo.of(node("c", taints=soft)),
    ]
    totals, _ = fw.run_score(CycleState(), pod(), nodes)
    # Raw 0, 1, 2 untolerated; reversed: 100 - 100*raw/2. Weight 3 by default.
    assert totals == {"a": 300, "b": 150, "c": 0}


def affinity_pod(required=None, preferred=None, **spec) -> dict:
    node_affinity = {}
    if required is not None:
        node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
            "nodeSelectorTerms": required
        }
    if preferred is not None:
        node_affinity["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    return pod(affinity={"nodeAffinity": node_affinity}, **spec)


@pytest.mark.parametrize(
    ("p", "matches"),
    [
        pytest.param(pod(nodeSelector={"zone": "a"}), {"n1"}, id="node-selector"),
        pytest.param(
            affinity_pod(
                [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b", "c"]}]}]
            ),
            {"n2", "n3"},
            id="in",
        ),
        pytest.param(
            affinity_pod(
                [{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]
            ),
            {"n2", "n3", "n4"},
            id="not-in-includes-unlabelled",
        ),
        pytest.param(
            affinity_pod(
                [{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]}]
            ),
            {"n3"},
            id="gt",
        ),
        pytest.param(
            affinity_pod(
                [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n4"]}]},
                ]
            ),
            {"n1", "n4"},
            id="terms-ored-and-match-fields",
        ),
        pytest.param(affinity_pod([{}]), set(), id="empty-term-matches-nothing"),
        pytest.param(
            affinity_pod(
                [{"matchExpressions": [{"key": "zone", "operator": "Exists"}]}],
                nodeSelector={"zone": "c"},
            ),
            {"n3"},
            id="selector-and-affinity-both",
        ),
    ],
)
def test_node_affinity_filter(p, matches) -> None:
    fw = only({"preFilter": ["NodeAffinity"], "filter": ["NodeAffinity"]})
    nodes = [
        NodeInfo.of(node("n1", labels={"zone": "a", "cores": "4"})),
        NodeInfo.of(node("n2", labels={"zone": "b", "cores": "8"})),
        NodeInfo.of(node("n3", labels={"zone": "c", "cores": "16"})),
        NodeInfo.of(node("n4")),
    ]
    got = filter_statuses(fw, p, nodes)
    assert {name for name, s in got.items() if s.is_success} == matches
    rejected = [s for s in got.values() if not s.is_success]
    assert all(
        s.reasons == ("node(s) didn't match Pod's node affinity/selector",) for s in rejected
    )


def test_node_affinity_score_sums_preferred_weights_normalised() -> None:
    fw = only({"preScore": ["NodeAffinity"], "score": ["NodeAffinity"]})
    preferred = [
        {
            "weight": 80,
            "preference": {
                "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]
            },
        },
        {"weight": 20, "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}},
    ]
    nodes = [
        NodeInfo.of(node("n1", labels={"zone": "a", "ssd": "1"})),
        NodeInfo.of(node("n2", labels={"zone": "a"})),
        NodeInfo.of(node("n3", labels={"ssd": "1"})),
    ]
    totals, _ = fw.run_score(CycleState(), affinity_pod(preferred=preferred), nodes)
    assert totals == {"n1": 200, "n2": 160, "n3": 40}  # 100/80/20, weight 2


def test_node_ports() -> None:
    fw = only({"preFilter": ["NodePorts"], "filter": ["NodePorts"]})

    def with_port(name, port, ip=None, node_name=None):
        entry = {"containerPort": 80, "hostPort": port, **({"hostIP": ip} if ip else {})}
        return pod(name, containers=[{"name": "c", "ports": [entry]}], node_name=node_name)

    info = NodeInfo.of(node(), [with_port("old", 8080, ip="10.0.0.1", node_name="n1")])
    assert filter_statuses(fw, with_port("a", 8080), [info])["n1"].reasons == (
        "node(s) didn't have free ports for the requested pod ports",
    )
    assert filter_statuses(fw, with_port("b", 8080, ip="10.0.0.2"), [info])["n1"].is_success
    assert filter_statuses(fw, with_port("c", 9090), [info])["n1"].is_success
    assert filter_statuses(fw, pod(), [info])["n1"].is_success  # PreFilter Skip


def test_balanced_allocation() -> None:
    fw = only(
        {
            "preScore": ["NodeResourcesBalancedAllocation"],
            "score": ["NodeResourcesBalancedAllocation"],
        }
    )
    p = pod(containers=[container(cpu="1", memory="1Gi")])
    # n1: cpu 1/4 = .25, mem 1/8 = .125 -> std .0625 -> 93. n2: 1/2 and 1/2 -> 100.
    nodes = [NodeInfo.of(node("n1")), NodeInfo.of(node("n2", cpu="2", memory="2Gi"))]
    totals, _ = fw.run_score(CycleState(), p, nodes)
    assert totals == {"n1": 93, "n2": 100}
    state = CycleState()
    assert fw.run_pre_score(state, pod(), nodes).is_success
    assert state.skip_score == {"NodeResourcesBalancedAllocation"}


# --- the whole cycle ------------------------------------------------------------------------


def test_schedule_places_on_the_feasible_node_and_explains_the_rest() -> None:
    fw = framework()
    snapshot = Snapshot.of(
        [
            node("small", cpu="500m"),
            node("tainted", taints=[GPU_TAINT]),
            node("free"),
            node("cordoned", unschedulable=True),
        ]
    )
    result = fw.schedule(pod(containers=[container(cpu="1")]), snapshot, rng=random.Random(1))
    assert result.node_name == "free"
    assert result.message() == (
        "0/4 nodes are available: 1 Insufficient cpu, "
        "1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable."
    )


def test_nothing_fits_gives_kube_schedulers_message() -> None:
    fw = framework()
    snapshot = Snapshot.of([node("a", cpu="1"), node("b", cpu="1")])
    result = fw.schedule(pod(containers=[container(cpu="2")]), snapshot)
    assert result.node_name is None
    # The per-node reasons are the seed's; the summary names resources as kube-scheduler does.
    assert result.message() == "0/2 nodes are available: 2 Insufficient cpu."


def test_the_summary_counts_each_resource_by_its_kubernetes_name() -> None:
    fw = framework()
    snapshot = Snapshot.of([node("a", cpu="1", storage="1Gi"), node("b", memory="1Gi")])
    big = container(cpu="2", memory="2Gi", ephemeral_storage="2Gi")
    result = fw.schedule(pod(containers=[big]), snapshot)
    assert result.message() == (
        "0/2 nodes are available: 1 Insufficient cpu, 1 Insufficient ephemeral-storage, "
        "1 Insufficient memory."
    )


def test_an_invalid_pod_is_an_error_not_a_crash() -> None:
    fw = framework()
    result = fw.schedule(pod(containers=[container(cpu="x")]), Snapshot.of([node()]))
    assert result.node_name is None
    assert result.status is not None and result.status.code is Code.ERROR
    assert "spec.containers[0].resources.requests.cpu" in result.status.message


def test_cycle_state_clone_is_independent() -> None:
    state = CycleState()
    state.skip_filter.add("X")
    copy = state.clone()
    copy.skip_filter.add("Y")
    assert state.skip_filter == {"X"}


def test_queue_sort_by_priority_then_age() -> None:
    from kubext_scheduler.framework.interfaces import QueuedPodInfo

    fw = framework()
    high = QueuedPodInfo(pod(priority=10), timestamp=5)
    low_old = QueuedPodInfo(pod(priority=0), timestamp=1)
    low_new = QueuedPodInfo(pod(priority=0), timestamp=2)
    assert fw.less(high, low_old) and fw.less(low_old, low_new) and not fw.less(low_new, low_old)
