"""KubeSchedulerConfiguration loading: the seed's shape, merging, and errors naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubext_scheduler import profiles_file
from kubext_scheduler.framework import profiles
from kubext_scheduler.plugins import registry


def load(*profile_list: dict[str, Any], api: str = profiles.V1) -> profiles.Loaded:
    data = {"apiVersion": api, "kind": "KubeSchedulerConfiguration", "profiles": list(profile_list)}
    return profiles.load(data, registry.REGISTRY, registry.DEFAULTS)


def names(fw, point):
    return [p.name for p in fw.plugins[point]]


SEED_LIKE = {
    "schedulerName": "custom-scheduler",
    "plugins": {
        "preFilter": {
            "enabled": [{"name": "NodeResourceFit"}, {"name": "NodeAffinity"}],
            "disabled": [{"name": "NodeResourcesFit"}],
        },
        "filter": {
            "enabled": [{"name": "NodeResourceFit"}, {"name": "TaintToleration"}],
            "disabled": [{"name": "NodeResourcesFit"}],
        },
        "score": {
            "enabled": [
                {"name": "NodeResourceFit", "weight": 50},
                {"name": "NodeAffinity", "weight": 30},
            ]
        },
    },
    "pluginConfig": [
        {"name": "NodeResourceFit", "args": {"cpuWeight": 3, "memoryWeight": 2, "storageWeight": 1}}
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
        "NodeResourcesBalancedAllocation",
    ]
    assert fw.score_weights == {
        "TaintToleration": 3,
        "NodeAffinity": 30,
        "NodeResourceFit": 50,
        "NodeResourcesBalancedAllocation": 1,
    }
    [fit] = [p for p in fw.plugins["filter"] if p.name == "NodeResourceFit"]
    assert fit.args.weights() == (3, 2, 1)


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
    assert len(names(loaded.frameworks["full"], "score")) == 4


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
                    "filter": {
                        "enabled": [{"name": "NodeResourceFit"}, {"name": "PodTopologySpread"}]
                    }
                }
            },
            r"^profiles\[0\]\.plugins\.filter\.enabled\[1\]\.name: unknown plugin 'PodTopologySpread'",
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
