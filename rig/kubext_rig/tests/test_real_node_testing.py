"""The real-node harness without a real node: `up` always brings the cluster down, and which
failure it reports."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kubext_rig import real_node_testing


def _fake_rig(
    monkeypatch: pytest.MonkeyPatch, codes: dict[str, int]
) -> list[tuple[Path, tuple[str, ...]]]:
    calls: list[tuple[Path, tuple[str, ...]]] = []

    def rig(state: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        calls.append((state, args))
        return subprocess.CompletedProcess(args, codes[args[0]], "", f"{args[0]} said no")

    monkeypatch.setattr(real_node_testing, "rig", rig)
    monkeypatch.setattr(real_node_testing.node, "machine_owner", lambda: None)  # a free machine
    return calls


def test_up_brings_its_own_cluster_up_and_down(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = _fake_rig(monkeypatch, {"up": 0, "down": 0})
    with real_node_testing.up(tmp_path) as real:
        assert real.state == tmp_path and real.started.returncode == 0
        assert real.info.kubeconfig == str(tmp_path / "admin.kubeconfig")
        assert calls == [(tmp_path, ("up", "--fresh", "--real-node", "--nodes", "1"))]
    assert calls[-1] == (tmp_path, ("down",))
    assert real.stopped is not None and real.stopped.returncode == 0


def test_a_failed_up_fails_and_still_brings_it_down(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = _fake_rig(monkeypatch, {"up": 1, "down": 0})
    with pytest.raises(AssertionError, match="up said no"), real_node_testing.up(tmp_path):
        pytest.fail("the block runs only on a cluster that came up")
    assert [args[0] for _, args in calls] == ["up", "down"]


def test_a_failed_down_fails_a_clean_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_rig(monkeypatch, {"up": 0, "down": 1})
    with pytest.raises(AssertionError, match="down said no"), real_node_testing.up(tmp_path):
        pass


def test_a_failure_inside_wins_over_down(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = _fake_rig(monkeypatch, {"up": 0, "down": 1})
    with pytest.raises(AssertionError, match="the test's own"), real_node_testing.up(tmp_path):
        raise AssertionError("the test's own")
    assert [args[0] for _, args in calls] == ["up", "down"]


def test_unchecked_up_leaves_the_verdict_to_the_caller(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    said: list[str] = []
    _fake_rig(monkeypatch, {"up": 1, "down": 1})
    with real_node_testing.up(tmp_path, check=False, say=said.append) as real:
        assert real.started.returncode == 1
    assert real.stopped is not None and real.stopped.returncode == 1
    assert said == ["down: exit 1"]


def test_pod_runs_a_rig_image_on_the_real_node_with_its_claim() -> None:
    pod = real_node_testing.pod(
        "w", "write-read", ["write"], grace_seconds=2, restart_policy="Never", claim="c"
    )
    spec = pod.spec
    assert spec.node_selector == {"kubernetes.io/hostname": real_node_testing.node.NODE_NAME}
    assert spec.tolerations == real_node_testing.TOLERATE
    assert (spec.termination_grace_period_seconds, spec.restart_policy) == (2, "Never")
    (container,) = spec.containers
    assert container.image == real_node_testing.node.image_ref("write-read")
    assert container.image_pull_policy == "Never" and container.args == ["write"]
    assert [(m.name, m.mount_path) for m in container.volume_mounts] == [("data", "/data")]
    assert [(v.name, v.persistent_volume_claim.claim_name) for v in spec.volumes] == [("data", "c")]
    plain = real_node_testing.pod("p", "pause").spec
    assert plain.volumes is None and plain.containers[0].resources is None


def _shared_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The environment names a cluster (KUBEXT_RIG_DIR) that holds the machine's real node."""
    shared = tmp_path / "test-cluster"
    monkeypatch.setenv("KUBEXT_RIG_DIR", str(shared))
    monkeypatch.setattr(real_node_testing.node, "machine_owner", lambda: shared)
    return shared


