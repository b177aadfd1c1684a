"""What `up` does with the cluster it finds, and one real node per machine: the second cluster
comes up without one and says so (pure decisions and the claim file, without root)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubext_rig import __main__ as cli
from kubext_rig import cluster, node

HEALTHY = {"etcd": "healthy", "kube-apiserver": "healthy"}
STOPPED = {"etcd": "stopped", "kube-apiserver": "stopped"}
NODE_OK = {"containerd": "healthy", "kubelet": "healthy"}
OTHER = Path("/other/cluster")


def plan(**kw: object) -> cluster.UpPlan:
    args: dict[str, object] = {
        "control": HEALTHY,
        "node_enabled": False,
        "node_status": {},
        "real_node": True,
        "elsewhere": None,
        "require_real_node": False,
    }
    return cluster.plan_up(**{**args, **kw})  # type: ignore[arg-type]


def test_a_stopped_cluster_starts_with_the_free_real_node() -> None:
    assert plan(control=STOPPED) == cluster.UpPlan(False, False, True, None)


def test_a_stopped_cluster_starts_without_the_real_node_another_holds() -> None:
    assert plan(control=STOPPED, elsewhere=OTHER) == cluster.UpPlan(False, False, False, OTHER)


def test_required_but_held_by_another_is_refused() -> None:
    got = plan(control=STOPPED, elsewhere=OTHER, require_real_node=True)
    assert got.refuse and not got.reuse and not got.with_real_node


def test_a_healthy_cluster_whose_node_is_elsewhere_is_reused_as_it_is() -> None:
    assert plan(elsewhere=OTHER) == cluster.UpPlan(True, False, False, OTHER)


def test_a_healthy_cluster_without_the_free_node_restarts_to_get_it() -> None:
    assert plan() == cluster.UpPlan(False, True, True, None)


def test_a_healthy_cluster_with_its_node_is_reused() -> None:
    assert plan(node_enabled=True, node_status=NODE_OK).reuse


def test_without_a_real_node_asked_a_healthy_control_plane_is_reused_whatever_its_node() -> None:
    # A test that kills the CNI daemon for a while must not make every fixture restart the cluster.
    dead_cni = {**NODE_OK, "kubext-cni": "stopped"}
    got = plan(real_node=False, node_enabled=True, node_status=dead_cni)
    assert got == cluster.UpPlan(True, False, False, None)


def test_the_cli_asks_for_the_node_by_default_and_requires_it_only_with_the_flag(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(
        cluster, "up", lambda **kw: calls.append(kw) or cluster.ClusterInfo(tmp_path)
    )
    for argv in (["up"], ["up", "--real-node"], ["up", "--no-real-node"]):
        assert cli.main(argv) == 0
    assert [(c["real_node"], c["require_real_node"]) for c in calls] == [
        (True, False),
        (True, True),
        (False, False),
    ]


def test_status_says_without_a_real_node_and_stays_healthy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBEXT_RIG_DIR", str(tmp_path))
    monkeypatch.setattr(cluster, "status_of_control_plane", lambda root: dict(HEALTHY))
    monkeypatch.setattr(node, "status", lambda root: {})
    monkeypatch.setattr(cli.stack, "status", lambda root: {})
    cluster._go_without_real_node(tmp_path, OTHER)
    line = capsys.readouterr().err.strip().splitlines()
    assert len(line) == 1 and "comes up without a real node" in line[0] and str(OTHER) in line[0]
    assert cli.main(["status"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st[cluster.NO_REAL_NODE_KEY] == node.without_real_node(OTHER)
    assert "without a real node" in st[cluster.NO_REAL_NODE_KEY]
    monkeypatch.setattr(cluster, "status_of_control_plane", lambda root: {"etcd": "stopped"})
    assert cli.main(["status"]) == 3  # the note does not hide a stopped component


def test_a_held_real_node_is_gone_without_when_not_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = tmp_path / "claim"
    monkeypatch.setattr(node, "MACHINE_CLAIM", claim)
    other, mine = tmp_path / "other", tmp_path / "mine"
    claim.write_text(str(other))
    monkeypatch.setattr(cluster, "running_pid", lambda root, name: 4242 if root == other else None)
    assert node.taken_elsewhere(mine) == other and node.taken_elsewhere(other) is None
    assert node.machine_owner() == other
    assert node._claim(mine, required=False) is False
    assert claim.read_text() == str(other)
    assert node.prepare_host(mine, required=False) is False  # touches nothing of the host
    assert not (mine / "node").exists()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def probes(*answers: dict[str, str]):  # type: ignore[no-untyped-def]
    seq = list(answers)
    calls: list[int] = []

    def probe() -> dict[str, str]:
        calls.append(1)
        return seq.pop(0) if len(seq) > 1 else seq[0]

    return probe, calls


def test_a_probe_that_fails_once_does_not_make_up_restart_a_running_cluster() -> None:
    # The restart's `down` would take the real node and every test's cluster with it.
    clock = FakeClock()
    probe, calls = probes({"etcd": "healthy", "kube-apiserver": "unhealthy"}, HEALTHY)
    states = cluster.settled(probe, clock=clock, sleep=clock.sleep)
    assert states == HEALTHY
    assert len(calls) == 2
    assert plan(control=states, real_node=False).reuse


def test_a_component_that_stays_unhealthy_is_reported_after_the_patience() -> None:
    clock = FakeClock()
    sick = {"etcd": "healthy", "kube-apiserver": "unhealthy"}
    probe, calls = probes(sick)
    assert cluster.settled(probe, patience=10, clock=clock, sleep=clock.sleep) == sick
    assert 10 <= clock.now <= 11 and len(calls) == 11
    assert plan(control=sick, real_node=False).restart


def test_a_stopped_component_is_final_at_once() -> None:
    clock = FakeClock()
    probe, calls = probes({"etcd": "stopped", "kube-apiserver": "unhealthy"}, HEALTHY)
    assert cluster.settled(probe, clock=clock, sleep=clock.sleep)["etcd"] == "stopped"
    assert len(calls) == 1 and clock.now == 0
