"""The main command's stack (`./kubext up`): the operator and the webhooks on a cluster of their
own, with the samples becoming Running through the real admission chain."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from kubernetes import client, config

from kubext_rig import cluster, node, tools
from kubext_rig.testing import wait_for

OFFSET = 400  # its own ports: the stack registers cluster-wide, fail-closed webhooks


def test_up_runs_the_samples_through_operator_and_webhooks(
    kube_cluster: cluster.ClusterInfo,
) -> None:
    # A fixed state directory, so a run that was killed (a timeout) is stopped by the next one's
    # `down` instead of holding the ports.
    root = tools.cache_dir() / "main-command-test"
    env = {
        **os.environ,
        "KUBEXT_RIG_DIR": str(root),
        "KUBEXT_RIG_PORT_OFFSET": str(OFFSET),
        # Absolute: the services run with the state directory as their working directory.
        "PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in sys.path if p),
    }

    def rig(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kubext_rig", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    rig("down")
    # The real node is on by default, one per machine: while another cluster holds it (the test
    # cluster's, under ./kubext test) this one comes up without and says so; when it is free,
    # this test does not take it from the real-node tests.
    owner = node.machine_owner()
    started = rig(
        "up", "--nodes", "2", "--services-from-source", *([] if owner else ["--no-real-node"])
    )
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        if owner:
            said = [line for line in started.stderr.splitlines() if "without a real node" in line]
            assert len(said) == 1 and str(owner) in said[0], started.stderr[-3000:]
            st = json.loads(rig("status").stdout)
            assert st[cluster.NO_REAL_NODE_KEY] == node.without_real_node(owner), st
        cfg = client.Configuration()
        config.load_kube_config(
            config_file=str(root / "admin.kubeconfig"), client_configuration=cfg
        )
        with client.ApiClient(cfg) as api:
            custom = client.CustomObjectsApi(api)

            def phase(group: str, plural: str, name: str) -> str | None:
                obj = custom.get_namespaced_custom_object(group, "v1", "default", plural, name)
                st = obj.get("status") or {}
                return st.get("phase") if st.get("phase") == "Running" else None

            wait_for(
                "WebApp hello Running",
                lambda: phase("example.com", "webapps", "hello"),
                timeout=120,
            )
            wait_for(
                "Database orders Running",
                lambda: phase("db.example.com", "databases", "orders"),
                timeout=120,
            )
            pods = (
                client.CoreV1Api(api)
                .list_namespaced_pod("default", label_selector="app=hello")
                .items
            )
            assert len(pods) == 3
            labels = pods[0].metadata.labels
            # The operator's policy labels, and the mutating webhook's default label.
            assert labels["version"] == "1.27" and labels["environment"] == "production"
            assert labels["managed-by"] == "admission-webhook"
            # A pod breaking the policy is refused with the webhook's message.
            bad = client.V1Pod(
                metadata=client.V1ObjectMeta(name="bad"),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="c", image="evil.example/x:1")]
                ),
            )
            try:
                client.CoreV1Api(api).create_namespaced_pod("default", bad)
                raise AssertionError("a pod from a disallowed registry was admitted")
            except client.ApiException as exc:
                assert exc.status == 403 and "registry" in exc.body
            # The Database is served as v1beta1 through the conversion webhook.
            old = custom.get_namespaced_custom_object(
                "db.example.com", "v1beta1", "default", "databases", "orders"
            )
            assert old["spec"]["engine"] == "postgresql" and old["spec"]["storageSize"] == "10Gi"
            # An on-demand backup: its Job's pod passes the same admission chain and completes.
            custom.patch_namespaced_custom_object(
                "db.example.com",
                "v1",
                "default",
                "databases",
                "orders",
                {"metadata": {"annotations": {"db.example.com/backup-now": "e2e"}}},
            )

            def backed_up() -> bool:
                obj = custom.get_namespaced_custom_object(
                    "db.example.com", "v1", "default", "databases", "orders"
                )
                return any(
                    c["type"] == "OnDemandBackupSucceeded" and c["status"] == "True"
                    for c in (obj.get("status") or {}).get("conditions", [])
                )

            wait_for("the on-demand backup of orders done", backed_up, timeout=90)
    finally:
        stopped = rig("down")
    assert stopped.returncode == 0, stopped.stderr
    assert rig("status").returncode == 3
