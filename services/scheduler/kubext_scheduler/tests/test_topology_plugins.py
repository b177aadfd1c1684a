"""PodTopologySpread, InterPodAffinity and DefaultPreemption through the real framework,
against hand-computed expectations of kube-scheduler's semantics."""

from __future__ import annotations

from typing import Any

from kubext_scheduler.framework import profiles
from kubext_scheduler.framework.cycle_state import CycleState
from kubext_scheduler.framework.nodeinfo import Snapshot
from kubext_scheduler.framework.runtime import Framework
from kubext_scheduler.framework.status import Code
from kubext_scheduler.plugins import defaultpreemption, registry
from kubext_scheduler.tests.objects import container, node, pod


def framework(**profile: Any) -> Framework:
    data = {"apiVersion": profiles.V1, "kind": "KubeSchedulerConfiguration", "profiles": [profile]}
    [fw] = profiles.load(data, registry.REGISTRY, registry.DEFAULTS).frameworks.values()
    return fw


def only(point_plugins: dict[str, list[str]], **extra: Any) -> Framework:
    plugins = {
        point: {"disabled": [{"name": "*"}], "enabled": [{"name": n} for n in names]}
        for point, names in point_plugins.items()
    }
    for point in ("preFilter", "filter", "postFilter", "preScore", "score"):
        plugins.setdefault(point, {"disabled": [{"name": "*"}]})
    return framework(plugins=plugins, **extra)


def labelled(name: str, node_name: str | None = None, ns: str = "default", **labels: str):
    p = pod(name, node_name=node_name)
    p["metadata"]["labels"] = dict(labels)
    p["metadata"]["namespace"] = ns
    return p


def filter_reasons(fw: Framework, p: dict, snapshot: Snapshot) -> dict[str, tuple[str, ...]]:
    state = CycleState()
    state.snapshot = snapshot
    pre = fw.run_pre_filter(state, p, snapshot.nodes)
    assert pre.is_success, pre
    return {n.name: fw.run_filter(state, p, n).reasons for n in snapshot.nodes}


# --- PodTopologySpread ----------------------------------------------------------------------

SPREAD = {"preFilter": ["PodTopologySpread"], "filter": ["PodTopologySpread"]}
ZONES = {"n1": "a", "n2": "a", "n3": "b"}


def zoned(*pods: dict, extra_node: dict | None = None) -> Snapshot:
    nodes = [node(n, labels={"zone": z}) for n, z in ZONES.items()]
    if extra_node:
        nodes.append(extra_node)
    return Snapshot.of(nodes, pods)


def spread_pod(max_skew: int = 1, key: str = "zone", **constraint: Any) -> dict:
    p = labelled("new", app="web")
    p["spec"]["topologySpreadConstraints"] = [
        {
            "maxSkew": max_skew,
            "topologyKey": key,
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}},
            **constraint,
        }
    ]
    return p


def test_spread_do_not_schedule_rejects_the_crowded_zone() -> None:
    # zone a: 2 web pods (n1, n2), zone b: 0. Placing in a: 2+1-0 = 3 > 1; in b: 0+1-0 = 1.
    snap = zoned(labelled("w1", "n1", app="web"), labelled("w2", "n2", app="web"))
    reasons = filter_reasons(only(SPREAD), spread_pod(), snap)
    assert reasons == {
        "n1": ("node(s) didn't match pod topology spread constraints",),
        "n2": ("node(s) didn't match pod topology spread constraints",),
        "n3": (),
    }


def test_spread_counts_only_matching_pods_of_the_namespace_and_not_terminating() -> None:
    gone = labelled("w3", "n1", app="web")
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    snap = zoned(
        labelled("w1", "n1", app="web"),
        labelled("other-app", "n1", app="db"),
        labelled("other-ns", "n2", ns="prod", app="web"),
        gone,
    )
    # zone a counts only w1: 1+1-0 = 2 > 1 still rejects with maxSkew 1, passes with 2.
    assert filter_reasons(only(SPREAD), spread_pod(max_skew=2), snap)["n1"] == ()
    assert filter_reasons(only(SPREAD), spread_pod(max_skew=1), snap)["n1"] != ()


