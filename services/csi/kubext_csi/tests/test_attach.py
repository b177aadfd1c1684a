"""ControllerPublish as a real attach record, GetSnapshot, and volume conditions on both sides."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kubext_proto.csi.v1 import csi_pb2

from .. import controller, node, system
from .conftest import Running, needs_root, start
from .helpers import Mode, create_request, mount_cap
from .test_lifecycle import stage_and_publish, unpublish_and_unstage

RPC = csi_pb2.ControllerServiceCapability.RPC


@pytest.fixture
def two_nodes(tools: None, workdir: Path) -> Iterator[Running]:
    """A controller that also accepts attaches for node-b (its own node is node-a)."""
    run = start(workdir, attachable_node_ids=("node-b",))
    try:
        yield run
    finally:
        run.stop()


def _error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    return err.value


def _publish(
    volume_id: str, node_id: str = "node-a", *, cap=None, readonly: bool = False
) -> csi_pb2.ControllerPublishVolumeRequest:
    return csi_pb2.ControllerPublishVolumeRequest(
        volume_id=volume_id,
        node_id=node_id,
        volume_capability=cap or mount_cap(),
        readonly=readonly,
    )


def _unpublish(volume_id: str, node_id: str = "") -> csi_pb2.ControllerUnpublishVolumeRequest:
    return csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id=node_id)


def _published_nodes(run: Running, volume_id: str) -> tuple[list[str], list[str]]:
    """The volume's published_node_ids as ControllerGetVolume and as ListVolumes report them."""
    got = run.controller.ControllerGetVolume(
        csi_pb2.ControllerGetVolumeRequest(volume_id=volume_id)
    )
    listed = run.controller.ListVolumes(csi_pb2.ListVolumesRequest()).entries
    (entry,) = (e for e in listed if e.volume.volume_id == volume_id)
    return list(got.status.published_node_ids), list(entry.status.published_node_ids)


def test_capabilities_are_advertised(running: Running) -> None:
    caps = running.controller.ControllerGetCapabilities(
        csi_pb2.ControllerGetCapabilitiesRequest()
    ).capabilities
    offered = {c.rpc.type for c in caps}
    for wanted in (
        RPC.PUBLISH_UNPUBLISH_VOLUME,
        RPC.LIST_VOLUMES_PUBLISHED_NODES,
        RPC.VOLUME_CONDITION,
        RPC.GET_SNAPSHOT,
    ):
        assert wanted in offered, RPC.Type.Name(wanted)
    assert set(controller.CAPABILITIES) == offered
    node_caps = running.node.NodeGetCapabilities(csi_pb2.NodeGetCapabilitiesRequest()).capabilities
    assert csi_pb2.NodeServiceCapability.RPC.VOLUME_CONDITION in {c.rpc.type for c in node_caps}
    assert set(node.CAPABILITIES) == {c.rpc.type for c in node_caps}


def test_controller_publish_records_the_node_and_is_idempotent(running: Running) -> None:
    vol = running.controller.CreateVolume(create_request("att")).volume
    first = running.controller.ControllerPublishVolume(_publish(vol.volume_id))
    again = running.controller.ControllerPublishVolume(_publish(vol.volume_id))
    assert first == again
    # Known before any stage: the attach record, not the node's mounts, says where it is.
    assert _published_nodes(running, vol.volume_id) == (["node-a"], ["node-a"])
    running.controller.ControllerUnpublishVolume(_unpublish(vol.volume_id, "node-a"))
    running.controller.ControllerUnpublishVolume(_unpublish(vol.volume_id, "node-a"))
    assert _published_nodes(running, vol.volume_id) == ([], [])
    running.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vol.volume_id))


