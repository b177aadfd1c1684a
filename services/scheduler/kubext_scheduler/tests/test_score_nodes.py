"""The Score fast path: a plugin's ``score_nodes`` gives, node for node, what its ``score``
gives, and the runtime uses it (one call per cycle) where a plugin has it."""

from __future__ import annotations

from typing import Any

import pytest

from kubext_scheduler import profiles_file
from kubext_scheduler.framework import interfaces, runtime
from kubext_scheduler.framework.cycle_state import CycleState
from kubext_scheduler.framework.interfaces import Pod
from kubext_scheduler.framework.nodeinfo import NodeInfo
from kubext_scheduler.framework.runtime import Framework
from kubext_scheduler.framework.status import Status
from kubext_scheduler.plugins import (
    balancedallocation,
    nodeaffinity,
    noderesourcefit,
    tainttoleration,
)
from kubext_scheduler.tests.objects import container, node, pod

SOFT = {"key": "k", "value": "v", "effect": "PreferNoSchedule"}
OTHER_SOFT = {"key": "other", "value": "x", "effect": "PreferNoSchedule"}
HARD = {"key": "k", "value": "v", "effect": "NoSchedule"}


def nodes() -> list[NodeInfo]:
    """Nodes unlike each other: sizes, no ephemeral storage, full, soft and hard taints."""
    return [
        NodeInfo.of(node("small", cpu="1", memory="1Gi")),
        NodeInfo.of(node("big", cpu="64", memory="256Gi", storage="0")),
        NodeInfo.of(
            node("busy", cpu="4", memory="8Gi"),
            [pod(f"b{i}", node_name="busy", containers=[container(cpu="1")]) for i in range(3)],
        ),
        NodeInfo.of(node("over", cpu="1", memory="1Gi"), [pod("o", containers=[container()])]),
        NodeInfo.of(node("soft", taints=[SOFT])),
        NodeInfo.of(node("two-soft", taints=[SOFT, OTHER_SOFT, HARD])),
    ]


PODS = {
    "requests": pod("r", containers=[container(cpu="500m", memory="1Gi")]),
    "best-effort": pod("be"),
    "storage": pod("s", containers=[container(cpu="2", ephemeral_storage="10Gi")]),
    "tolerates-soft": pod("t", containers=[container(cpu="1")], tolerations=[{"key": "k"}]),
}
PLUGINS = {
    "NodeResourceFit": lambda: noderesourcefit.NodeResourceFit(),
    "NodeResourceFit-weighted": lambda: noderesourcefit.NodeResourceFit(
        noderesourcefit.Args(cpuWeight=3, memoryWeight=0, storageWeight=1)
    ),
    "BalancedAllocation": balancedallocation.BalancedAllocation,
    "TaintToleration": tainttoleration.TaintToleration,
}


@pytest.mark.parametrize("plugin_name", PLUGINS)
@pytest.mark.parametrize("pod_name", PODS)
def test_score_nodes_is_score_node_for_node(plugin_name: str, pod_name: str) -> None:
    plugin: Any = PLUGINS[plugin_name]()
    p, infos = PODS[pod_name], nodes()
    one_by_one = CycleState()
    if hasattr(plugin, "pre_score"):
        plugin.pre_score(one_by_one, p, infos)
    expected = [plugin.score(one_by_one, p, n) for n in infos]
    batch = CycleState()
    if hasattr(plugin, "pre_score"):
        plugin.pre_score(batch, p, infos)
    assert isinstance(plugin, interfaces.ScoresNodes)
    assert plugin.score_nodes(batch, p, infos) == [value for value, _ in expected]
    assert all(result is None for _, result in expected)
    assert len({value for value, _ in expected}) > 1  # the nodes do score differently


class _Scorer:
    """Scores 10 per node one by one, 30 + its index in one call: the totals say which ran."""

    name = "Probe"

    def __init__(self, *, batch: bool) -> None:
        self.batch, self.calls = batch, 0

    def score(self, state: CycleState, p: Pod, n: NodeInfo) -> tuple[int, Status | None]:
        self.calls += 1
        return 10, None


class _BatchScorer(_Scorer):
    def score_nodes(self, state: CycleState, p: Pod, ns: Any) -> list[int]:
        self.calls += 1
        return [30 + i for i in range(len(ns))]