def test_spread_node_without_the_key_is_unresolvable_and_min_domains_raises_the_floor() -> None:
    snap = zoned(
        labelled("w1", "n1", app="web"),
        labelled("w2", "n3", app="web"),
        extra_node=node("bare"),
    )
    fw = only(SPREAD)
    state = CycleState()
    state.snapshot = snap
    assert fw.run_pre_filter(state, spread_pod(), snap.nodes).is_success
    bare = fw.run_filter(state, spread_pod(), snap.get("bare"))
    assert bare.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert bare.reasons == (
        "node(s) didn't match pod topology spread constraints (missing required label)",
    )
    # a:1, b:1 -> skew 1 everywhere, fits; with minDomains 3 (only 2 domains) the minimum is 0.
    assert filter_reasons(fw, spread_pod(), snap)["n1"] == ()
    reasons = filter_reasons(fw, spread_pod(minDomains=3), snap)
    assert (
        reasons["n1"] == reasons["n3"] == ("node(s) didn't match pod topology spread constraints",)
    )


def test_spread_node_affinity_policy_honor_leaves_unselected_domains_out() -> None:
    # zone b (n3) holds no web pod but the pod selects zone a only: with Honor (the default)
    # zone b is not a domain, the minimum is zone a's 1, and n1 passes (1+1-1 = 1);
    # with Ignore zone b counts 0 and n1 fails (1+1-0 = 2).
    snap = zoned(labelled("w1", "n1", app="web"))
    honor = spread_pod(nodeAffinityPolicy="Honor")
    honor["spec"]["nodeSelector"] = {"zone": "a"}
    ignore = spread_pod(nodeAffinityPolicy="Ignore")
    ignore["spec"]["nodeSelector"] = {"zone": "a"}
    assert filter_reasons(only(SPREAD), honor, snap)["n1"] == ()
    assert filter_reasons(only(SPREAD), ignore, snap)["n1"] != ()


def test_spread_node_taints_policy_honor_leaves_tainted_domains_out() -> None:
    tainted = node("n3", labels={"zone": "b"}, taints=[{"key": "k", "effect": "NoSchedule"}])
    snap = Snapshot.of(
        [node("n1", labels={"zone": "a"}), tainted], [labelled("w1", "n1", app="web")]
    )
    assert filter_reasons(only(SPREAD), spread_pod(nodeTaintsPolicy="Honor"), snap)["n1"] == ()
    assert filter_reasons(only(SPREAD), spread_pod(), snap)["n1"] != ()  # Ignore by default


def test_spread_match_label_keys_narrow_the_selector_to_the_pods_revision() -> None:
    old = [labelled(f"o{i}", "n1", app="web", rev="1") for i in range(3)]
    p = spread_pod(matchLabelKeys=["rev"])
    p["metadata"]["labels"]["rev"] = "2"
    assert filter_reasons(only(SPREAD), p, zoned(*old))["n1"] == ()  # rev 1 pods not counted
    assert filter_reasons(only(SPREAD), spread_pod(), zoned(*old))["n1"] != ()


def owned(name: str, node_name: str | None, uid: str = "rs-1") -> dict:
    p = labelled(name, node_name, app="web")
    p["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "uid": uid, "controller": True}]
    return p


def test_spread_list_defaults_from_the_seed_filter_pods_of_one_controller() -> None:
    fw = only(
        SPREAD,
        pluginConfig=[
            {
                "name": "PodTopologySpread",
                "args": {
                    "defaultingType": "List",
                    "defaultConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "DoNotSchedule",
                        }
                    ],
                },
            }
        ],
    )
    snap = zoned(owned("r1", "n1"), owned("r2", "n2"), owned("x", "n3", uid="rs-other"))
    reasons = filter_reasons(fw, owned("new", None), snap)
    # Hosts: n1 1, n2 1, n3 0 (the other controller's pod does not count): min 0.
    assert reasons["n3"] == () and reasons["n1"] != () and reasons["n2"] != ()
    # A pod without a controller gets no default constraints: PreFilter skips the plugin.
    state = CycleState()
    assert fw.run_pre_filter(state, labelled("lone"), snap.nodes).is_success
    assert "PodTopologySpread" in state.skip_filter