def test_second_single_node_attach_elsewhere_is_refused(two_nodes: Running) -> None:
    run = two_nodes
    rwo = run.controller.CreateVolume(create_request("rwo")).volume.volume_id
    run.controller.ControllerPublishVolume(_publish(rwo, "node-a"))
    err = _error(run.controller.ControllerPublishVolume, _publish(rwo, "node-b"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "node-a" in err.details()
    assert _published_nodes(run, rwo) == (["node-a"], ["node-a"])
    # Detached from node-a, it may go to node-b.
    run.controller.ControllerUnpublishVolume(_unpublish(rwo, "node-a"))
    run.controller.ControllerPublishVolume(_publish(rwo, "node-b"))
    assert _published_nodes(run, rwo) == (["node-b"], ["node-b"])

    rox_cap = mount_cap(Mode.MULTI_NODE_READER_ONLY)
    rox = run.controller.CreateVolume(create_request("rox", cap=rox_cap)).volume.volume_id
    run.controller.ControllerPublishVolume(_publish(rox, "node-b", cap=rox_cap))
    run.controller.ControllerPublishVolume(_publish(rox, "node-a", cap=rox_cap))
    assert _published_nodes(run, rox) == (["node-a", "node-b"], ["node-a", "node-b"])
    # A single-node attach is refused beside a multi-node one elsewhere, too.
    run.controller.ControllerUnpublishVolume(_unpublish(rox, "node-a"))
    err = _error(run.controller.ControllerPublishVolume, _publish(rox, "node-a"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    # No node_id: detached from every node.
    run.controller.ControllerUnpublishVolume(_unpublish(rox))
    assert _published_nodes(run, rox) == ([], [])


def test_publish_of_unknown_node_or_volume_is_not_found(running: Running) -> None:
    vol = running.controller.CreateVolume(create_request("nf")).volume.volume_id
    err = _error(running.controller.ControllerPublishVolume, _publish(vol, "node-z"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "node-z" in err.details()
    err = _error(running.controller.ControllerPublishVolume, _publish("no-such-volume"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    # Unpublishing what is not there (volume or node) is done already.
    running.controller.ControllerUnpublishVolume(_unpublish("no-such-volume", "node-a"))
    running.controller.ControllerUnpublishVolume(_unpublish(vol, "node-z"))


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (csi_pb2.ControllerPublishVolumeRequest(node_id="node-a"), "volume_id"),
        (csi_pb2.ControllerPublishVolumeRequest(volume_id="v"), "node_id"),
        (csi_pb2.ControllerPublishVolumeRequest(volume_id="v", node_id="node-a"), "capability"),
        (_publish("v", "node\x00a"), "node_id"),
        (_publish("v", "n" * 257), "node_id"),
    ],
    ids=["no-volume", "no-node", "no-capability", "control-char", "too-long"],
)
def test_bad_publish_requests_are_invalid(running: Running, request_, field: str) -> None:
    err = _error(running.controller.ControllerPublishVolume, request_)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.details()
    err = _error(running.controller.ControllerUnpublishVolume, _unpublish(""))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_republish_with_other_access_is_already_exists(running: Running) -> None:
    vol = running.controller.CreateVolume(create_request("ro")).volume.volume_id
    running.controller.ControllerPublishVolume(_publish(vol))
    err = _error(running.controller.ControllerPublishVolume, _publish(vol, readonly=True))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    running.controller.ControllerUnpublishVolume(_unpublish(vol, "node-a"))
    running.controller.ControllerPublishVolume(_publish(vol, readonly=True))


def test_attached_volume_cannot_be_deleted(running: Running) -> None:
    vol = running.controller.CreateVolume(create_request("del")).volume.volume_id
    running.controller.ControllerPublishVolume(_publish(vol))
    err = _error(running.controller.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id=vol))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert running.driver.image(vol).exists()
    running.controller.ControllerUnpublishVolume(_unpublish(vol, "node-a"))
    running.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vol))


def test_attach_limit_per_node(tools: None, workdir: Path) -> None:
    run = start(workdir, max_volumes_per_node=1)
    try:
        first = run.controller.CreateVolume(create_request("l1")).volume.volume_id
        second = run.controller.CreateVolume(create_request("l2")).volume.volume_id
        run.controller.ControllerPublishVolume(_publish(first))
        run.controller.ControllerPublishVolume(_publish(first))  # a retry is not a second volume
        err = _error(run.controller.ControllerPublishVolume, _publish(second))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        run.stop()


def test_attachments_survive_a_restart(tools: None, workdir: Path) -> None:
    run = start(workdir, attachable_node_ids=("node-b",))
    try:
        vol = run.controller.CreateVolume(create_request("keep")).volume.volume_id
        run.controller.ControllerPublishVolume(_publish(vol, "node-b"))
    finally:
        run.stop()
    run = start(workdir, attachable_node_ids=("node-b",))
    try:
        assert _published_nodes(run, vol) == (["node-b"], ["node-b"])
        err = _error(run.controller.ControllerPublishVolume, _publish(vol, "node-a"))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        run.controller.ControllerPublishVolume(_publish(vol, "node-b"))  # the retry still matches
    finally:
        run.stop()


# ---- GetSnapshot ----


def test_get_snapshot_returns_what_list_snapshots_lists(running: Running) -> None:
    vol = running.controller.CreateVolume(create_request("snapsrc")).volume.volume_id
    made = running.controller.CreateSnapshot(
        csi_pb2.CreateSnapshotRequest(name="snap-get", source_volume_id=vol)
    ).snapshot
    got = running.controller.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=made.snapshot_id))
    listed = running.controller.ListSnapshots(
        csi_pb2.ListSnapshotsRequest(snapshot_id=made.snapshot_id)
    ).entries
    assert got.snapshot == made == listed[0].snapshot
    assert got.snapshot.ready_to_use and got.snapshot.source_volume_id == vol

    running.controller.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=made.snapshot_id))
    err = _error(
        running.controller.GetSnapshot, csi_pb2.GetSnapshotRequest(snapshot_id=made.snapshot_id)
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = _error(running.controller.GetSnapshot, csi_pb2.GetSnapshotRequest())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "snapshot_id" in err.details()
    err = _error(running.controller.GetSnapshot, csi_pb2.GetSnapshotRequest(snapshot_id="../x"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


# ---- volume condition ----


def _node_condition(run: Running, volume_id: str, path: str) -> csi_pb2.VolumeCondition:
    return run.node.NodeGetVolumeStats(
        csi_pb2.NodeGetVolumeStatsRequest(volume_id=volume_id, volume_path=path)
    ).volume_condition


def _controller_conditions(run: Running, volume_id: str) -> list[csi_pb2.VolumeCondition]:
    got = run.controller.ControllerGetVolume(
        csi_pb2.ControllerGetVolumeRequest(volume_id=volume_id)
    )
    listed = run.controller.ListVolumes(csi_pb2.ListVolumesRequest()).entries
    (entry,) = (e for e in listed if e.volume.volume_id == volume_id)
    return [got.status.volume_condition, entry.status.volume_condition]


@needs_root
def test_condition_is_abnormal_when_the_mount_is_gone(running: Running) -> None:
    vol = running.controller.CreateVolume(create_request("cond-mnt")).volume.volume_id
    staging, target = stage_and_publish(running, vol)
    assert not _node_condition(running, vol, target).abnormal
    assert [c.abnormal for c in _controller_conditions(running, vol)] == [False, False]
    system.unmount(target)  # someone unmounted the pod's volume behind the driver's back
    condition = _node_condition(running, vol, target)
    assert condition.abnormal and target in condition.message
    for condition in _controller_conditions(running, vol):
        assert condition.abnormal and target in condition.message
    unpublish_and_unstage(running, vol, staging, target)
    assert [c.abnormal for c in _controller_conditions(running, vol)] == [False, False]


@needs_root
def test_condition_is_abnormal_when_the_backing_file_is_missing(running: Running) -> None:
    vol = running.controller.CreateVolume(create_request("cond-img")).volume.volume_id
    staging, target = stage_and_publish(running, vol)
    image = running.driver.image(vol)
    os.rename(image, f"{image}.away")
    try:
        condition = _node_condition(running, vol, target)
        assert condition.abnormal and "backing file" in condition.message
        for condition in _controller_conditions(running, vol):
            assert condition.abnormal and "backing file" in condition.message
    finally:
        os.rename(f"{image}.away", image)
    assert not _node_condition(running, vol, staging).abnormal
    unpublish_and_unstage(running, vol, staging, target)
