"""KubeSchedulerConfiguration loading: the seed's shape, merging, and errors naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubext_scheduler import profiles_file
from kubext_scheduler.framework import profiles
from kubext_scheduler.framework.nodeinfo import Snapshot
from kubext_scheduler.framework.runtime import num_feasible_nodes_to_find
from kubext_scheduler.plugins import registry
from kubext_scheduler.tests.objects import node, pod


def load(*profile_list: dict[str, Any], api: str = profiles.V1) -> profiles.Loaded:
    data = {"apiVersion": api, "kind": "KubeSchedulerConfiguration", "profiles": list(profile_list)}
    return profiles.load(data, registry.REGISTRY, registry.DEFAULTS)


def names(fw, point):
    return [p.name for p in fw.plugins[point]]


SEED_SPREAD = [
    {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"},
    {
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "ScheduleAnyway",
    },
]

SEED_LIKE = {
    "schedulerName": "custom-scheduler",
    "plugins": {
        "preFilter": {
            "enabled": [
                {"name": "NodeResourceFit"},
                {"name": "NodeAffinity"},
                {"name": "PodTopologySpread"},
            ],
            "disabled": [{"name": "NodeResourcesFit"}],
        },
        "filter": {
            "enabled": [
                {"name": "NodeResourceFit"},
                {"name": "NodeAffinity"},
                {"name": "PodTopologySpread"},
                {"name": "TaintToleration"},
            ],
            "disabled": [{"name": "NodeResourcesFit"}],
        },
        "score": {
            "enabled": [
                {"name": "NodeResourceFit", "weight": 50},
                {"name": "NodeAffinity", "weight": 30},
                {"name": "PodTopologySpread", "weight": 20},
            ]
        },
    },
    "pluginConfig": [
        {
            "name": "NodeResourceFit",
            "args": {"cpuWeight": 3, "memoryWeight": 2, "storageWeight": 1},
        },
        # The seed's default constraints; kube-scheduler needs defaultingType: List for them.
        {
            "name": "PodTopologySpread",
            "args": {"defaultingType": "List", "defaultConstraints": SEED_SPREAD},
        },
    ],
}


def test_the_seeds_profile_shape_loads_with_its_weights_and_args() -> None:
    loaded = load(SEED_LIKE)
    fw = loaded.frameworks["custom-scheduler"]
    assert loaded.warnings == []
    # Defaults re-enabled in place keep their position; the custom weights replace the defaults.
    assert names(fw, "score") == [
        "TaintToleration",
        "NodeAffinity",
        "NodeResourceFit",
        "PodTopologySpread",
        "InterPodAffinity",
        "NodeResourcesBalancedAllocation",
    ]
    assert fw.score_weights == {
        "TaintToleration": 3,
        "NodeAffinity": 30,
        "NodeResourceFit": 50,
        "PodTopologySpread": 20,
        "InterPodAffinity": 2,
        "NodeResourcesBalancedAllocation": 1,
    }
    [fit] = [p for p in fw.plugins["filter"] if p.name == "NodeResourceFit"]
    assert fit.args.weights() == (3, 2, 1)
    [spread] = [p for p in fw.plugins["filter"] if p.name == "PodTopologySpread"]
    assert [(c.topologyKey, c.maxSkew, c.whenUnsatisfiable) for c in spread.defaults] == [
        ("kubernetes.io/hostname", 1, "DoNotSchedule"),
        ("topology.kubernetes.io/zone", 1, "ScheduleAnyway"),
    ]


def test_the_default_profile_has_kube_schedulers_spread_affinity_and_preemption() -> None:
    fw = load({}).frameworks["kubext-scheduler"]
    assert fw.score_weights["PodTopologySpread"] == 2
    assert fw.score_weights["InterPodAffinity"] == 2
    assert names(fw, "filter")[-2:] == ["PodTopologySpread", "InterPodAffinity"]
    assert names(fw, "postFilter") == ["DefaultPreemption"]
    [spread] = [p for p in fw.plugins["filter"] if p.name == "PodTopologySpread"]
    # defaultingType System: kube-scheduler's own defaults.
    assert [(c.topologyKey, c.maxSkew, c.whenUnsatisfiable) for c in spread.defaults] == [
        ("kubernetes.io/hostname", 3, "ScheduleAnyway"),
        ("topology.kubernetes.io/zone", 5, "ScheduleAnyway"),
    ]


def test_v1beta3_is_accepted_with_a_warning() -> None:
    loaded = load(SEED_LIKE, api=profiles.V1BETA3)
    [warning] = loaded.warnings
    assert "v1beta3 was removed" in warning and profiles.V1 in warning


def test_several_profiles_by_scheduler_name_and_star_disables_defaults() -> None:
    lean = {
        "schedulerName": "lean",
        "plugins": {
            "score": {"disabled": [{"name": "*"}], "enabled": [{"name": "NodeResourceFit"}]}
        },
    }
    loaded = load({"schedulerName": "full"}, lean)
    assert set(loaded.frameworks) == {"full", "lean"}
    assert names(loaded.frameworks["lean"], "score") == ["NodeResourceFit"]
    assert len(names(loaded.frameworks["full"], "score")) == 6


def test_multi_point_enables_a_plugin_everywhere_it_extends() -> None:
    profile = {
        "plugins": {
            "preFilter": {"disabled": [{"name": "*"}]},
            "filter": {"disabled": [{"name": "*"}]},
            "multiPoint": {"enabled": [{"name": "NodePorts"}]},
        }
    }
    fw = load(profile).frameworks["kubext-scheduler"]
    assert names(fw, "preFilter") == ["NodePorts"] and names(fw, "filter") == ["NodePorts"]


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        pytest.param(
            {
                "plugins": {
                    "filter": {"enabled": [{"name": "NodeResourceFit"}, {"name": "VolumeZone"}]}
                }
            },
            r"^profiles\[0\]\.plugins\.filter\.enabled\[1\]\.name: unknown plugin 'VolumeZone'",
            id="unknown-plugin",
        ),
        pytest.param(
            {"plugins": {"score": {"enabled": [{"name": "NodeName"}]}}},
            r"^profiles\[0\]\.plugins\.score\.enabled\[0\]\.name: plugin NodeName does not extend score",
            id="wrong-point",
        ),
        pytest.param(
            {"plugins": {"score": {"enabled": [{"name": "NodeResourceFit", "weight": -1}]}}},
            r"^profiles\.0\.plugins\.score\.enabled\.0\.weight: Input should be greater than or equal to 0",
            id="negative-weight",
        ),
        pytest.param(
            {"plugins": {"score": {"enabled": [{"name": "NodeResourceFit", "weight": "heavy"}]}}},
            r"^profiles\.0\.plugins\.score\.enabled\.0\.weight: Input should be a valid integer",
            id="weight-not-a-number",
        ),
        pytest.param(
            {"pluginConfig": [{"name": "NodeResourceFit", "args": {"cpuWeight": 200}}]},
            r"^profiles\[0\]\.pluginConfig\[0\]\.args\.cpuWeight: Input should be less than or equal to 100",
            id="bad-arg-value",
        ),
        pytest.param(
            {"pluginConfig": [{"name": "NodeResourceFit", "args": {"gpuWeight": 1}}]},
            r"^profiles\[0\]\.pluginConfig\[0\]\.args\.gpuWeight: unknown field",
            id="unknown-arg",
        ),
        pytest.param(
            {"pluginConfig": [{"name": "NodeName", "args": {"x": 1}}]},
            r"^profiles\[0\]\.pluginConfig\[0\]\.args: plugin NodeName takes no args",
            id="args-for-a-plugin-without-args",
        ),
        pytest.param(
            {"pluginConfig": [{"name": "Coscheduling", "args": {}}]},
            r"^profiles\[0\]\.pluginConfig\[0\]\.name: unknown plugin 'Coscheduling'",
            id="config-for-unknown-plugin",
        ),
        pytest.param(
            {"plugins": {"queueSort": {"disabled": [{"name": "*"}]}}},
            r"^profiles\[0\]\.plugins\.queueSort: exactly one plugin must be enabled, not 0",
            id="no-queue-sort",
        ),
        pytest.param(
            {
                "pluginConfig": [
                    {"name": "PodTopologySpread", "args": {"defaultConstraints": SEED_SPREAD}}
                ]
            },
            r"^profiles\[0\]\.pluginConfig\[0\]\.args: .*defaultingType: Invalid value: \"System\": "
            r"when \.defaultConstraints are not empty",
            id="seed-spread-args-without-list",
        ),
        pytest.param(
            {
                "pluginConfig": [
                    {
                        "name": "PodTopologySpread",
                        "args": {
                            "defaultingType": "List",
                            "defaultConstraints": [
                                {
                                    "maxSkew": 0,
                                    "topologyKey": "zone",
                                    "whenUnsatisfiable": "DoNotSchedule",
                                }
                            ],
                        },
                    }
                ]
            },
            r"^profiles\[0\]\.pluginConfig\[0\]\.args\.defaultConstraints\.0\.maxSkew: Input should be greater than 0",
            id="spread-max-skew-zero",
        ),
        pytest.param(
            {"pluginConfig": [{"name": "PodTopologySpread", "args": {"defaultingType": "Zone"}}]},
            r"^profiles\[0\]\.pluginConfig\[0\]\.args\.defaultingType: Input should be 'System' or 'List'",
            id="spread-bad-defaulting-type",
        ),
        pytest.param(
            {
                "pluginConfig": [
                    {"name": "InterPodAffinity", "args": {"hardPodAffinityWeight": 101}}
                ]
            },
            r"^profiles\[0\]\.pluginConfig\[0\]\.args\.hardPodAffinityWeight: Input should be less than or equal to 100",
            id="hard-pod-affinity-weight",
        ),
        pytest.param(
            {
                "pluginConfig": [
                    {
                        "name": "DefaultPreemption",
                        "args": {"minCandidateNodesPercentage": 0, "minCandidateNodesAbsolute": 0},
                    }
                ]
            },
            r"^profiles\[0\]\.pluginConfig\[0\]\.args: .*cannot both be zero",
            id="preemption-both-zero",
        ),
        pytest.param(
            {"plugin": {}},
            r"^profiles\.0\.plugin: unknown field",
            id="unknown-profile-field",
        ),
    ],
)
def test_errors_name_the_field(profile: dict, message: str) -> None:
    with pytest.raises(profiles.ProfileError, match=message):
        load(profile)


def test_duplicate_scheduler_names() -> None:
    with pytest.raises(
        profiles.ProfileError, match=r"^profiles\[1\]\.schedulerName: 'a' names an earlier"
    ):
        load({"schedulerName": "a"}, {"schedulerName": "a"})


def test_the_file_loader_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sched.yaml"
    path.write_text(
        "apiVersion: kubescheduler.config.k8s.io/v1alpha1\nkind: KubeSchedulerConfiguration\n"
    )
    with pytest.raises(profiles.ProfileError, match=rf"^{path}: apiVersion: Input should be"):
        profiles_file.load(str(path))
    assert set(profiles_file.load(None).frameworks) == {"kubext-scheduler"}


# --- percentageOfNodesToScore ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("percentage", "nodes", "wanted"),
    [
        (None, 50, 50),  # under 100 nodes: all of them
        (None, 100, 100),
        (None, 1000, 420),  # adaptive: 50% - 1000/125 = 42%
        (0, 1000, 420),
        (None, 5000, 500),  # 10%
        (None, 10000, 500),  # never under 5%
        (30, 1000, 300),
        (1, 1000, 100),  # never under 100 nodes
        (100, 1000, 1000),
    ],
)
def test_num_feasible_nodes_to_find_is_kube_schedulers(percentage, nodes, wanted) -> None:
    assert num_feasible_nodes_to_find(percentage, nodes) == wanted


def test_percentage_of_nodes_to_score_from_the_profile_else_the_configuration() -> None:
    data = {
        "apiVersion": profiles.V1,
        "kind": "KubeSchedulerConfiguration",
        "percentageOfNodesToScore": 20,
        "profiles": [{"schedulerName": "a"}, {"schedulerName": "b", "percentageOfNodesToScore": 7}],
    }
    loaded = profiles.load(data, registry.REGISTRY, registry.DEFAULTS)
    assert loaded.frameworks["a"].percentage_of_nodes_to_score == 20
    assert loaded.frameworks["b"].percentage_of_nodes_to_score == 7
    [fw] = load({"schedulerName": "c"}).frameworks.values()
    assert fw.percentage_of_nodes_to_score is None


def test_a_cycle_stops_at_the_feasible_nodes_to_find_and_the_next_starts_after() -> None:
    [fw] = load({"schedulerName": "s", "percentageOfNodesToScore": 10}).frameworks.values()
    nodes = [node(f"n{i:03d}") for i in range(300)]
    snapshot = Snapshot.of(nodes)
    first = fw.schedule(pod("p1"), snapshot)
    assert first.feasible == [f"n{i:03d}" for i in range(100)]  # 10% is 30: at least 100
    assert first.evaluated == 100 and first.node_name in first.feasible
    second = fw.schedule(pod("p2"), snapshot)
    assert second.feasible == [f"n{i:03d}" for i in range(100, 200)]
    third = fw.schedule(pod("p3"), Snapshot.of(nodes[:150]))  # the start wraps round
    assert third.feasible[:2] == ["n050", "n051"] and len(third.feasible) == 100
