"""The rig's control plane is real: workloads run on kwok nodes, versions and RBAC are enforced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client

from kubext_rig import cluster, tools
from kubext_rig.testing import wait_for


def pod_spec(app: str) -> client.V1PodSpec:
    return client.V1PodSpec(
        containers=[client.V1Container(name="app", image=f"registry.local/{app}:1")]
    )


def test_deployment_becomes_available(kube_api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(kube_api)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=3,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels), spec=pod_spec("web")
                ),
            ),
        ),
    )

    def available() -> bool:
        st = apps.read_namespaced_deployment_status("web", namespace).status
        return (st.available_replicas or 0) == 3

    wait_for("3 available replicas", available)
    pods = client.CoreV1Api(kube_api).list_namespaced_pod(namespace).items
    assert len(pods) == 3
    assert {p.spec.node_name for p in pods} <= {f"kwok-node-{i}" for i in range(3)}
    assert all(p.status.phase == "Running" for p in pods)


def test_daemonset_gets_one_pod_per_node(kube_api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(kube_api)
    labels = {"app": "agent"}
    apps.create_namespaced_daemon_set(
        namespace,
        client.V1DaemonSet(
            metadata=client.V1ObjectMeta(name="agent"),
            spec=client.V1DaemonSetSpec(
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels), spec=pod_spec("agent")
                ),
            ),
        ),
    )
    nodes = client.CoreV1Api(kube_api).list_node(label_selector="type=kwok").items

    def one_per_node() -> bool:
        st = apps.read_namespaced_daemon_set_status("agent", namespace).status
        return st.number_ready == len(nodes) == st.desired_number_scheduled

    wait_for("a ready pod on every node", one_per_node)
    pods = client.CoreV1Api(kube_api).list_namespaced_pod(namespace).items
    assert sorted(p.spec.node_name for p in pods) == sorted(n.metadata.name for n in nodes)


def test_kubectl_reports_the_pinned_server_version(kube_cluster: cluster.ClusterInfo) -> None:
    out = subprocess.run(
        [
            kube_cluster.bin("kubectl"),
            f"--kubeconfig={kube_cluster.kubeconfig}",
            "version",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert json.loads(out)["serverVersion"]["gitVersion"] == tools.versions()["KUBERNETES_VERSION"]


def test_rbac_denies_an_unprivileged_service_account(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    review = client.AuthorizationV1Api(kube_api).create_subject_access_review(
        client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=f"system:serviceaccount:{namespace}:nobody",
                resource_attributes=client.V1ResourceAttributes(
                    namespace=namespace, verb="list", resource="secrets"
                ),
            )
        )
    )
    assert review.status.allowed is False
    # And for real: a token for that account is refused by the API server.
    token = core.create_namespaced_service_account_token(
        "nobody",
        namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
    ).status.token
    cfg = client.Configuration()
    cfg.host = kube_api.configuration.host
    cfg.ssl_ca_cert = kube_api.configuration.ssl_ca_cert
    cfg.api_key = {"BearerToken": token}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    with client.ApiClient(cfg) as api, pytest.raises(client.ApiException) as exc:
        client.CoreV1Api(api).list_namespaced_secret(namespace)
    assert exc.value.status == 403


def test_components_run_with_the_rigs_go_collector_setting(
    kube_cluster: cluster.ClusterInfo,
) -> None:
    for name in ("etcd", "kube-apiserver", "kube-controller-manager"):
        pid = cluster.running_pid(kube_cluster.root, name)
        assert pid is not None, name
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"GOGC={cluster.component_env()['GOGC']}".encode() in environ, name


def test_up_twice_is_safe(kube_cluster: cluster.ClusterInfo) -> None:
    again = cluster.up(nodes=3)
    assert again.kubeconfig == kube_cluster.kubeconfig
    assert set(cluster.status().values()) == {"healthy"}


def test_second_cluster_on_taken_ports_is_a_clear_error(
    kube_cluster: cluster.ClusterInfo, tmp_path
) -> None:
    # The shared cluster holds every port, so a second state dir cannot start.
    with pytest.raises(
        cluster.RigError,
        match=rf"port\(s\) {cluster.ETCD_PORT}, {cluster.ETCD_PEER_PORT}, {cluster.APISERVER_PORT}.* already in use",
    ):
        cluster.up(root=tmp_path / "other")
    assert not (tmp_path / "other" / "pids").exists()


def test_a_second_cluster_starts_and_down_leaves_nothing_behind(
    kube_cluster: cluster.ClusterInfo, tmp_path
) -> None:
    env = {
        **os.environ,
        "KUBEXT_RIG_DIR": str(tmp_path / "second"),
        "KUBEXT_RIG_PORT_OFFSET": "200",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }

    def rig(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kubext_rig", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    # The control plane alone: the machine's one real node is the real-node tests' (their lock).
    started = rig("up", "--nodes", "1", "--no-real-node")
    try:
        assert started.returncode == 0, started.stderr
        pids = [int(p.read_text().split()[0]) for p in (tmp_path / "second" / "pids").glob("*.pid")]
        assert len(pids) == 5 and all(Path(f"/proc/{pid}").exists() for pid in pids)
        assert rig("status").returncode == 0
    finally:
        stopped = rig("down")
    assert stopped.returncode == 0, stopped.stderr
    assert not any(Path(f"/proc/{pid}").exists() and not cluster._is_zombie(pid) for pid in pids)
    assert rig("status").returncode == 3  # every component reported stopped
    for port in (12379, 12380, 16443, 17257, 17259, 17247):
        assert cluster._port_free(port + 200), f"port {port + 200} still bound after down"