def test_the_shared_clusters_real_node_is_used_and_left_running(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shared = _shared_machine(monkeypatch, tmp_path)
    own = tmp_path / "own"
    assert real_node_testing.state_for(own) == shared
    assert real_node_testing.offset_of(shared) == real_node_testing.cluster.PORT_OFFSET
    assert real_node_testing.offset_of(own) == real_node_testing.OFFSET
    env = real_node_testing.rig_env(shared)
    assert env["KUBEXT_RIG_DIR"] == str(shared)
    assert env["KUBEXT_RIG_PORT_OFFSET"] == str(real_node_testing.cluster.PORT_OFFSET)
    calls: list[tuple[Path, tuple[str, ...]]] = []
    healthy = {n: "healthy" for n in (*real_node_testing.node.COMPONENTS, "kube-apiserver")}

    def rig(state: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        calls.append((state, args))
        return subprocess.CompletedProcess(args, 0, json.dumps(healthy), "")

    monkeypatch.setattr(real_node_testing, "rig", rig)
    with real_node_testing.up(shared) as real:
        assert real.shared and real.state == shared and real.started.returncode == 0
        assert real.registry == real_node_testing.node.REGISTRY
    assert calls == [(shared, ("status",))]  # neither up nor down
    assert real.stopped is None


def test_an_unhealthy_shared_real_node_fails_naming_its_status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shared = _shared_machine(monkeypatch, tmp_path)
    sick = json.dumps({"kube-apiserver": "healthy", "kubelet": "stopped"})
    monkeypatch.setattr(
        real_node_testing,
        "rig",
        lambda state, *args, timeout=600: subprocess.CompletedProcess(args, 3, sick, ""),
    )
    monkeypatch.setattr(real_node_testing, "SHARED_NODE_TIMEOUT", 0)
    with pytest.raises(AssertionError, match='"kubelet": "stopped"'), real_node_testing.up(shared):
        pytest.fail("the block runs only on a healthy real node")


def test_a_cluster_without_the_machines_real_node_is_not_shared(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KUBEXT_RIG_DIR", str(tmp_path / "test-cluster"))
    monkeypatch.setattr(real_node_testing.node, "machine_owner", lambda: tmp_path / "elsewhere")
    assert real_node_testing.state_for(tmp_path / "own") == tmp_path / "own"
    monkeypatch.setattr(real_node_testing.node, "machine_owner", lambda: None)
    assert real_node_testing.shared_state() is None
    monkeypatch.delenv("KUBEXT_RIG_DIR")
    monkeypatch.setattr(real_node_testing.node, "machine_owner", lambda: tmp_path / "test-cluster")
    assert real_node_testing.shared_state() is None  # the environment names no cluster


def test_a_real_node_another_cluster_holds_is_skipped_not_taken(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = _fake_rig(monkeypatch, {"up": 0, "down": 0})
    monkeypatch.setattr(real_node_testing.node, "machine_owner", lambda: tmp_path / "up-cluster")
    with pytest.raises(pytest.skip.Exception, match="up-cluster"), real_node_testing.up(tmp_path):
        pytest.fail("no cluster of its own while another holds the real node")
    assert calls == []


def test_processes_of_names_paths_in_the_state_dir_not_siblings_sharing_its_prefix(
    tmp_path: Path,
) -> None:
    state = tmp_path / "real-node"
    # The path as $0 of a shell that sleeps: in the command line, and harmless.
    inside = subprocess.Popen(["bash", "-c", "sleep 30; true", f"{state}/node/containerd.toml"])
    alone = subprocess.Popen(["bash", "-c", "sleep 30; true", str(state)])
    sibling = subprocess.Popen(["bash", "-c", "sleep 30; true", f"{state}-test.lock"])
    try:
        found = real_node_testing.processes_of(state)
        assert inside.pid in found and alone.pid in found
        assert sibling.pid not in found
    finally:
        for p in (inside, alone, sibling):
            p.kill()
            p.wait()


def test_a_child_started_with_die_with_parent_goes_when_its_parent_dies() -> None:
    # The parent: a Python process that starts a sleeping child with the preexec_fn, prints
    # its PID and then is killed; the child must not outlive it.
    code = (
        "import subprocess, sys; from kubext_rig import real_node_testing as r; "
        "p = subprocess.Popen(['sleep', '60'], preexec_fn=r.die_with_parent); "
        "print(p.pid, flush=True); sys.stdin.read()"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert Path(f"/proc/{child}").exists()
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