@pytest.mark.parametrize("batch", [False, True])
def test_run_score_makes_one_call_per_cycle_to_a_plugin_that_scores_nodes(batch: bool) -> None:
    scorer = _BatchScorer(batch=True) if batch else _Scorer(batch=False)
    fw = Framework(scheduler_name="s", plugins={"score": [scorer]}, score_weights={"Probe": 2})
    infos = [NodeInfo.of(node(f"n{i}")) for i in range(3)]
    totals, result = fw.run_score(CycleState(), pod(), infos)
    assert result.is_success
    if batch:
        assert totals == {"n0": 60, "n1": 62, "n2": 64} and scorer.calls == 1
    else:
        assert totals == {"n0": 20, "n1": 20, "n2": 20} and scorer.calls == 3


@pytest.mark.parametrize(
    "plugin", [tainttoleration.TaintToleration(), nodeaffinity.NodeAffinity()], ids=repr
)
@pytest.mark.parametrize(
    "raw", [[], [0, 0, 0], [0, 3, 1], [7], [2, 2, 5, 0, 1], [-1, 0, 4]], ids=str
)
def test_normalize_values_is_normalize_score_on_a_list(plugin: Any, raw: list[int]) -> None:
    scores = [interfaces.NodeScore(f"n{i}", v) for i, v in enumerate(raw)]
    assert plugin.normalize_score(CycleState(), pod(), scores) is None
    assert plugin.normalize_values(list(raw)) == [s.score for s in scores]


def test_run_score_builds_no_node_score_for_plugins_that_normalize_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []

    class Counted(interfaces.NodeScore):
        def __init__(self, name: str, score: int) -> None:
            built.append(name)
            super().__init__(name, score)

    monkeypatch.setattr(runtime, "NodeScore", Counted)
    [fw] = profiles_file.load(None).frameworks.values()
    infos = nodes()
    state = CycleState()
    p = PODS["requests"]
    assert fw.run_pre_filter(state, p, infos).is_success
    assert fw.run_pre_score(state, p, infos).is_success
    totals, result = fw.run_score(state, p, infos)
    assert result.is_success and set(totals) == {i.name for i in infos}
    assert totals["soft"] < totals["big"]  # TaintToleration's normalised scores counted
    assert built == []


def test_kept_scores_normalise_a_column_of_one_value_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [fw] = profiles_file.load(None).frameworks.values()
    taint = next(p for p in fw.plugins["score"] if p.name == "TaintToleration")
    lengths: list[int] = []
    real = fw._normalize_values["TaintToleration"]

    def counted(values: list[int]) -> list[int]:
        lengths.append(len(values))
        return real(values)

    monkeypatch.setitem(fw._normalize_values, "TaintToleration", counted)
    assert isinstance(taint, tainttoleration.TaintToleration)
    # No PreferNoSchedule taint anywhere: TaintToleration's raw scores are all 0.
    infos = [NodeInfo.of(node(f"n{i}", cpu=str(i + 1))) for i in range(5)]
    p = PODS["requests"]

    def totals(key: bytes) -> dict[str, int]:
        state = CycleState()
        assert fw.run_pre_filter(state, p, infos).is_success
        assert fw.run_pre_score(state, p, infos).is_success
        found, result = fw.run_score(state, p, infos, key=key and fw.score_key(state, p))
        assert result.is_success
        return found

    fresh = totals(b"")
    assert lengths == [5]
    lengths.clear()
    assert totals(b"kept") == fresh and totals(b"kept") == fresh
    assert lengths == [1, 1]
    assert len(set(fresh.values())) > 1  # the other plugins still tell the nodes apart


def test_a_score_out_of_range_names_its_node_on_either_path() -> None:
    class Over(_Scorer):
        name = "Over"

        def normalize_score(self, state: CycleState, p: Pod, scores: Any) -> None:
            raise AssertionError("normalize_values is used")

        def normalize_values(self, values: list[int]) -> list[int]:
            return [101 for _ in values]

    fw = Framework(scheduler_name="s", plugins={"score": [Over(batch=False)]}, score_weights={})
    infos = [NodeInfo.of(node(f"n{i}")) for i in range(3)]
    for key in (b"", b"k"):
        with pytest.raises(runtime.ScoreRangeError, match="plugin Over scored node n0 101"):
            fw.run_score(CycleState(), pod(), infos, key=key)
