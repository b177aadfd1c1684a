"""Preemption (DefaultPreemption, with PDBs) and PodTopologySpread by the standalone scheduler.

What is real: the rig's kube-apiserver (Priority admission resolving PriorityClasses into
``spec.priority``, the binding subresource, status patches, Events), kube-controller-manager's
disruption controller computing the PDB's ``disruptionsAllowed``, and the scheduler as a
subprocess with its informers (nodes, pods, namespaces, PDBs). What is a fake: every node is a
kwok node of this test's own (labelled with the run, tainted so nothing else lands there); kwok
marks the pods Running and finishes a deletion at once (no kubelet, no grace period served), so a
victim is gone as soon as the scheduler deletes it.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, watch

from kubext_rig import cluster
from kubext_rig.testing import wait_for
from kubext_scheduler.tests.e2e.test_standalone_e2e import (
    LABEL,
    SchedulerProcess,
    failed_scheduling,
    kwok_node,
    node_of,
    running_scheduler,
)
from kubext_scheduler.tests.e2e.test_standalone_e2e import (
    PROFILE as STANDALONE_PROFILE,
)

# A schedulerName of this file's own: Pants runs the standalone file beside this one on the
# shared cluster, and each file's scheduler would otherwise bind the other's pods (CI saw the
# standalone test's leader count 1 binding of its 4).
SCHEDULER_NAME = "kubext-scheduler-preemption"
PROFILE = {
    **STANDALONE_PROFILE,
    "profiles": [{**STANDALONE_PROFILE["profiles"][0], "schedulerName": SCHEDULER_NAME}],
}

ZONE = "topology.kubernetes.io/zone"


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture
def make_nodes(kube_api: client.ApiClient) -> Iterator[Any]:
    """Creates kwok nodes (name -> (cpu, pods, labels)); deletes them afterwards."""
    core = client.CoreV1Api(kube_api)
    created: list[str] = []

    def make(run: str, specs: dict[str, tuple[str, str, dict[str, str]]]) -> list[str]:
        for name, (cpu, pods, labels) in specs.items():
            manifest = kwok_node(name, run, cpu)
            manifest["metadata"]["labels"].update(labels)
            for field in ("capacity", "allocatable"):
                manifest["status"][field]["pods"] = pods
            core.create_node(manifest)
            created.append(name)
        return list(specs)

    yield make
    for name in created:
        with contextlib.suppress(client.ApiException):
            core.delete_node(name)


@pytest.fixture
def priority_classes(kube_api: client.ApiClient, run_id: str) -> Iterator[tuple[str, str]]:
    scheduling = client.SchedulingV1Api(kube_api)
    names = (f"kubext-low-{run_id}", f"kubext-high-{run_id}")
    for name, value in zip(names, (100, 1000), strict=True):
        scheduling.create_priority_class(
            {
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": name},
                "value": value,
            }
        )
    yield names
    for name in names:
        with contextlib.suppress(client.ApiException):
            scheduling.delete_priority_class(name)


@pytest.fixture
def scheduler(
    kube_cluster: cluster.ClusterInfo, tmp_path: Path, run_id: str
) -> Iterator[SchedulerProcess]:
    with running_scheduler(
        kube_cluster.kubeconfig, PROFILE, tmp_path, lease=f"kubext-scheduler-e2e-{run_id}"
    ) as proc:
        yield proc


def pod(
    name: str,
    run: str,
    cpu: str,
    *,
    priority_class: str | None = None,
    node_name: str | None = None,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
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
        **spec,
    }
    if priority_class:
        body["priorityClassName"] = priority_class
    if node_name:
        body["nodeName"] = node_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": body,
    }


def running(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    found = core.read_namespaced_pod(name, namespace)
    return found.status.phase == "Running" and found.status.start_time is not None


def gone(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


class NominationWatch:
    """Records every status.nominatedNodeName a pod shows (the API server clears it on binding,
    so polling could miss it)."""

    def __init__(self, core: client.CoreV1Api, namespace: str, name: str) -> None:
        self.seen: list[str] = []
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, args=(core, namespace, name), daemon=True)
        self._thread.start()
        time.sleep(0.5)  # the watch is open before the pod is created

    def _run(self, core: client.CoreV1Api, namespace: str, name: str) -> None:
        # The stream ends when the test's namespace (or client) goes: that is not a failure.
        with contextlib.suppress(urllib3.exceptions.HTTPError):
            for event in self._watch.stream(
                core.list_namespaced_pod,
                namespace,
                field_selector=f"metadata.name={name}",
                timeout_seconds=120,
            ):
                nominated = event["object"].status.nominated_node_name
                if nominated and nominated not in self.seen:
                    self.seen.append(nominated)

    def stop(self) -> None:
        self._watch.stop()


def test_the_role_the_chart_binds_lets_every_informer_list_and_watch(
    kube_api: client.ApiClient,
) -> None:
    """helm/scheduler binds system:kube-scheduler and no role of its own: the bootstrap role
    must cover the namespace and PDB informers as well as the node and pod ones."""
    authz = client.AuthorizationV1Api(kube_api)
    wanted = [
        ("", "nodes"),
        ("", "pods"),
        ("", "namespaces"),
        ("policy", "poddisruptionbudgets"),
    ]
    denied = []
    for group, resource in wanted:
        for verb in ("list", "watch"):
            review = authz.create_subject_access_review(
                {
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SubjectAccessReview",
                    "spec": {
                        "user": "system:kube-scheduler",
                        "resourceAttributes": {"group": group, "resource": resource, "verb": verb},
                    },
                }
            )
            if not review.status.allowed:
                denied.append(f"{verb} {resource}.{group}")
    assert denied == []


def test_a_high_priority_pod_preempts_the_least_important_pod_and_is_bound_there(
    kube_api: client.ApiClient,
    namespace: str,
    run_id: str,
    make_nodes: Any,
    priority_classes: tuple[str, str],
    scheduler: SchedulerProcess,
) -> None:
    core = client.CoreV1Api(kube_api)
    low, high = priority_classes
    [node] = make_nodes(run_id, {f"kubext-preempt-{run_id}": ("1", "110", {})})
    # Two low pods fill the node (scheduled by ours); the second starts later, so it is the
    # less important one (same priority, later start) and the one to go.
    for name in ("low-old", "low-new"):
        core.create_namespaced_pod(namespace, pod(name, run_id, "500m", priority_class=low))
        assert wait_for(f"{name} bound", lambda n=name: node_of(core, namespace, n)) == node
        wait_for(f"{name} Running", lambda n=name: running(core, namespace, n))
        time.sleep(1.1)  # startTime has a one-second resolution
    nominations = NominationWatch(core, namespace, "high")
    try:
        core.create_namespaced_pod(namespace, pod("high", run_id, "500m", priority_class=high))
        assert wait_for("high bound", lambda: node_of(core, namespace, "high")) == node
        assert wait_for("the nomination seen", lambda: nominations.seen, timeout=5) == [node]
    finally:
        nominations.stop()
    assert gone(core, namespace, "low-new")
    assert node_of(core, namespace, "low-old") == node
    preempted = core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=low-new,reason=Preempted"
    ).items
    assert [e.message.split(" on node ")[1] for e in preempted] == [node]
    assert core.read_namespaced_pod("high", namespace).spec.priority == 1000


def test_a_pdb_sends_the_preemptor_to_the_node_whose_victim_it_does_not_protect(
    kube_api: client.ApiClient,
    namespace: str,
    run_id: str,
    make_nodes: Any,
    priority_classes: tuple[str, str],
    scheduler: SchedulerProcess,
) -> None:
    core = client.CoreV1Api(kube_api)
    low, high = priority_classes
    # Without the PDB the first node wins every tie-break: its victim started later, and it
    # comes first by name.
    guarded_node, free_node = make_nodes(
        run_id,
        {
            f"kubext-pdb-{run_id}-a": ("1", "110", {}),
            f"kubext-pdb-{run_id}-b": ("1", "110", {}),
        },
    )
    victims = (("free", free_node), ("guarded", guarded_node))
    for name, node_name in victims:
        manifest = pod(
            name, run_id, "1", priority_class=low, node_name=node_name, labels={"app": name}
        )
        core.create_namespaced_pod(namespace, manifest)
        wait_for(f"{name} Running", lambda n=name: running(core, namespace, n))
        time.sleep(1.1)
    policy = client.PolicyV1Api(kube_api)
    policy.create_namespaced_pod_disruption_budget(
        namespace,
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "guard"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
        },
    )

    def computed() -> bool:
        found = policy.read_namespaced_pod_disruption_budget("guard", namespace).status
        return bool(found and found.current_healthy == 1 and found.observed_generation)

    wait_for("the disruption controller's PDB status", computed)
    assert (
        policy.read_namespaced_pod_disruption_budget("guard", namespace).status.disruptions_allowed
        == 0
    )
    nominations = NominationWatch(core, namespace, "high")
    try:
        core.create_namespaced_pod(namespace, pod("high", run_id, "1", priority_class=high))
        assert wait_for("high bound", lambda: node_of(core, namespace, "high")) == free_node
        assert wait_for("the nomination seen", lambda: nominations.seen, timeout=5) == [free_node]
    finally:
        nominations.stop()
    assert gone(core, namespace, "free")
    assert node_of(core, namespace, "guarded") == guarded_node


def test_pods_spread_over_zones_and_one_that_would_break_max_skew_stays_pending(
    kube_api: client.ApiClient,
    namespace: str,
    run_id: str,
    make_nodes: Any,
    scheduler: SchedulerProcess,
) -> None:
    core = client.CoreV1Api(kube_api)
    zone_a, zone_b = f"zone-a-{run_id}", f"zone-b-{run_id}"
    specs = {
        f"kubext-spread-{run_id}-a1": ("8", "110", {ZONE: zone_a}),
        f"kubext-spread-{run_id}-a2": ("8", "110", {ZONE: zone_a}),
        # Room for two pods only: zone b fills first.
        f"kubext-spread-{run_id}-b1": ("8", "2", {ZONE: zone_b}),
    }
    make_nodes(run_id, specs)
    zone_of = {name: spec[2][ZONE] for name, spec in specs.items()}
    app = f"spread-{run_id}"
    constraint = {
        "maxSkew": 1,
        "topologyKey": ZONE,
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": app}},
    }

    def spread_pod(name: str) -> dict[str, Any]:
        return pod(
            name, run_id, "100m", labels={"app": app}, topologySpreadConstraints=[constraint]
        )

    names = [f"s{i}" for i in range(4)]
    for name in names:
        core.create_namespaced_pod(namespace, spread_pod(name))
    placed = [wait_for(f"{n} bound", lambda n=n: node_of(core, namespace, n)) for n in names]
    assert sorted(zone_of[n] for n in placed) == [zone_a, zone_a, zone_b, zone_b], placed

    # b1 is full (2 pods): a fifth pod goes to zone a (3 vs 2, skew 1) ...
    core.create_namespaced_pod(namespace, spread_pod("s4"))
    assert zone_of[wait_for("s4 bound", lambda: node_of(core, namespace, "s4"))] == zone_a
    # ... and a sixth would make it 4 vs 2: it stays Pending with upstream's reason.
    core.create_namespaced_pod(namespace, spread_pod("s5"))
    messages = wait_for("s5's FailedScheduling", lambda: failed_scheduling(core, namespace, "s5"))
    assert any(
        "2 node(s) didn't match pod topology spread constraints" in m and "1 Too many pods" in m
        for m in messages
    ), messages
    assert all(m.startswith("0/") and " nodes are available: " in m for m in messages), messages
    time.sleep(2)
    assert node_of(core, namespace, "s5") is None