def scores(fw: Framework, p: dict, snap: Snapshot) -> dict[str, int]:
    state = CycleState()
    state.snapshot = snap
    assert fw.run_pre_score(state, p, snap.nodes).is_success
    totals, result = fw.run_score(state, p, snap.nodes)
    assert result.is_success, result
    [weight] = fw.score_weights.values()  # one plugin: its normalised scores
    return {name: total // weight for name, total in totals.items()}


def test_spread_schedule_anyway_scores_the_emptier_zone_higher() -> None:
    fw = only({"preScore": ["PodTopologySpread"], "score": ["PodTopologySpread"]})
    p = spread_pod()
    p["spec"]["topologySpreadConstraints"][0]["whenUnsatisfiable"] = "ScheduleAnyway"
    snap = zoned(labelled("w1", "n1", app="web"), labelled("w2", "n2", app="web"))
    # 2 zones: weight ln(4) = 1.386; raw a: round(2*1.386) = 3, b: 0.
    # Normalised: 100*(3+0-s)/3 -> a 0, b 100.
    assert scores(fw, p, snap) == {"n1": 0, "n2": 0, "n3": 100}


def test_spread_system_defaults_score_by_host_for_a_controllers_pods() -> None:
    fw = only({"preScore": ["PodTopologySpread"], "score": ["PodTopologySpread"]})
    snap = zoned(owned("r1", "n1"), owned("r2", "n1"), owned("r3", "n2"))
    # System: hostname maxSkew 3, weight ln(3 nodes + 2) = 1.609; zone maxSkew 5 is not scored
    # on nodes without topology.kubernetes.io/zone (but they are not ignored: System
    # defaulting does not require every key). n1: 2*1.609+2 = 5.2 -> 5; n2: 1.609+2 -> 4;
    # n3: 0+2 = 2. Normalised 100*(5+2-s)/5: 40, 60, 100.
    assert scores(fw, owned("new", None), snap) == {"n1": 40, "n2": 60, "n3": 100}


# --- InterPodAffinity -----------------------------------------------------------------------

AFFINITY = {"preFilter": ["InterPodAffinity"], "filter": ["InterPodAffinity"]}


def affine(kind: str, key: str = "zone", **term: Any) -> dict:
    p = labelled("new", app="web")
    body = {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": key, **term}
    p["spec"]["affinity"] = {kind: {"requiredDuringSchedulingIgnoredDuringExecution": [body]}}
    return p


def test_required_affinity_needs_a_matching_pod_in_the_domain() -> None:
    snap = zoned(labelled("db", "n1", app="db"))
    assert filter_reasons(only(AFFINITY), affine("podAffinity"), snap) == {
        "n1": (),
        "n2": (),  # same zone as the db pod
        "n3": ("node(s) didn't match pod affinity rules",),
    }


def test_required_affinity_lets_the_first_pod_of_a_self_matching_group_in() -> None:
    p = affine("podAffinity")
    p["spec"]["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0][
        "labelSelector"
    ] = {"matchLabels": {"app": "web"}}
    assert set(filter_reasons(only(AFFINITY), p, zoned()).values()) == {()}
    # Not self-matching and no pod anywhere: nowhere.
    assert set(filter_reasons(only(AFFINITY), affine("podAffinity"), zoned()).values()) == {
        ("node(s) didn't match pod affinity rules",)
    }


def test_required_anti_affinity_and_existing_pods_anti_affinity() -> None:
    snap = zoned(labelled("db", "n3", app="db"))
    assert filter_reasons(only(AFFINITY), affine("podAntiAffinity"), snap)["n3"] == (
        "node(s) didn't match pod anti-affinity rules",
    )
    # An existing pod on n1 refuses app=web pods in its zone (n1, n2).
    guard = labelled("guard", "n1", app="guard")
    guard["spec"]["affinity"] = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone"}
            ]
        }
    }
    reasons = filter_reasons(only(AFFINITY), labelled("new", app="web"), zoned(guard))
    assert reasons == {
        "n1": ("node(s) didn't satisfy existing pods anti-affinity rules",),
        "n2": ("node(s) didn't satisfy existing pods anti-affinity rules",),
        "n3": (),
    }


