"""The built-in provisioner's decisions (pure): which claims this node provisions, CreateVolume
from class and claim, the PV it writes, and which PVs it deletes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubext_proto.csi.v1 import csi_pb2

from .. import provisioning as p

ME = p.Identity(
    driver="csi.kubext.io", node_id="node-a", topology_key="topology.csi.kubext.io/node"
)
Mode = csi_pb2.VolumeCapability.AccessMode


def storage_class(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "local"},
        "provisioner": ME.driver,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        **spec,
    }


def claim(*, annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "data",
            "namespace": "db",
            "uid": "1234-abcd",
            "resourceVersion": "77",
            "annotations": {
                p.STORAGE_PROVISIONER: ME.driver,
                p.SELECTED_NODE: "node-a",
                **(annotations or {}),
            },
        },
        "spec": {
            "storageClassName": "local",
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "64Mi"}},
            **spec,
        },
        "status": {"phase": "Pending"},
    }


def without(obj: dict[str, Any], *path: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    inner = obj
    for key in path[:-1]:
        inner = inner[key]
    del inner[path[-1]]
    return obj


# --- which claims ------------------------------------------------------------------------------


def test_wait_for_first_consumer_only_the_selected_node_provisions() -> None:
    assert p.claim_action(claim(), storage_class(), ME) is p.Action.PROVISION
    other = claim(annotations={p.SELECTED_NODE: "node-b"})
    assert p.claim_action(other, storage_class(), ME) is p.Action.SKIP
    not_yet = without(claim(), "metadata", "annotations", p.SELECTED_NODE)
    assert p.claim_action(not_yet, storage_class(), ME) is p.Action.SKIP


def test_immediate_binding_takes_an_unclaimed_claim_first() -> None:
    immediate = storage_class(volumeBindingMode="Immediate")
    unclaimed = without(claim(), "metadata", "annotations", p.SELECTED_NODE)
    assert p.claim_action(unclaimed, immediate, ME) is p.Action.TAKE
    assert p.take_patch(unclaimed, ME) == {
        "metadata": {"resourceVersion": "77", "annotations": {p.SELECTED_NODE: "node-a"}}
    }
    # Taken by this node: provision; by another: leave it.
    assert p.claim_action(claim(), immediate, ME) is p.Action.PROVISION
    taken = claim(annotations={p.SELECTED_NODE: "node-b"})
    assert p.claim_action(taken, immediate, ME) is p.Action.SKIP


def test_immediate_binding_honours_allowed_topologies() -> None:
    def allowed(*nodes: str) -> dict[str, Any]:
        term = {"matchLabelExpressions": [{"key": ME.topology_key, "values": list(nodes)}]}
        return storage_class(volumeBindingMode="Immediate", allowedTopologies=[term])

    unclaimed = without(claim(), "metadata", "annotations", p.SELECTED_NODE)
    assert p.claim_action(unclaimed, allowed("node-a", "node-c"), ME) is p.Action.TAKE
    assert p.claim_action(unclaimed, allowed("node-b"), ME) is p.Action.SKIP


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda c, s: (c, {**s, "provisioner": "other.example.com"}), "another driver's class"),
        (lambda c, s: (c, None), "no such class"),
        (lambda c, s: (c | {"spec": {**c["spec"], "volumeName": "pv-1"}}, s), "bound by name"),
        (lambda c, s: (c | {"status": {"phase": "Bound"}}, s), "already bound"),
        (
            lambda c, s: (without(c, "metadata", "annotations", p.STORAGE_PROVISIONER), s),
            "not handed to our driver by the PV controller",
        ),
        (
            lambda c, s: ({**c, "metadata": {**c["metadata"], "deletionTimestamp": "t"}}, s),
            "being deleted",
        ),
    ],
)
def test_claims_that_are_not_ours_are_skipped(change: Any, why: str) -> None:
    the_claim, the_class = change(claim(), storage_class())
    assert p.claim_action(the_claim, the_class, ME) is p.Action.SKIP, why


def test_the_beta_provisioner_annotation_counts_too() -> None:
    beta = without(claim(), "metadata", "annotations", p.STORAGE_PROVISIONER)
    beta["metadata"]["annotations"][p.BETA_STORAGE_PROVISIONER] = ME.driver
    assert p.claim_action(beta, storage_class(), ME) is p.Action.PROVISION


# --- CreateVolume ------------------------------------------------------------------------------


def test_create_request_from_class_and_claim() -> None:
    the_class = storage_class(
        parameters={"type": "local", "csi.storage.k8s.io/fstype": "ext3"},
        mountOptions=["noatime"],
    )
    the_claim = claim(
        accessModes=["ReadWriteOncePod"],
        resources={"requests": {"storage": "64Mi"}, "limits": {"storage": "1Gi"}},
    )
    request = p.create_request(the_claim, the_class, ME)
    assert request.name == "pvc-1234-abcd"
    assert request.capacity_range.required_bytes == 64 << 20
    assert request.capacity_range.limit_bytes == 1 << 30
    assert dict(request.parameters) == {"type": "local"}, "the provisioner's own keys stay out"
    (capability,) = request.volume_capabilities
    assert capability.access_mode.mode == Mode.SINGLE_NODE_SINGLE_WRITER
    assert capability.mount.fs_type == "ext3" and list(capability.mount.mount_flags) == ["noatime"]
    node = csi_pb2.Topology(segments={ME.topology_key: "node-a"})
    assert list(request.accessibility_requirements.requisite) == [node]
    assert list(request.accessibility_requirements.preferred) == [node]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("ReadWriteOnce", Mode.SINGLE_NODE_WRITER),
        ("ReadOnlyMany", Mode.MULTI_NODE_READER_ONLY),
        ("ReadWriteMany", Mode.MULTI_NODE_MULTI_WRITER),
        ("ReadWriteOncePod", Mode.SINGLE_NODE_SINGLE_WRITER),
    ],
)
def test_access_modes_become_capabilities(mode: str, expected: int) -> None:
    request = p.create_request(claim(accessModes=[mode]), storage_class(), ME)
    assert [c.access_mode.mode for c in request.volume_capabilities] == [expected]


def test_block_claims_ask_for_block_access() -> None:
    request = p.create_request(claim(volumeMode="Block"), storage_class(), ME)
    (capability,) = request.volume_capabilities
    assert capability.WhichOneof("access_type") == "block"


def test_default_fstype_is_ext4() -> None:
    (capability,) = p.create_request(claim(), storage_class(), ME).volume_capabilities
    assert capability.mount.fs_type == "ext4"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"resources": {}}, "requests no storage"),
        ({"resources": {"requests": {"storage": "lots"}}}, "spec.resources.requests.storage"),
        (
            {"resources": {"requests": {"storage": "2Gi"}, "limits": {"storage": "1Gi"}}},
            "below the request",
        ),
        ({"accessModes": []}, "no access mode"),
        ({"accessModes": ["ReadWriteSometimes"]}, "'ReadWriteSometimes'"),
        ({"dataSource": {"kind": "VolumeSnapshot", "name": "s"}}, "does not restore"),
    ],
)
def test_bad_claims_are_errors_that_say_why(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(p.ClaimError, match=message):
        p.create_request(claim(**spec), storage_class(), ME)


# --- the PV ------------------------------------------------------------------------------------


def volume() -> csi_pb2.Volume:
    return csi_pb2.Volume(
        volume_id="vol-1",
        capacity_bytes=64 << 20,
        volume_context={"iopsClass": "standard"},
        accessible_topology=[csi_pb2.Topology(segments={ME.topology_key: "node-a"})],
    )


def test_pv_records_the_volume_and_binds_the_claim() -> None:
    pv = p.persistent_volume(claim(), storage_class(mountOptions=["noatime"]), volume(), ME)
    assert pv["metadata"] == {
        "name": "pvc-1234-abcd",
        "annotations": {p.PROVISIONED_BY: ME.driver},
        "finalizers": [p.FINALIZER],
    }
    spec = pv["spec"]
    assert spec["capacity"] == {"storage": "64Mi"}
    assert spec["accessModes"] == ["ReadWriteOnce"]
    assert spec["persistentVolumeReclaimPolicy"] == "Delete"
    assert spec["storageClassName"] == "local"
    assert spec["mountOptions"] == ["noatime"]
    assert spec["volumeMode"] == "Filesystem"
    assert spec["claimRef"] == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": "db",
        "name": "data",
        "uid": "1234-abcd",
        "resourceVersion": "77",
    }
    assert spec["csi"] == {
        "driver": ME.driver,
        "volumeHandle": "vol-1",
        "volumeAttributes": {"iopsClass": "standard"},
        "fsType": "ext4",
    }
    expression = {"key": ME.topology_key, "operator": "In", "values": ["node-a"]}
    assert spec["nodeAffinity"] == {
        "required": {"nodeSelectorTerms": [{"matchExpressions": [expression]}]}
    }


def test_retained_and_block_pvs() -> None:
    pv = p.persistent_volume(
        claim(volumeMode="Block"), storage_class(reclaimPolicy="Retain"), volume(), ME
    )
    assert "finalizers" not in pv["metadata"], "only a Delete PV waits for its volume's deletion"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["volumeMode"] == "Block" and "fsType" not in pv["spec"]["csi"]
    assert "mountOptions" not in pv["spec"]


# --- deletion ----------------------------------------------------------------------------------


def released_pv(**changes: Any) -> dict[str, Any]:
    pv = p.persistent_volume(claim(), storage_class(), volume(), ME)
    pv["metadata"] |= {"uid": "pv-uid", "resourceVersion": "90"}
    pv["metadata"]["finalizers"] = ["kubernetes.io/pv-protection", p.FINALIZER]
    pv["status"] = {"phase": "Released"}
    for key, value in changes.items():
        pv[key] = value
    return pv


def test_a_released_delete_pv_of_this_node_is_deleted() -> None:
    assert p.should_delete_volume(released_pv(), ME)
    bound = released_pv(status={"phase": "Bound"})
    assert not p.should_delete_volume(bound, ME)
    # Being deleted while bound, with our finalizer: the volume goes too (HonorPVReclaimPolicy).
    bound["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert p.should_delete_volume(bound, ME)


def test_pvs_not_ours_are_left_alone() -> None:
    retained = released_pv()
    retained["spec"]["persistentVolumeReclaimPolicy"] = "Retain"
    assert not p.should_delete_volume(retained, ME)
    other_node = p.Identity(driver=ME.driver, node_id="node-b", topology_key=ME.topology_key)
    assert not p.should_delete_volume(released_pv(), other_node)
    by_hand = released_pv()
    del by_hand["metadata"]["annotations"][p.PROVISIONED_BY]
    assert not p.should_delete_volume(by_hand, ME)


def test_removing_the_finalizer_keeps_the_others() -> None:
    assert p.without_finalizer(released_pv()) == {
        "metadata": {"resourceVersion": "90", "finalizers": ["kubernetes.io/pv-protection"]}
    }


def test_failure_message_and_backoff() -> None:
    message = p.failure_message(storage_class(), "RESOURCE_EXHAUSTED", "the pool is full")
    assert message == (
        'failed to provision volume with StorageClass "local": '
        "rpc error: code = RESOURCE_EXHAUSTED desc = the pool is full"
    )
    delays = [p.backoff_seconds(n, initial=1, maximum=300) for n in range(0, 11)]
    assert delays == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
