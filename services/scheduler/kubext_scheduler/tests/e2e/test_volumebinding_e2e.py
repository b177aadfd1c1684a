"""VolumeBinding of the standalone scheduler on the rig: claims of a WaitForFirstConsumer class.

What runs for real: etcd, kube-apiserver (RBAC, the PV/PVC/StorageClass API), and
kube-controller-manager's PV controller, which completes every PV/PVC binding (claimRef ->
``volumeName``, ``pv.kubernetes.io/bind-completed``, phase Bound); our scheduler as a
subprocess (profile ``custom-scheduler``, the default plugins) with its PVC, PV and StorageClass
informers. What is fake: the nodes are kwok's (labelled with the csi driver's topology key
``topology.csi.kubext.io/node=<node>``, tainted so no other test's pods land there), and
external-provisioner is played by the test: once a claim carries
``volume.kubernetes.io/selected-node``, it creates the PV on that node (node affinity on the
topology key, ``claimRef`` to the claim) as csi-provisioner would after CreateVolume; the csi
driver itself is not called.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubext_rig import cluster
from kubext_rig.testing import wait_for
from kubext_scheduler.tests.e2e.test_standalone_e2e import (
    LABEL,
    SchedulerProcess,
    kwok_node,
    running_scheduler,
)

SCHEDULER_NAME = "custom-scheduler"
TOPOLOGY = "topology.csi.kubext.io/node"
PROVISIONER = "csi.kubext.io"
SELECTED_NODE = "volume.kubernetes.io/selected-node"

PROFILE = {
    "apiVersion": "kubescheduler.config.k8s.io/v1",
    "kind": "KubeSchedulerConfiguration",
    # The default plugin set, VolumeBinding included; a short bind timeout for the test.
    "profiles": [
        {
            "schedulerName": SCHEDULER_NAME,
            "pluginConfig": [{"name": "VolumeBinding", "args": {"bindTimeoutSeconds": 60}}],
        }
    ],
}


@pytest.fixture
def run_id() -> str:
    import uuid

    return uuid.uuid4().hex[:6]


@pytest.fixture
def nodes(kube_api: client.ApiClient, run_id: str) -> Iterator[list[str]]:
    core = client.CoreV1Api(kube_api)
    names = [f"kubext-vol-{run_id}-{i}" for i in range(3)]
    try:
        for name in names:
            manifest = kwok_node(name, run_id, "4")
            manifest["metadata"]["labels"][TOPOLOGY] = name  # type: ignore[index]
            core.create_node(manifest)
        yield names
    finally:
        for name in names:
            with contextlib.suppress(client.ApiException):
                core.delete_node(name)


@pytest.fixture
def classes(kube_api: client.ApiClient, run_id: str) -> Iterator[dict[str, str]]:
    """The csi chart's StorageClass shape (our provisioner, WaitForFirstConsumer), and a class
    nobody provisions for (static PVs only)."""
    storage = client.StorageV1Api(kube_api)
    made = {"csi": f"kubext-csi-{run_id}", "local": f"kubext-local-{run_id}"}
    provisioners = {"csi": PROVISIONER, "local": "kubernetes.io/no-provisioner"}
    try:
        for kind, name in made.items():
            storage.create_storage_class(
                {
                    "apiVersion": "storage.k8s.io/v1",
                    "kind": "StorageClass",
                    "metadata": {"name": name},
                    "provisioner": provisioners[kind],
                    "reclaimPolicy": "Delete",
                    "volumeBindingMode": "WaitForFirstConsumer",
                }
            )
        yield made
    finally:
        for name in made.values():
            with contextlib.suppress(client.ApiException):
                storage.delete_storage_class(name)


@pytest.fixture
def volumes(kube_api: client.ApiClient) -> Iterator[list[str]]:
    """PV names a test creates (cluster-scoped: deleted afterwards)."""
    names: list[str] = []
    yield names
    core = client.CoreV1Api(kube_api)
    for name in names:
        with contextlib.suppress(client.ApiException):
            core.delete_persistent_volume(name)


@pytest.fixture
def scheduler(
    kube_cluster: cluster.ClusterInfo,
    tmp_path: Path,
    run_id: str,
    nodes: list[str],
    classes: dict[str, str],
) -> Iterator[SchedulerProcess]:
    with running_scheduler(
        kube_cluster.kubeconfig, PROFILE, tmp_path, lease=f"kubext-scheduler-vol-{run_id}"
    ) as proc:
        yield proc


def claim(name: str, storage_class: str, *, volume: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "storageClassName": storage_class,
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}},
    }
    if volume:
        spec["volumeName"] = volume
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": spec,
    }


def volume(
    name: str, storage_class: str, node: str, *, claim_ref: dict[str, str] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "storageClassName": storage_class,
        "capacity": {"storage": "1Gi"},
        "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Retain",
        "csi": {"driver": PROVISIONER, "volumeHandle": name},
        "nodeAffinity": {
            "required": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": TOPOLOGY, "operator": "In", "values": [node]}]}
                ]
            }
        },
    }
    if claim_ref:
        spec["claimRef"] = claim_ref
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": spec,
    }


def pod_with_claim(name: str, run: str, claim_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "schedulerName": SCHEDULER_NAME,
            "nodeSelector": {LABEL: run},
            "tolerations": [{"key": LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
        },
    }


def node_of(core: client.CoreV1Api, namespace: str, name: str) -> str | None:
    return core.read_namespaced_pod(name, namespace).spec.node_name


def claim_phase(core: client.CoreV1Api, namespace: str, name: str) -> str | None:
    return core.read_namespaced_persistent_volume_claim(name, namespace).status.phase


class FakeProvisioner:
    """external-provisioner's part: a claim of our class with selected-node gets a PV there."""

    def __init__(
        self, core: client.CoreV1Api, namespace: str, storage_class: str, made: list[str]
    ) -> None:
        self.core, self.namespace, self.storage_class, self.made = (
            core,
            namespace,
            storage_class,
            made,
        )
        self.selected: dict[str, str] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            for pvc in self.core.list_namespaced_persistent_volume_claim(self.namespace).items:
                node = (pvc.metadata.annotations or {}).get(SELECTED_NODE)
                if not node or pvc.spec.storage_class_name != self.storage_class:
                    continue
                if pvc.metadata.name in self.selected:
                    continue
                self.selected[pvc.metadata.name] = node
                name = f"pvc-{pvc.metadata.uid}"
                self.made.append(name)
                ref = {
                    "kind": "PersistentVolumeClaim",
                    "apiVersion": "v1",
                    "namespace": self.namespace,
                    "name": pvc.metadata.name,
                    "uid": pvc.metadata.uid,
                }
                body = volume(name, self.storage_class, node, claim_ref=ref)
                body["metadata"]["annotations"] = {"pv.kubernetes.io/provisioned-by": PROVISIONER}
                self.core.create_persistent_volume(body)

    def __enter__(self) -> FakeProvisioner:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def test_a_wait_for_first_consumer_claim_is_provisioned_on_the_node_the_pod_is_bound_to(
    kube_api: client.ApiClient,
    namespace: str,
    run_id: str,
    nodes: list[str],
    classes: dict[str, str],
    volumes: list[str],
    scheduler: SchedulerProcess,
) -> None:
    core = client.CoreV1Api(kube_api)
    with FakeProvisioner(core, namespace, classes["csi"], volumes) as provisioner:
        core.create_namespaced_persistent_volume_claim(namespace, claim("data", classes["csi"]))
        core.create_namespaced_pod(namespace, pod_with_claim("app", run_id, "data"))
        bound_to = wait_for("app bound", lambda: node_of(core, namespace, "app"), timeout=90)
    pvc = core.read_namespaced_persistent_volume_claim("data", namespace)
    assert pvc.metadata.annotations[SELECTED_NODE] == bound_to
    assert provisioner.selected == {"data": bound_to}
    assert bound_to in nodes
    assert pvc.status.phase == "Bound"  # PreBind waited for the PV controller before binding
    pv = core.read_persistent_volume(pvc.spec.volume_name)
    [term] = pv.spec.node_affinity.required.node_selector_terms
    assert term.match_expressions[0].values == [bound_to]