def test_affinity_terms_see_their_namespaces_and_namespace_selector() -> None:
    nodes = [node(n, labels={"zone": z}) for n, z in ZONES.items()]
    db = labelled("db", "n3", ns="data", app="db")
    namespaces = [{"metadata": {"name": "data", "labels": {"team": "storage"}}}]
    snap = Snapshot.of(nodes, [db], namespaces=namespaces)
    # Default: the pod's own namespace ("default"): the db pod in "data" does not count.
    assert filter_reasons(only(AFFINITY), affine("podAffinity"), snap)["n3"] != ()
    by_list = affine("podAffinity", namespaces=["data"])
    assert filter_reasons(only(AFFINITY), by_list, snap)["n3"] == ()
    by_selector = affine("podAffinity", namespaceSelector={"matchLabels": {"team": "storage"}})
    assert filter_reasons(only(AFFINITY), by_selector, snap)["n3"] == ()
    wrong = affine("podAffinity", namespaceSelector={"matchLabels": {"team": "web"}})
    assert filter_reasons(only(AFFINITY), wrong, snap)["n3"] != ()


def test_preferred_affinity_and_anti_affinity_score() -> None:
    fw = only({"preScore": ["InterPodAffinity"], "score": ["InterPodAffinity"]})
    p = labelled("new", app="web")
    term = {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}
    p["spec"]["affinity"] = {
        "podAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "podAffinityTerm": term}
            ]
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 4,
                    "podAffinityTerm": {**term, "labelSelector": {"matchLabels": {"app": "cache"}}},
                }
            ]
        },
    }
    snap = zoned(labelled("db", "n1", app="db"), labelled("cache", "n3", app="cache"))
    # Raw: zone a +10 (n1, n2), zone b -4 (n3). Min-max: a 100, b 0.
    assert scores(fw, p, snap) == {"n1": 100, "n2": 100, "n3": 0}


def test_existing_pods_required_affinity_scores_with_hard_pod_affinity_weight() -> None:
    fw = only(
        {"preScore": ["InterPodAffinity"], "score": ["InterPodAffinity"]},
        pluginConfig=[{"name": "InterPodAffinity", "args": {"hardPodAffinityWeight": 5}}],
    )
    friend = labelled("friend", "n3", app="db")
    friend["spec"]["affinity"] = {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone"}
            ]
        }
    }
    assert scores(fw, labelled("new", app="web"), zoned(friend)) == {"n1": 0, "n2": 0, "n3": 100}


# --- DefaultPreemption ----------------------------------------------------------------------

PREEMPT = {
    "preFilter": ["NodeResourceFit"],
    "filter": ["NodeResourceFit", "TaintToleration"],
    "postFilter": ["DefaultPreemption"],
}


def prio(name: str, value: int, cpu: str, node_name: str | None = None, **extra: Any) -> dict:
    p = pod(name, containers=[container(cpu=cpu)], node_name=node_name, priority=value)
    p["metadata"]["labels"] = extra.pop("labels", {})
    p.update(extra)
    return p


def test_preemption_evicts_the_fewest_lowest_priority_pods_on_one_node() -> None:
    nodes = [node("n1", cpu="2"), node("n2", cpu="2")]
    existing = [
        # n1: two 1-cpu pods at priority 10 and 100; n2: one 2-cpu pod at priority 10.
        prio("a", 10, "1", "n1"),
        prio("b", 100, "1", "n1"),
        prio("c", 10, "2", "n2"),
    ]
    result = only(PREEMPT).schedule(prio("high", 1000, "1"), Snapshot.of(nodes, existing))
    assert result.node_name is None
    # n1: evicting a (prio 10, 1 victim) frees 1 cpu; n2: c (prio 10, 1 victim). Tie on
    # highest victim priority (10) and count; the priority sums tie too (10); the start times
    # tie (none started): the first node.
    assert result.nominated_node_name == "n1"
    assert [v["metadata"]["name"] for v in result.victims] == ["a"]


def test_preemption_prefers_the_node_with_the_lower_highest_victim_priority() -> None:
    nodes = [node("n1", cpu="2"), node("n2", cpu="2")]
    existing = [prio("a", 50, "2", "n1"), prio("b", 5, "1", "n2"), prio("c", 5, "1", "n2")]
    result = only(PREEMPT).schedule(prio("high", 1000, "2"), Snapshot.of(nodes, existing))
    assert result.nominated_node_name == "n2"
    assert sorted(v["metadata"]["name"] for v in result.victims) == ["b", "c"]


