"""The main command's stack (`./kubext up`): the operator, the webhooks and the scheduler on a
cluster of their own, with the samples becoming Running through the real admission chain and the
seed's custom-scheduler samples bound by our scheduler.

What is real: the rig's control plane, each service as a process from source, the API server
calling the webhooks, our scheduler's bindings and Events. What is a kwok fake: every node and
pod (nothing runs). It runs without the real node (the test cluster holds the machine's one, or
it is left to the real-node tests), so the device plugin and the gpu sample are skipped, which
it checks too; `test_real_node.py` runs the stack's device plugin and gpu sample for real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

from kubernetes import client, config

from kubext_rig import cluster, node, stack, tools
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
    t0 = time.monotonic()
    # The real node is on by default, one per machine: while another cluster holds it (the test
    # cluster's, under ./kubext test) this one comes up without and says so; when it is free,
    # this test does not take it from the real-node tests.
    owner = node.machine_owner()
    started = rig(
        "up", "--nodes", "2", "--services-from-source", *([] if owner else ["--no-real-node"])
    )
    up_seconds = time.monotonic() - t0
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        # The stack's startup, for the README's figures: each service's own time, and up's.
        print(f"up --services-from-source: {up_seconds:.1f} s")
        for line in started.stderr.splitlines():
            if re.search(r"kubext-\S+ ready \(pid|cluster up in", line):
                print(line)
        # No real node here: the device plugin is not started and the gpu sample skipped.
        assert started.stderr.count(stack.NO_GPU_SAMPLE) == 1, started.stderr[-3000:]
        st = json.loads(rig("status").stdout)
        assert st["kubext-scheduler"] == "healthy", st
        assert "kubext-deviceplugin" not in st, st
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
            # version: the image's tag (examples/webapp.yaml names the web sample's 0.1.0).
            assert labels["version"] == "0.1.0" and labels["environment"] == "production"
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
            _check_custom_scheduler_samples(client.CoreV1Api(api))
    finally:
        stopped = rig("down")
    assert stopped.returncode == 0, stopped.stderr
    assert rig("status").returncode == 3


def _check_custom_scheduler_samples(core: client.CoreV1Api) -> None:
    """The seed's pod and Deployment (examples/custom-scheduler.yaml) are bound by our scheduler
    (kube-scheduler leaves pods of another schedulerName alone) to kwok nodes, each with our
    Scheduled Event, and the Deployment's three spread by the profile's hostname maxSkew 1."""

    def bound() -> list[client.V1Pod] | None:
        pods = [core.read_namespaced_pod("test-custom-scheduler", "default")]
        pods += core.list_namespaced_pod("default", label_selector="app=custom-scheduled-app").items
        done = len(pods) == 4 and all(p.spec.node_name for p in pods)
        return pods if done else None

    pods = wait_for("the custom-scheduler samples bound", bound, timeout=90)
    kwok = {n.metadata.name for n in core.list_node(label_selector="type=kwok").items}
    assert {p.spec.node_name for p in pods} <= kwok, [p.spec.node_name for p in pods]
    replicas = [p.spec.node_name for p in pods[1:]]
    assert max(replicas.count(n) for n in replicas) - min(replicas.count(n) for n in kwok) <= 1

    def scheduled_event(pod: client.V1Pod) -> client.CoreV1Event | None:
        events = core.list_namespaced_event(
            "default", field_selector=f"involvedObject.uid={pod.metadata.uid},reason=Scheduled"
        ).items
        return events[0] if events else None

    for pod in pods:
        event = wait_for(f"{pod.metadata.name}'s Scheduled Event", lambda p=pod: scheduled_event(p))
        assert event.reporting_component == stack.SCHEDULER_NAME, event
        assert event.source.component == stack.SCHEDULER_NAME, event
        assert event.message.endswith(f" to {pod.spec.node_name}"), event.message
        scheduled = [c for c in pod.status.conditions or [] if c.type == "PodScheduled"]
        assert scheduled and scheduled[0].status == "True", pod.status.conditions
