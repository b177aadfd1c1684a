"""The standalone scheduler against the rig's real API server, on kwok nodes of its own.

The nodes carry this run's label and a NoSchedule taint, so the shared cluster's other pods
never land on them; this test's pods select them and tolerate the taint. The scheduler runs as
a subprocess with a profile ``kubext-scheduler`` (NodeResourceFit enabled) and binds through
``pods/binding``; kube-scheduler ignores these pods (another schedulerName).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubext_rig import cluster, testing
from kubext_rig.testing import wait_for

SCHEDULER_NAME = "kubext-scheduler"
LABEL = "scheduler.kubext.io/e2e"
TAINT = {"key": LABEL, "value": "true", "effect": "NoSchedule"}

PROFILE = {
    "apiVersion": "kubescheduler.config.k8s.io/v1",
    "kind": "KubeSchedulerConfiguration",
    "profiles": [
        {
            "schedulerName": SCHEDULER_NAME,
            "plugins": {
                "filter": {"enabled": [{"name": "NodeResourceFit"}]},
                "score": {"enabled": [{"name": "NodeResourceFit", "weight": 2}]},
            },
            "pluginConfig": [
                {"name": "NodeResourceFit", "args": {"cpuWeight": 2, "memoryWeight": 1}}
            ],
        }
    ],
}


def kwok_node(name: str, run: str, cpu: str) -> dict[str, Any]:
    """A kwok-managed Node (cluster.node_manifest's shape) with our label, taint and cpu."""
    manifest = cluster.node_manifest(name)
    manifest["metadata"]["labels"][LABEL] = run  # type: ignore[index]
    manifest["spec"] = {"taints": [TAINT]}
    allocatable = {"cpu": cpu, "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    manifest["status"] = {"capacity": allocatable, "allocatable": allocatable}
    return manifest


class SchedulerProcess:
    def __init__(
        self,
        kubeconfig: str,
        config_file: Path,
        log_path: Path,
        *,
        lease: str,
        timings: tuple[float, float, float] = (15, 10, 2),
    ) -> None:
        self.port = testing.free_port()
        self.log_path = log_path
        duration, deadline, retry = timings
        self.env = {
            # A Lease of this run's own: other runs' schedulers never hold it.
            "KUBEXT_SCHEDULER_LEADER_ELECTION__NAMESPACE": "kube-system",
            "KUBEXT_SCHEDULER_LEADER_ELECTION__NAME": lease,
            "KUBEXT_SCHEDULER_LEADER_ELECTION__LEASE_DURATION_SECONDS": str(duration),
            "KUBEXT_SCHEDULER_LEADER_ELECTION__RENEW_DEADLINE_SECONDS": str(deadline),
            "KUBEXT_SCHEDULER_LEADER_ELECTION__RETRY_PERIOD_SECONDS": str(retry),
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            "KUBEXT_SCHEDULER_KUBECONFIG": kubeconfig,
            "KUBEXT_SCHEDULER_SCHEDULER_CONFIG": str(config_file),
            "KUBEXT_SCHEDULER_HEALTH__HOST": "127.0.0.1",
            "KUBEXT_SCHEDULER_HEALTH__PORT": str(self.port),
            "KUBEXT_SCHEDULER_EXTENDER__ENABLED": "false",
        }
        code = "import sys; from kubext_scheduler.__main__ import main; sys.exit(main())"
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code], env=self.env, stdout=log, stderr=log
            )

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(
                f"scheduler exited {self.proc.returncode}: {self.log_path.read_text()[-3000:]}"
            )
        url = f"http://127.0.0.1:{self.port}/readyz"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
        return False

    def bound(self) -> float:
        """How many pods this replica has bound (its scheduled-attempts counter)."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            lines = r.read().decode().splitlines()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in lines
            if line.startswith("scheduler_schedule_attempts_total{")
            and 'result="scheduled"' in line
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@contextlib.contextmanager
def running_scheduler(
    kubeconfig: str, profile: dict[str, Any], tmp_path: Path, *, lease: str
) -> Iterator[SchedulerProcess]:
    """A scheduler process with ``profile`` as its config and a Lease of its own, ready (its
    /readyz answers) on entry and stopped on exit."""
    config_file = tmp_path / "sched.yaml"
    config_file.write_text(yaml.safe_dump(profile))
    proc = SchedulerProcess(kubeconfig, config_file, tmp_path / "scheduler.log", lease=lease)
    try:
        wait_for("scheduler /readyz", proc.ready, timeout=60)
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture
def nodes(kube_api: client.ApiClient, run_id: str) -> Iterator[list[str]]:
    core = client.CoreV1Api(kube_api)
    names = [f"kubext-sched-{run_id}-small", f"kubext-sched-{run_id}-big"]
    created = []
    try:
        for name, cpu in zip(names, ["1", "4"], strict=True):
            core.create_node(kwok_node(name, run_id, cpu))
            created.append(name)
        yield created
    finally:
        for name in [*created, f"kubext-sched-{run_id}-roomy"]:
            with contextlib.suppress(client.ApiException):
                core.delete_node(name)


@pytest.fixture
def scheduler(
    kube_cluster: cluster.ClusterInfo, tmp_path: Path, run_id: str, nodes: list[str]
) -> Iterator[SchedulerProcess]:
    with running_scheduler(
        kube_cluster.kubeconfig, PROFILE, tmp_path, lease=f"kubext-scheduler-e2e-{run_id}"
    ) as proc:
        yield proc


def pod_manifest(name: str, run: str, cpu: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "schedulerName": SCHEDULER_NAME,
            "nodeSelector": {LABEL: run},
            "tolerations": [{"key": LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [
                {
                    "name": "app",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": cpu}},
                }
            ],
        },
    }


def node_of(core: client.CoreV1Api, namespace: str, name: str) -> str | None:
    return core.read_namespaced_pod(name, namespace).spec.node_name


def failed_scheduling(core: client.CoreV1Api, namespace: str, name: str) -> list[str]:
    events = core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},reason=FailedScheduling"
    ).items
    return [e.message for e in events if e.type == "Warning"]


def test_pods_are_bound_where_they_fit_and_a_too_big_pod_waits_for_room(
    kube_api: client.ApiClient,
    namespace: str,
    run_id: str,
    nodes: list[str],
    scheduler: SchedulerProcess,
) -> None:
    core = client.CoreV1Api(kube_api)
    small, big = nodes
    # 1500m fits only the 4-cpu node; two of them fit it together (the second cycle must count
    # the first pod's cpu while its binding is in flight: the assume cache).
    for name in ("fit-a", "fit-b"):
        core.create_namespaced_pod(namespace, pod_manifest(name, run_id, "1500m"))
    core.create_namespaced_pod(namespace, pod_manifest("huge", run_id, "64"))
    for name in ("fit-a", "fit-b"):
        assert wait_for(f"{name} bound", lambda n=name: node_of(core, namespace, n)) == big
    # A third 1500m pod fits neither node now (big has 1 cpu left, small has 1).
    core.create_namespaced_pod(namespace, pod_manifest("fit-c", run_id, "1500m"))

    messages = wait_for(
        "huge's FailedScheduling Event", lambda: failed_scheduling(core, namespace, "huge")
    )
    assert any("2 Insufficient cpu" in m for m in messages), messages
    assert all(m.startswith("0/") and " nodes are available: " in m for m in messages), messages
    assert node_of(core, namespace, "huge") is None
    pod = core.read_namespaced_pod("huge", namespace)
    [condition] = [c for c in pod.status.conditions or [] if c.type == "PodScheduled"]
    assert (condition.status, condition.reason) == ("False", "Unschedulable")
    assert "Insufficient cpu" in condition.message
    c_messages = wait_for(
        "fit-c's FailedScheduling", lambda: failed_scheduling(core, namespace, "fit-c")
    )
    assert any("2 Insufficient cpu" in m for m in c_messages), c_messages
    assert node_of(core, namespace, "fit-c") is None

    # A node with room appears: the waiting pods are placed without being recreated.
    roomy = f"kubext-sched-{run_id}-roomy"
    core.create_node(kwok_node(roomy, run_id, "128"))
    assert wait_for("huge bound", lambda: node_of(core, namespace, "huge"), timeout=60) == roomy
    assert wait_for("fit-c bound", lambda: node_of(core, namespace, "fit-c"), timeout=60) == roomy
    scheduled = core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=huge,reason=Scheduled"
    ).items
    assert [e.message for e in scheduled] == [f"Successfully assigned {namespace}/huge to {roomy}"]


def lease_holder(kube_api: client.ApiClient, name: str) -> str | None:
    lease = client.CoordinationV1Api(kube_api).read_namespaced_lease(name, "kube-system")
    return lease.spec.holder_identity


def test_two_replicas_elect_one_that_binds_and_the_other_takes_over_when_it_stops(
    kube_api: client.ApiClient,
    kube_cluster: cluster.ClusterInfo,
    namespace: str,
    run_id: str,
    nodes: list[str],
    tmp_path: Path,
) -> None:
    core = client.CoreV1Api(kube_api)
    config_file = tmp_path / "sched.yaml"
    config_file.write_text(yaml.safe_dump(PROFILE))
    lease = f"kubext-scheduler-e2e-{run_id}"
    replicas = [
        SchedulerProcess(
            kube_cluster.kubeconfig,
            config_file,
            tmp_path / f"replica-{i}.log",
            lease=lease,
            timings=(6, 4, 1),
        )
        for i in range(2)
    ]
    try:
        for replica in replicas:
            wait_for("replica /readyz", replica.ready, timeout=60)
        holder = wait_for("a Lease holder", lambda: lease_holder(kube_api, lease))
        names = [f"pair-{i}" for i in range(4)]
        for name in names:
            core.create_namespaced_pod(namespace, pod_manifest(name, run_id, "500m"))
        for name in names:
            assert wait_for(f"{name} bound", lambda n=name: node_of(core, namespace, n)) in nodes
        for name in names:  # the Scheduled Event is written after the binding
            scheduled = wait_for(
                f"{name}'s Scheduled Event",
                lambda n=name: core.list_namespaced_event(
                    namespace, field_selector=f"involvedObject.name={n},reason=Scheduled"
                ).items,
            )
            assert len(scheduled) == 1, [e.message for e in scheduled]  # one binder, once
        counts = sorted(replica.bound() for replica in replicas)
        assert counts == [0, len(names)], counts  # the standby bound nothing
        assert lease_holder(kube_api, lease) == holder  # renewed, never handed over

        # The leader stops cleanly (SIGTERM releases the Lease): the standby takes over.
        leader, standby = sorted(replicas, key=lambda r: r.bound(), reverse=True)
        leader.stop()
        assert leader.proc.returncode == 0
        new_holder = wait_for(
            "the standby's Lease", lambda: (lease_holder(kube_api, lease) or holder) != holder
        )
        assert new_holder
        core.create_namespaced_pod(namespace, pod_manifest("after", run_id, "500m"))
        assert wait_for("after bound", lambda: node_of(core, namespace, "after")) in nodes
        assert standby.bound() == 1
    finally:
        for replica in replicas:
            replica.stop()
        with contextlib.suppress(client.ApiException):
            client.CoordinationV1Api(kube_api).delete_namespaced_lease(lease, "kube-system")