def test_preemption_never_touches_equal_or_higher_priority_and_respects_never() -> None:
    nodes = [node("n1", cpu="1")]
    existing = [prio("same", 1000, "1", "n1")]
    result = only(PREEMPT).schedule(prio("high", 1000, "1"), Snapshot.of(nodes, existing))
    assert result.nominated_node_name is None and result.victims == ()
    low = [prio("low", 1, "1", "n1")]
    never = prio("high", 1000, "1")
    never["spec"]["preemptionPolicy"] = "Never"
    result = only(PREEMPT).schedule(never, Snapshot.of(nodes, low))
    assert result.nominated_node_name is None and result.victims == ()


def test_preemption_skips_nodes_it_cannot_help() -> None:
    # n1 is tainted (UnschedulableAndUnresolvable): deleting its pod would not help.
    tainted = node("n1", cpu="1", taints=[{"key": "k", "effect": "NoSchedule"}])
    nodes = [tainted, node("n2", cpu="1")]
    existing = [prio("a", 1, "1", "n1"), prio("b", 1, "1", "n2")]
    result = only(PREEMPT).schedule(prio("high", 10, "1"), Snapshot.of(nodes, existing))
    assert result.nominated_node_name == "n2"


def pdb(selector: dict, allowed: int) -> dict:
    return {
        "metadata": {"name": "budget", "namespace": "default"},
        "spec": {"selector": {"matchLabels": selector}},
        "status": {"disruptionsAllowed": allowed},
    }


def test_preemption_prefers_victims_that_violate_no_pdb() -> None:
    nodes = [node("n1", cpu="1"), node("n2", cpu="1")]
    existing = [
        prio("guarded", 1, "1", "n1", labels={"app": "db"}),
        prio("free", 5, "1", "n2", labels={"app": "batch"}),
    ]
    snap = Snapshot.of(nodes, existing, pdbs=[pdb({"app": "db"}, 0)])
    result = only(PREEMPT).schedule(prio("high", 100, "1"), snap)
    # n1's victim has the lower priority but violates the PDB: n2 wins on PDB violations.
    assert result.nominated_node_name == "n2"
    # With room in the budget the lower-priority victim wins.
    snap = Snapshot.of(nodes, existing, pdbs=[pdb({"app": "db"}, 1)])
    assert only(PREEMPT).schedule(prio("high", 100, "1"), snap).nominated_node_name == "n1"


def test_pdb_violations_are_counted_as_upstream() -> None:
    pods = [prio(f"p{i}", 1, "1", "n1", labels={"app": "db"}) for i in range(3)]
    violating, fine = defaultpreemption.split_by_pdb_violation(pods, [pdb({"app": "db"}, 1)])
    assert [p["metadata"]["name"] for p in fine] == ["p0"]
    assert [p["metadata"]["name"] for p in violating] == ["p1", "p2"]
    budget = pdb({"app": "db"}, 0)
    budget["status"]["disruptedPods"] = {"p0": "2026-01-01T00:00:00Z"}
    violating, fine = defaultpreemption.split_by_pdb_violation(pods[:1], [budget])
    assert fine == pods[:1]  # already disrupted: not counted again


def test_preemption_reprieves_the_more_important_pods_that_can_stay() -> None:
    nodes = [node("n1", cpu="3")]
    existing = [prio("p1", 1, "1", "n1"), prio("p2", 2, "1", "n1"), prio("p3", 3, "1", "n1")]
    result = only(PREEMPT).schedule(prio("high", 10, "2"), Snapshot.of(nodes, existing))
    # Needs 2 cpu: p3 then p2 are added back first; p3 stays, p2 does not fit, p1 does not.
    assert [v["metadata"]["name"] for v in result.victims] == ["p2", "p1"]


def test_a_nominated_pod_waits_for_its_terminating_victims() -> None:
    victim = prio("low", 1, "1", "n1")
    victim["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    victim["status"] = {
        "conditions": [
            {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
        ]
    }
    other = prio("other", 1, "1", "n2")
    high = prio("high", 10, "1")
    high["status"] = {"nominatedNodeName": "n1"}
    nodes = [node("n1", cpu="1"), node("n2", cpu="1")]
    result = only(PREEMPT).schedule(high, Snapshot.of(nodes, [victim, other]))
    assert result.nominated_node_name is None and result.victims == ()  # no second preemption
