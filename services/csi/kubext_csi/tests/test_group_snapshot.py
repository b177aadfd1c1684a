"""GroupController: a group snapshot freezes every member's filesystem at once, each member is
restorable on its own, names are idempotent, and the group survives a restart."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import grpc
import pytest

from kubext_proto.csi.v1 import csi_pb2, csi_pb2_grpc

from .. import groupcontroller, system
from .conftest import Running, needs_root, start
from .helpers import create_request, mount_cap
from .test_lifecycle import stage_and_publish, unpublish_and_unstage

pytestmark = needs_root


def _groups(run: Running) -> csi_pb2_grpc.GroupControllerStub:
    return csi_pb2_grpc.GroupControllerStub(run.channel)


def _create(run: Running, name: str, *volume_ids: str) -> csi_pb2.VolumeGroupSnapshot:
    request = csi_pb2.CreateVolumeGroupSnapshotRequest(name=name, source_volume_ids=volume_ids)
    return _groups(run).CreateVolumeGroupSnapshot(request).group_snapshot


def _code(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    return err.value.code(), err.value.details()


def _is_frozen(mount_point: str) -> bool:
    """FIFREEZE on a frozen filesystem is EBUSY; one that was not frozen is thawed again."""
    fd = os.open(mount_point, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.ioctl(fd, system.FIFREEZE, 0)
        except OSError as exc:
            return exc.errno == errno.EBUSY
        fcntl.ioctl(fd, system.FITHAW, 0)
        return False
    finally:
        os.close(fd)


def _restore(run: Running, name: str, snapshot_id: str) -> str:
    source = csi_pb2.VolumeContentSource(
        snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=snapshot_id)
    )
    request = create_request(name, volume_content_source=source)
    return run.controller.CreateVolume(request).volume.volume_id


def test_group_snapshot_freezes_all_members_and_restores_each(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, mounts = [], {}
    for name in ("db", "wal"):
        vol_id = running.controller.CreateVolume(create_request(name)).volume.volume_id
        staging, target = stage_and_publish(running, vol_id, name=name)
        Path(target, "data").write_text(f"{name} before")
        ids.append(vol_id)
        mounts[vol_id] = (staging, target)
    idle = running.controller.CreateVolume(create_request("idle")).volume.volume_id
    ids.append(idle)  # never staged: nothing writes it, copied as it is

    # While any member is copied, every staged member must still be frozen: one point in time.
    frozen_during_copies = []
    copy = system.copy_sparse

    def watching_copy(source: Path, target: Path, *, size: int) -> None:
        frozen_during_copies.append([_is_frozen(s) for s, _ in mounts.values()])
        copy(source, target, size=size)

    monkeypatch.setattr(groupcontroller.system, "copy_sparse", watching_copy)
    group = _create(running, "nightly", *ids)
    monkeypatch.undo()
    assert frozen_during_copies == [[True, True]] * 3
    assert not any(_is_frozen(s) for s, _ in mounts.values())  # thawed afterwards

    for _, target in mounts.values():
        Path(target, "data").write_text("after")  # writable again; not in the snapshot
    members = {s.source_volume_id: s for s in group.snapshots}
    assert sorted(members) == sorted(ids)
    assert all(
        s.group_snapshot_id == group.group_snapshot_id and s.ready_to_use for s in members.values()
    )
    listed = running.controller.ListSnapshots(csi_pb2.ListSnapshotsRequest()).entries
    assert sorted(e.snapshot.snapshot_id for e in listed) == sorted(
        s.snapshot_id for s in members.values()
    )

    for name, vol_id in zip(("db", "wal"), ids[:2], strict=True):  # each restored on its own
        restored = _restore(running, f"{name}-restored", members[vol_id].snapshot_id)
        staging, target = stage_and_publish(running, restored, name=f"{name}-r")
        assert Path(target, "data").read_text() == f"{name} before"
        unpublish_and_unstage(running, restored, staging, target)
        running.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=restored))

    # A member goes only with its group.
    code, _ = _code(
        running.controller.DeleteSnapshot,
        csi_pb2.DeleteSnapshotRequest(snapshot_id=members[idle].snapshot_id),
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    member_ids = [s.snapshot_id for s in group.snapshots]
    _groups(running).DeleteVolumeGroupSnapshot(
        csi_pb2.DeleteVolumeGroupSnapshotRequest(
            group_snapshot_id=group.group_snapshot_id, snapshot_ids=member_ids
        )
    )
    assert running.controller.ListSnapshots(csi_pb2.ListSnapshotsRequest()).entries == []
    assert list((running.root / "state" / "snapshots").iterdir()) == []
    _groups(running).DeleteVolumeGroupSnapshot(  # gone: a retry succeeds
        csi_pb2.DeleteVolumeGroupSnapshotRequest(group_snapshot_id=group.group_snapshot_id)
    )
    for vol_id, (staging, target) in mounts.items():
        unpublish_and_unstage(running, vol_id, staging, target)


def test_group_snapshot_requests_and_idempotency(running: Running) -> None:
    a = running.controller.CreateVolume(create_request("a")).volume.volume_id
    b = running.controller.CreateVolume(create_request("b", cap=mount_cap())).volume.volume_id
    group = _create(running, "g", a, b)
    assert _create(running, "g", b, a) == group  # a retry, the volumes in another order
    groups = _groups(running)
    Create = csi_pb2.CreateVolumeGroupSnapshotRequest
    member_ids = [s.snapshot_id for s in group.snapshots]
    cases = [
        (
            groups.CreateVolumeGroupSnapshot,
            Create(name="g", source_volume_ids=[a]),
            "ALREADY_EXISTS",
            "exists",
        ),
        (
            groups.CreateVolumeGroupSnapshot,
            Create(source_volume_ids=[a]),
            "INVALID_ARGUMENT",
            "name",
        ),
        (
            groups.CreateVolumeGroupSnapshot,
            Create(name="n"),
            "INVALID_ARGUMENT",
            "source_volume_ids",
        ),
        (
            groups.CreateVolumeGroupSnapshot,
            Create(name="n", source_volume_ids=[a, a]),
            "INVALID_ARGUMENT",
            a,
        ),
        (
            groups.CreateVolumeGroupSnapshot,
            Create(name="n", source_volume_ids=[a, "gone"]),
            "NOT_FOUND",
            "gone",
        ),
        (
            groups.CreateVolumeGroupSnapshot,
            Create(name="n", source_volume_ids=[a], parameters={"x": "1"}),
            "INVALID_ARGUMENT",
            "'x'",
        ),
        (
            groups.GetVolumeGroupSnapshot,
            csi_pb2.GetVolumeGroupSnapshotRequest(),
            "INVALID_ARGUMENT",
            "group_snapshot_id",
        ),
        (
            groups.GetVolumeGroupSnapshot,
            csi_pb2.GetVolumeGroupSnapshotRequest(group_snapshot_id="fake-vol-id"),
            "NOT_FOUND",
            "fake-vol-id",
        ),
        (
            groups.GetVolumeGroupSnapshot,
            csi_pb2.GetVolumeGroupSnapshotRequest(
                group_snapshot_id=group.group_snapshot_id, snapshot_ids=member_ids[:1]
            ),
            "INVALID_ARGUMENT",
            "snapshot_ids",
        ),
        (
            groups.DeleteVolumeGroupSnapshot,
            csi_pb2.DeleteVolumeGroupSnapshotRequest(
                group_snapshot_id=group.group_snapshot_id, snapshot_ids=["other"]
            ),
            "INVALID_ARGUMENT",
            "snapshot_ids",
        ),
    ]
    for call, request, code, named in cases:
        got, details = _code(call, request)
        assert (got.name, named in details) == (code, True), details
    assert running.controller.ListSnapshots(csi_pb2.ListSnapshotsRequest()).entries != []
    got = groups.GetVolumeGroupSnapshot(
        csi_pb2.GetVolumeGroupSnapshotRequest(
            group_snapshot_id=group.group_snapshot_id, snapshot_ids=member_ids
        )
    ).group_snapshot
    assert got == group
    # The members take pool space like any snapshot: two 64 MiB copies.
    assert running.driver.store.used_bytes() == 4 * 64 * (1 << 20)


def test_group_snapshot_survives_restart(tools: None, workdir: Path) -> None:
    run = start(workdir)
    try:
        a = run.controller.CreateVolume(create_request("a")).volume.volume_id
        group = _create(run, "kept", a)
    finally:
        run.stop()
    run = start(workdir)
    try:
        assert _create(run, "kept", a) == group  # the name is still known
        got = _groups(run).GetVolumeGroupSnapshot(
            csi_pb2.GetVolumeGroupSnapshotRequest(
                group_snapshot_id=group.group_snapshot_id,
                snapshot_ids=[s.snapshot_id for s in group.snapshots],
            )
        )
        assert got.group_snapshot == group
        assert run.driver.snapshot_image(group.snapshots[0].snapshot_id).exists()
    finally:
        run.stop()