def test_a_pod_whose_claims_pv_lives_on_one_node_lands_there(
    kube_api: client.ApiClient,
    namespace: str,
    run_id: str,
    nodes: list[str],
    classes: dict[str, str],
    volumes: list[str],
    scheduler: SchedulerProcess,
) -> None:
    core = client.CoreV1Api(kube_api)
    # A claim already bound (by the PV controller) to a PV with node affinity to the middle node.
    pinned = f"kubext-vol-{run_id}-pinned"
    volumes.append(pinned)
    core.create_persistent_volume(volume(pinned, classes["local"], nodes[1]))
    core.create_namespaced_persistent_volume_claim(
        namespace, claim("pinned", classes["local"], volume=pinned)
    )
    wait_for("pinned Bound", lambda: claim_phase(core, namespace, "pinned") == "Bound")
    core.create_namespaced_pod(namespace, pod_with_claim("on-pv", run_id, "pinned"))
    assert (
        wait_for("on-pv bound", lambda: node_of(core, namespace, "on-pv"), timeout=60) == nodes[1]
    )

    # An unbound claim of the class nobody provisions for: the scheduler picks the one Available
    # PV (on the last node), writes its claimRef, and the PV controller completes the binding.
    static = f"kubext-vol-{run_id}-static"
    volumes.append(static)
    core.create_persistent_volume(volume(static, classes["local"], nodes[2]))
    wait_for(
        "static Available",
        lambda: core.read_persistent_volume(static).status.phase == "Available",
    )
    core.create_namespaced_persistent_volume_claim(namespace, claim("matched", classes["local"]))
    core.create_namespaced_pod(namespace, pod_with_claim("on-static", run_id, "matched"))
    assert (
        wait_for("on-static bound", lambda: node_of(core, namespace, "on-static"), timeout=60)
        == nodes[2]
    )
    assert core.read_namespaced_persistent_volume_claim("matched", namespace).spec.volume_name == (
        static
    )


def test_the_roles_the_chart_binds_cover_the_volume_informers_and_writes(
    kube_api: client.ApiClient,
) -> None:
    """helm/scheduler binds system:kube-scheduler and system:volume-scheduler (both bound to the
    user system:kube-scheduler by the bootstrap policy): PVC/PV reads come from the first,
    StorageClass reads and the PV/PVC updates of PreBind from the second."""
    authz = client.AuthorizationV1Api(kube_api)
    wanted = [
        (group, resource, verb)
        for group, resource in [("", "persistentvolumeclaims"), ("", "persistentvolumes")]
        for verb in ("list", "watch", "update")
    ] + [("storage.k8s.io", "storageclasses", verb) for verb in ("list", "watch")]
    denied = []
    for group, resource, verb in wanted:
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
            denied.append(f"{verb} {group or 'core'}/{resource}")
    assert denied == []
