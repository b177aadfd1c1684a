"""A restart in the middle of a lifecycle loses nothing; after a "reboot" the driver re-attaches
loop devices and re-mounts staging and target paths from its state."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import grpc
import pytest

from kubext_proto.csi.v1 import csi_pb2

from .. import system
from .conftest import Running, needs_root, start
from .helpers import block_cap, create_request
from .test_lifecycle import stage_and_publish, unpublish_and_unstage

pytestmark = needs_root


def _half_done_lifecycle(run: Running) -> dict:
    """Volume a staged+published with data, b staged+published as block, c only created."""
    a = run.controller.CreateVolume(create_request("a")).volume.volume_id
    a_staging, a_target = stage_and_publish(run, a)
    Path(a_target, "data").write_text("before restart")
    b = run.controller.CreateVolume(create_request("b", cap=block_cap())).volume.volume_id
    b_staging, b_target = stage_and_publish(run, b, cap=block_cap())
    with open(b_target, "r+b") as dev:
        dev.write(b"block-data")
    c = run.controller.CreateVolume(create_request("c")).volume.volume_id
    snap = run.controller.CreateSnapshot(
        csi_pb2.CreateSnapshotRequest(name="snap-a", source_volume_id=a)
    ).snapshot.snapshot_id
    return {
        "a": (a, a_staging, a_target),
        "b": (b, b_staging, b_target),
        "c": c,
        "snap": snap,
    }


def _finish_lifecycle(run: Running, held: dict) -> None:
    a, a_staging, a_target = held["a"]
    b, b_staging, b_target = held["b"]
    assert Path(a_target, "data").read_text() == "before restart"
    Path(a_target, "more").write_text("after restart")  # still writable
    with open(b_target, "rb") as dev:
        assert dev.read(10) == b"block-data"
    for volume_id, staging, target in (held["a"], held["b"]):
        unpublish_and_unstage(run, volume_id, staging, target)
    # The retried creations answer with the same volumes: names survived.
    assert run.controller.CreateVolume(create_request("c")).volume.volume_id == held["c"]
    snapshots = run.controller.ListSnapshots(csi_pb2.ListSnapshotsRequest()).entries
    assert [s.snapshot.snapshot_id for s in snapshots] == [held["snap"]]
    run.controller.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=held["snap"]))
    for volume_id in (a, b, held["c"]):
        run.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id))
    assert run.controller.ListVolumes(csi_pb2.ListVolumesRequest()).entries == []
    assert system.loops_for(run.driver.image(a)) == []


def test_process_restart_keeps_every_volume_usable(tools: None, workdir: Path) -> None:
    run = start(workdir)
    try:
        held = _half_done_lifecycle(run)
        volumes_before = run.controller.ListVolumes(csi_pb2.ListVolumesRequest())
    finally:
        run.stop()
    run = start(workdir)  # mounts and loop devices are still there; state comes from SQLite
    try:
        assert run.controller.ListVolumes(csi_pb2.ListVolumesRequest()) == volumes_before
        a = held["a"][0]
        got = run.controller.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id=a))
        assert not got.status.volume_condition.abnormal
        assert list(got.status.published_node_ids) == ["node-a"]
        _finish_lifecycle(run, held)
    finally:
        run.stop()


def test_reboot_reestablishes_loop_devices_and_mounts(tools: None, workdir: Path) -> None:
    run = start(workdir)
    try:
        held = _half_done_lifecycle(run)
        os.sync()
    finally:
        run.stop()
    system.release_under(workdir)  # what a reboot does: every mount and loop device is gone
    a, a_staging, a_target = held["a"]
    assert system.mount_at(a_target) is None
    assert system.loops_for(workdir / "state" / "volumes" / f"{a}.img") == []

    run = start(workdir)
    try:
        assert system.mount_at(a_staging) is not None
        assert system.mount_at(a_target) is not None
        assert system.mount_at(held["b"][2]) is not None
        _finish_lifecycle(run, held)
    finally:
        run.stop()


def test_restart_removes_half_created_files(tools: None, workdir: Path) -> None:
    run = start(workdir)
    kept = run.controller.CreateVolume(create_request("kept")).volume.volume_id
    run.stop()
    volumes = workdir / "state" / "volumes"
    orphan = volumes / f"{uuid.uuid4()}.img"  # a crash between creating a file and recording it
    orphan.write_bytes(b"")
    partial = volumes / f"{uuid.uuid4()}.img.partial"  # a crash in the middle of a copy
    partial.write_bytes(b"")
    run = start(workdir)
    try:
        assert not orphan.exists() and not partial.exists()
        assert (volumes / f"{kept}.img").exists()
        with pytest.raises(grpc.RpcError) as err:
            run.controller.ControllerGetVolume(
                csi_pb2.ControllerGetVolumeRequest(volume_id=orphan.stem)
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        run.stop()


def _attached_through_another_mount(workdir: Path, image: Path) -> str:
    """A loop device on ``image`` attached through a bind mount that is then gone, as a driver
    container's devices look to the next container (and to the host): the kernel names the
    file by a path of that mount ("/v.img"), not by ``image``."""
    other = workdir / "other-namespace"
    other.mkdir(exist_ok=True)
    subprocess.run(["mount", "--bind", str(image.parent), str(other)], check=True)
    try:
        device = subprocess.run(
            ["losetup", "--find", "--show", str(other / image.name)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    finally:
        subprocess.run(["umount", "--lazy", str(other)], check=True)
    assert system._loop_backing(device.removeprefix("/dev/")) != str(image)
    return device


def test_a_loop_device_attached_through_another_mount_is_found_reused_and_detached(
    tools: None, workdir: Path
) -> None:
    image = workdir / "images" / "v.img"
    image.parent.mkdir(parents=True)
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    device = _attached_through_another_mount(workdir, image)
    try:
        assert system.loops_for(image) == [device]
        assert system.attach_loop(image) == device  # not a second device on the same file
        system.detach_loops(image)
        assert system.loops_for(image, detaching=True) == []
        assert not Path(f"/sys/block/{device.removeprefix('/dev/')}/loop").exists()
        # release_under (a node's state dir uninstalled) finds such a device too.
        device = _attached_through_another_mount(workdir, image)
        system.release_under(workdir)
        assert system.loops_for(image, detaching=True) == []
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)
