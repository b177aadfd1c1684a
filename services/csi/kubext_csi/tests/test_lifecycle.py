"""Real volumes end to end over the socket: data survives, capacity is enforced, modes honoured."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import grpc
import pytest

from kubext_proto.csi.v1 import csi_pb2

from .. import system
from .conftest import Running, needs_root
from .helpers import MiB, Mode, block_cap, create_request, mount_cap

pytestmark = needs_root


def stage_and_publish(
    run: Running, volume_id: str, *, cap=None, readonly: bool = False, name: str = "t"
) -> tuple[str, str]:
    cap = cap or mount_cap()
    staging = run.root / f"staging-{volume_id[:8]}"
    staging.mkdir(exist_ok=True)
    target = run.root / f"pods/{name}-{volume_id[:8]}"
    target.parent.mkdir(exist_ok=True)
    run.node.NodeStageVolume(
        csi_pb2.NodeStageVolumeRequest(
            volume_id=volume_id, staging_target_path=str(staging), volume_capability=cap
        )
    )
    run.node.NodePublishVolume(
        csi_pb2.NodePublishVolumeRequest(
            volume_id=volume_id,
            staging_target_path=str(staging),
            target_path=str(target),
            volume_capability=cap,
            readonly=readonly,
        )
    )
    return str(staging), str(target)


def unpublish_and_unstage(run: Running, volume_id: str, staging: str, target: str) -> None:
    run.node.NodeUnpublishVolume(
        csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=target)
    )
    run.node.NodeUnstageVolume(
        csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=staging)
    )


def test_full_lifecycle_writes_real_data(running: Running) -> None:
    vol = running.controller.CreateVolume(create_request("life")).volume
    staging, target = stage_and_publish(running, vol.volume_id)
    mounted = system.mount_at(target)
    assert mounted is not None and mounted.source.startswith("/dev/loop")
    Path(target, "hello").write_text("kubext")
    assert Path(staging, "hello").read_text() == "kubext"  # the bind mount shows the same fs

    unpublish_and_unstage(running, vol.volume_id, staging, target)
    assert not os.path.exists(target), "NodeUnpublishVolume must remove the target path"
    assert system.mount_at(staging) is None
    assert system.loops_for(running.driver.image(vol.volume_id)) == []

    # Staged again, the data is still there.
    staging, target = stage_and_publish(running, vol.volume_id)
    assert Path(target, "hello").read_text() == "kubext"
    unpublish_and_unstage(running, vol.volume_id, staging, target)
    running.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vol.volume_id))
    assert not running.driver.image(vol.volume_id).exists()


def test_capacity_is_enforced_by_the_filesystem(running: Running) -> None:
    vol = running.controller.CreateVolume(create_request("small", 16 * MiB)).volume
    assert vol.capacity_bytes == 16 * MiB
    staging, target = stage_and_publish(running, vol.volume_id)
    with pytest.raises(OSError) as err, open(Path(target, "big"), "wb") as f:
        for _ in range(32):
            f.write(b"\0" * MiB)
            f.flush()
            os.fsync(f.fileno())
    assert err.value.errno == errno.ENOSPC
    os.unlink(Path(target, "big"))
    unpublish_and_unstage(running, vol.volume_id, staging, target)


def test_readonly_publish_rejects_writes(running: Running) -> None:
    vol = running.controller.CreateVolume(create_request("ro")).volume
    staging, target = stage_and_publish(running, vol.volume_id, readonly=True)
    with pytest.raises(OSError) as err:
        Path(target, "x").write_text("no")
    assert err.value.errno == errno.EROFS
    assert "ro" in system.mount_at(target).options
    unpublish_and_unstage(running, vol.volume_id, staging, target)


def test_block_volume_exposes_the_loop_device(running: Running) -> None:
    vol = running.controller.CreateVolume(create_request("blk", cap=block_cap())).volume
    staging, target = stage_and_publish(running, vol.volume_id, cap=block_cap())
    with open(target, "r+b") as dev:
        assert dev.seek(0, os.SEEK_END) == 64 * MiB
        dev.seek(MiB)
        dev.write(b"raw-bytes")
    with open(running.driver.image(vol.volume_id), "rb") as img:
        img.seek(MiB)
        assert img.read(9) == b"raw-bytes"
    stats = running.node.NodeGetVolumeStats(
        csi_pb2.NodeGetVolumeStatsRequest(volume_id=vol.volume_id, volume_path=target)
    )
    assert stats.usage[0].total == 64 * MiB
    unpublish_and_unstage(running, vol.volume_id, staging, target)
    assert not os.path.exists(target)


def test_stats_report_real_usage(running: Running) -> None:
    vol = running.controller.CreateVolume(create_request("stats")).volume
    staging, target = stage_and_publish(running, vol.volume_id)
    request = csi_pb2.NodeGetVolumeStatsRequest(volume_id=vol.volume_id, volume_path=target)
    before = running.node.NodeGetVolumeStats(request)
    Path(target, "data").write_bytes(os.urandom(8 * MiB))
    os.sync()
    after = running.node.NodeGetVolumeStats(request)
    by_unit = {u.unit: u for u in after.usage}
    assert by_unit[csi_pb2.VolumeUsage.BYTES].used - before.usage[0].used >= 8 * MiB
    assert by_unit[csi_pb2.VolumeUsage.INODES].used > 0
    assert not after.volume_condition.abnormal
    unpublish_and_unstage(running, vol.volume_id, staging, target)


def test_expansion_grows_file_and_filesystem(running: Running) -> None:
    vol = running.controller.CreateVolume(create_request("grow", 32 * MiB)).volume
    staging, target = stage_and_publish(running, vol.volume_id)
    small = system.fs_stats(target).total
    expanded = running.controller.ControllerExpandVolume(
        csi_pb2.ControllerExpandVolumeRequest(
            volume_id=vol.volume_id, capacity_range=csi_pb2.CapacityRange(required_bytes=96 * MiB)
        )
    )
    assert expanded.capacity_bytes == 96 * MiB and expanded.node_expansion_required
    assert running.driver.image(vol.volume_id).stat().st_size == 96 * MiB
    node_expand = csi_pb2.NodeExpandVolumeRequest(
        volume_id=vol.volume_id,
        volume_path=target,
        capacity_range=csi_pb2.CapacityRange(required_bytes=96 * MiB),
    )
    if system.can_resize_online():
        running.node.NodeExpandVolume(node_expand)
    else:  # no CAP_SYS_RESOURCE (a sandbox): a precise refusal, then the offline path
        with pytest.raises(grpc.RpcError) as err:
            running.node.NodeExpandVolume(node_expand)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "CAP_SYS_RESOURCE" in err.value.details()
        unpublish_and_unstage(running, vol.volume_id, staging, target)
        staging, target = stage_and_publish(running, vol.volume_id)
        node_expand.volume_path = target
        running.node.NodeExpandVolume(node_expand)  # already grown at stage: nothing to do
    assert system.fs_stats(target).total > small + 56 * MiB
    unpublish_and_unstage(running, vol.volume_id, staging, target)


def test_snapshot_and_clones_carry_the_data(running: Running) -> None:
    src = running.controller.CreateVolume(create_request("src")).volume
    staging, target = stage_and_publish(running, src.volume_id)
    Path(target, "file").write_text("at snapshot time")
    snap = running.controller.CreateSnapshot(
        csi_pb2.CreateSnapshotRequest(name="snap", source_volume_id=src.volume_id)
    ).snapshot
    assert snap.ready_to_use and snap.size_bytes == src.capacity_bytes
    Path(target, "file").write_text("after the snapshot")
    unpublish_and_unstage(running, src.volume_id, staging, target)

    from_snap = running.controller.CreateVolume(
        create_request(
            "from-snap",
            128 * MiB,
            volume_content_source=csi_pb2.VolumeContentSource(
                snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=snap.snapshot_id)
            ),
        )
    ).volume
    assert from_snap.content_source.snapshot.snapshot_id == snap.snapshot_id
    clone = running.controller.CreateVolume(
        create_request(
            "clone",
            volume_content_source=csi_pb2.VolumeContentSource(
                volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id=src.volume_id)
            ),
        )
    ).volume
    staging, target = stage_and_publish(running, from_snap.volume_id)
    assert Path(target, "file").read_text() == "at snapshot time"
    assert system.fs_stats(target).total > 100 * MiB  # grown to the bigger size at stage
    unpublish_and_unstage(running, from_snap.volume_id, staging, target)
    staging, target = stage_and_publish(running, clone.volume_id)
    assert Path(target, "file").read_text() == "after the snapshot"
    unpublish_and_unstage(running, clone.volume_id, staging, target)

    too_small = create_request(
        "too-small",
        16 * MiB,
        volume_content_source=csi_pb2.VolumeContentSource(
            volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id=src.volume_id)
        ),
    )
    with pytest.raises(grpc.RpcError) as err:
        running.controller.CreateVolume(too_small)
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE


def test_get_capacity_tracks_the_pool(running: Running) -> None:
    pool = running.driver.settings.pool_bytes
    assert running.controller.GetCapacity(csi_pb2.GetCapacityRequest()).available_capacity == pool
    running.controller.CreateVolume(create_request("cap", 2 << 30))
    left = running.controller.GetCapacity(csi_pb2.GetCapacityRequest())
    assert left.available_capacity == pool - (2 << 30)
    elsewhere = csi_pb2.GetCapacityRequest(
        accessible_topology=csi_pb2.Topology(segments={"topology.csi.kubext.io/node": "other"})
    )
    assert running.controller.GetCapacity(elsewhere).available_capacity == 0
    with pytest.raises(grpc.RpcError) as err:
        running.controller.CreateVolume(create_request("huge", pool))
    assert err.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE)


def test_single_node_single_writer_allows_one_writer(running: Running) -> None:
    cap = mount_cap(Mode.SINGLE_NODE_SINGLE_WRITER)
    vol = running.controller.CreateVolume(create_request("snsw", cap=cap)).volume
    staging, target = stage_and_publish(running, vol.volume_id, cap=cap, name="a")
    second = csi_pb2.NodePublishVolumeRequest(
        volume_id=vol.volume_id,
        staging_target_path=staging,
        target_path=str(running.root / "pods" / "b"),
        volume_capability=cap,
    )
    with pytest.raises(grpc.RpcError) as err:
        running.node.NodePublishVolume(second)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    second.readonly = True
    running.node.NodePublishVolume(second)  # a reader next to the writer is fine
    running.node.NodeUnpublishVolume(
        csi_pb2.NodeUnpublishVolumeRequest(volume_id=vol.volume_id, target_path=second.target_path)
    )
    unpublish_and_unstage(running, vol.volume_id, staging, target)


def test_delete_refuses_a_staged_volume(running: Running) -> None:
    vol = running.controller.CreateVolume(create_request("busy")).volume
    staging, target = stage_and_publish(running, vol.volume_id)
    with pytest.raises(grpc.RpcError) as err:
        running.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vol.volume_id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    unpublish_and_unstage(running, vol.volume_id, staging, target)
