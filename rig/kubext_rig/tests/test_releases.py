"""What `up` and `status` say about a release from its workloads and pods (``releases`` and
``stack.release_states``), and which releases a cluster has (the marker `up` writes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubext_rig import cluster, node, releases, stack

IMAGE = "127.0.0.1:20000/kubext/operator:0.1.0"


def _pod(name: str, *, ready: bool, where: str = node.NODE_NAME, **meta: Any) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": name, **meta},
        "spec": {"nodeName": where, "containers": [{"name": "operator", "image": IMAGE}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "operator", "ready": ready, "state": {"running": {}}}],
        },
    }


def _state(workloads: list[dict[str, Any]], pods: list[dict[str, Any]]) -> releases.ReleaseState:
    return releases.release_state(
        "operator", workloads, pods, stack.pod_problems(pods, node.NODE_NAME)
    )


DEPLOYMENT = {"kind": "Deployment", "spec": {"replicas": 2}, "status": {}}


def test_every_pod_ready_on_the_real_node_is_healthy() -> None:
    st = _state([DEPLOYMENT], [_pod("a", ready=True), _pod("b", ready=True)])
    assert (st.state, st.healthy, st.ready, st.want) == ("healthy", True, 2, 2)
    assert st.image == IMAGE
    assert st.detail.startswith(f"2/2 pods Ready on {node.NODE_NAME}; Helm release kubext-operator")


def test_a_pod_not_ready_or_elsewhere_is_unhealthy_and_says_why() -> None:
    st = _state([DEPLOYMENT], [_pod("a", ready=True), _pod("b", ready=False)])
    assert (st.state, st.ready) == ("unhealthy", 1)
    assert "b/operator: not ready" in st.detail
    elsewhere = _state([DEPLOYMENT], [_pod("a", ready=True), _pod("b", ready=True, where="kwok-0")])
    assert elsewhere.state == "unhealthy" and "b on kwok-0" in elsewhere.detail
    # A pod on its way out does not count towards the replicas.
    going = _pod("c", ready=True, deletionTimestamp="2026-12-02T10:00:00Z")
    assert _state([DEPLOYMENT], [_pod("a", ready=True), going]).state == "unhealthy"


def test_a_daemonset_counts_its_scheduled_pods_and_none_is_stopped() -> None:
    daemonset = {"kind": "DaemonSet", "spec": {}, "status": {"desiredNumberScheduled": 1}}
    assert _state([daemonset], [_pod("a", ready=True)]).state == "healthy"
    assert _state([daemonset], []).state == "unhealthy"  # wanted, not there
    scaled_down = {"kind": "Deployment", "spec": {"replicas": 0}, "status": {}}
    assert _state([scaled_down], []).state == "stopped"
    assert _state([], []).state == "stopped"  # uninstalled


def test_the_marker_names_the_releases_and_status_reports_them_stopped_without_a_cluster(
    tmp_path: Path,
) -> None:
    assert releases.installed(tmp_path) == []
    releases.mark_installed(tmp_path, list(releases.ORDER))
    assert releases.installed(tmp_path) == list(releases.ORDER)
    # No API server runs for this state dir: every release is stopped.
    assert stack.status(tmp_path) == {f"release/kubext-{svc}": "stopped" for svc in releases.ORDER}
    releases.mark_installed(tmp_path, [])  # a host-process `up` on the same dir
    assert releases.installed(tmp_path) == []


def test_down_keeps_a_releases_webhook_configurations_and_removes_a_host_processs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail-closed configurations of a host process would point at a dead port on a kept
    cluster; a release's come back with its pods, and helm owns them."""
    deleted: list[tuple[str, ...]] = []
    monkeypatch.setattr(cluster, "running_pid", lambda root, name: 1)
    monkeypatch.setattr(cluster, "kubectl", lambda info, *args, **kw: deleted.append(args) or "")
    info = cluster.ClusterInfo(tmp_path)
    releases.mark_installed(tmp_path, list(releases.ORDER))
    stack.down(info)
    assert deleted == []
    releases.mark_installed(tmp_path, [])
    stack.down(info)
    assert [a[:2] for a in deleted] == [
        ("delete", "validatingwebhookconfiguration"),
        ("delete", "mutatingwebhookconfiguration"),
    ]
