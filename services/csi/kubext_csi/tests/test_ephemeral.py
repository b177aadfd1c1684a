"""CSI ephemeral inline volumes: the kubelet calls NodePublishVolume alone (no CreateVolume, no
NodeStageVolume) and NodeUnpublishVolume must delete what publishing created."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import grpc
import pytest

from kubext_proto.csi.v1 import csi_pb2

from .. import errors, state, system, validation
from .conftest import Running, needs_root, start
from .helpers import MiB, block_cap, create_request, mount_cap

GiB = 1 << 30
# What the kubelet sends for an inline volume (podInfoOnMount adds the pod keys).
POD_INFO = {
    "csi.storage.k8s.io/ephemeral": "true",
    "csi.storage.k8s.io/pod.name": "web-0",
    "csi.storage.k8s.io/pod.namespace": "default",
    "csi.storage.k8s.io/pod.uid": "0d5c1a43-7f5e-4c4b-9d59-3a4f0f0d9e10",
    "csi.storage.k8s.io/serviceAccount.name": "default",
}
VOLUME_ID = "csi-" + "ab12" * 16  # the kubelet's csi-<sha256 hex>


def publish_request(
    run: Running, *, volume_id: str = VOLUME_ID, cap=None, **attributes: str
) -> csi_pb2.NodePublishVolumeRequest:
    return csi_pb2.NodePublishVolumeRequest(
        volume_id=volume_id,
        target_path=str(run.root / "pods" / volume_id[:12] / "mount"),
        volume_capability=cap or mount_cap(),
        volume_context={**POD_INFO, **attributes},
    )


def unpublish(run: Running, request: csi_pb2.NodePublishVolumeRequest) -> None:
    run.node.NodeUnpublishVolume(
        csi_pb2.NodeUnpublishVolumeRequest(
            volume_id=request.volume_id, target_path=request.target_path
        )
    )


def test_ephemeral_attributes_are_checked() -> None:
    ours = {"csi.storage.k8s.io/ephemeral": "true"}
    assert validation.is_ephemeral(ours)
    assert not validation.is_ephemeral({"csi.storage.k8s.io/ephemeral": "false"})
    assert not validation.is_ephemeral({})
    sizes = {"default": GiB, "maximum": 4 * GiB}
    assert validation.ephemeral_size(ours, **sizes) == GiB
    assert validation.ephemeral_size({**ours, "size": "100Mi"}, **sizes) == 100 * MiB
    assert validation.ephemeral_size({**ours, "size": "1M"}, **sizes) == 16 * MiB  # the minimum
    with pytest.raises(errors.CsiError) as err:
        validation.ephemeral_size({**ours, "size": "5Gi"}, **sizes)
    assert err.value.code == errors.Code.OUT_OF_RANGE
    for bad in ("lots", "-1Gi", "0", ""):
        with pytest.raises(errors.CsiError) as err:
            validation.ephemeral_size({**ours, "size": bad}, **sizes)
        assert err.value.code == errors.Code.INVALID_ARGUMENT
        assert "size" in err.value.message
    with pytest.raises(errors.CsiError) as err:
        validation.ephemeral_size({**ours, "colour": "blue", "zz": "1"}, **sizes)
    assert err.value.code == errors.Code.INVALID_ARGUMENT
    assert "'colour'" in err.value.message and "'zz'" in err.value.message


@needs_root
def test_publish_creates_mounts_and_unpublish_deletes(running: Running) -> None:
    request = publish_request(running, size="64Mi")
    running.node.NodePublishVolume(request)
    target = request.target_path
    mounted = system.mount_at(target)
    assert mounted is not None and mounted.source.startswith("/dev/loop")
    Path(target, "hello").write_text("inline")
    assert Path(target, "hello").read_text() == "inline"
    st = system.fs_stats(target)
    assert 48 * MiB < st.total <= 64 * MiB  # the size attribute, enforced by the filesystem
    image = running.driver.image(VOLUME_ID)
    assert image.exists()
    volume = running.driver.store.get_volume(VOLUME_ID)
    assert volume.ephemeral and volume.capacity == 64 * MiB

    unpublish(running, request)
    assert system.mount_at(target) is None
    assert not os.path.exists(target)
    assert not image.exists(), "NodeUnpublishVolume must delete an ephemeral volume"
    assert system.loops_for(image) == []
    store = running.driver.store
    assert store.find_volume(VOLUME_ID) is None and store.find_stage(VOLUME_ID) is None
    assert store.publishes() == []
    assert running.driver.available_bytes() == running.driver.settings.pool_bytes


@needs_root
def test_publish_without_size_uses_the_default(running: Running) -> None:
    request = publish_request(running)
    running.node.NodePublishVolume(request)
    assert running.driver.store.get_volume(VOLUME_ID).capacity == GiB  # default_volume_bytes
    unpublish(running, request)


@needs_root
def test_second_publish_is_idempotent(running: Running) -> None:
    request = publish_request(running, size="32Mi")
    running.node.NodePublishVolume(request)
    Path(request.target_path, "kept").write_text("once")
    running.node.NodePublishVolume(request)  # a retry: same volume, same data, one mount
    assert Path(request.target_path, "kept").read_text() == "once"
    assert len(running.driver.store.publishes(VOLUME_ID)) == 1
    assert len(system.loops_for(running.driver.image(VOLUME_ID))) == 1

    with pytest.raises(grpc.RpcError) as err:  # the same id with another size is not a retry
        running.node.NodePublishVolume(publish_request(running, size="48Mi"))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    other_target = csi_pb2.NodePublishVolumeRequest()
    other_target.CopyFrom(request)
    other_target.target_path = str(running.root / "pods" / "other")
    with pytest.raises(grpc.RpcError) as err:
        running.node.NodePublishVolume(other_target)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert not os.path.exists(other_target.target_path)

    unpublish(running, request)
    assert not running.driver.image(VOLUME_ID).exists()
    with pytest.raises(grpc.RpcError) as err:  # gone, as csi-driver-host-path answers
        unpublish(running, request)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


@needs_root
def test_restart_between_publish_and_unpublish(tools: None, workdir: Path) -> None:
    run = start(workdir)
    try:
        request = publish_request(run, size="32Mi")
        run.node.NodePublishVolume(request)
        Path(request.target_path, "data").write_text("before restart")
    finally:
        run.stop()
    # A "reboot": the mounts and the loop device are gone; only the state file is left.
    system.release_under(workdir)
    assert system.mount_at(request.target_path) is None
    run = start(workdir)
    try:
        assert Path(request.target_path, "data").read_text() == "before restart"
        run.node.NodePublishVolume(request)  # the kubelet's retry after the restart
        image = run.driver.image(VOLUME_ID)
        unpublish(run, request)
        assert not image.exists() and system.loops_for(image) == []
        assert system.mount_at(request.target_path) is None
        assert run.driver.store.volumes() == []
    finally:
        run.stop()


@needs_root
def test_ephemeral_without_a_publication_is_removed_at_start(tools: None, workdir: Path) -> None:
    """A crash after creating but before recording the publication leaves nothing behind."""
    run = start(workdir)
    try:
        request = publish_request(run, size="32Mi")
        run.node.NodePublishVolume(request)
        run.driver.store.delete_publish(request.target_path)  # as if the crash came first
    finally:
        run.stop()
    system.release_under(workdir)
    run = start(workdir)
    try:
        assert run.driver.store.volumes() == []
        assert not run.driver.image(VOLUME_ID).exists()
    finally:
        run.stop()


@needs_root
@pytest.mark.parametrize(
    ("change", "code", "named"),
    [
        ({"colour": "blue"}, grpc.StatusCode.INVALID_ARGUMENT, "colour"),
        ({"size": "huge"}, grpc.StatusCode.INVALID_ARGUMENT, "size"),
        ({"size": "-16Mi"}, grpc.StatusCode.INVALID_ARGUMENT, "size"),
        ({"size": "64Gi"}, grpc.StatusCode.OUT_OF_RANGE, "size"),
        ({"cap": "block"}, grpc.StatusCode.INVALID_ARGUMENT, "block"),
    ],
    ids=["unknown-key", "not-a-quantity", "negative", "too-big", "block"],
)
def test_bad_requests_create_nothing(running: Running, change: dict, code, named: str) -> None:
    attributes = dict(change)
    cap = block_cap() if attributes.pop("cap", "") == "block" else None
    request = publish_request(running, cap=cap, **attributes)
    with pytest.raises(grpc.RpcError) as err:
        running.node.NodePublishVolume(request)
    assert err.value.code() == code
    assert named in err.value.details()
    assert running.driver.store.volumes() == []
    assert list(running.driver.images.iterdir()) == []
    assert not os.path.exists(request.target_path)


@needs_root
def test_persistent_volume_id_is_not_taken_over(running: Running) -> None:
    vol = running.controller.CreateVolume(create_request("pv")).volume
    request = publish_request(running, volume_id=vol.volume_id)
    with pytest.raises(grpc.RpcError) as err:
        running.node.NodePublishVolume(request)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert running.driver.store.get_volume(vol.volume_id).capacity == vol.capacity_bytes


def test_a_schema_2_store_gains_the_ephemeral_column(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE volumes (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
        " capacity INTEGER NOT NULL, fs_type TEXT NOT NULL, source_kind TEXT NOT NULL,"
        " source_id TEXT NOT NULL, parameters TEXT NOT NULL, created_ns INTEGER NOT NULL);"
        "INSERT INTO volumes VALUES ('v1', 'pv', 16777216, 'ext4', '', '', '[]', 1);"
        "PRAGMA user_version=2;"
    )
    old.close()
    store = state.Store(path)
    try:
        assert store.get_volume("v1").ephemeral is False
        store.put_volume(state.Volume("v2", "inline", 16 * MiB, "ext4", ephemeral=True))
        assert store.get_volume("v2").ephemeral is True
    finally:
        store.close()
