"""Bad requests get INVALID_ARGUMENT with a message naming the field; nothing outside the state
directory is touched; concurrent CreateVolume of one name yields one volume."""

from __future__ import annotations

import concurrent.futures

import grpc
import pytest

from kubext_proto.csi.v1 import csi_pb2

from .conftest import Running
from .helpers import create_request, mount_cap


def _error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    return err.value


TRAVERSAL_IDS = ["../../etc/passwd", "..", ".hidden", "a/b", "a\\b", "x" * 129, "vol\x00id"]


@pytest.mark.parametrize("bad_id", TRAVERSAL_IDS, ids=lambda v: repr(v)[:20])
def test_traversal_volume_ids_are_rejected(running: Running, bad_id: str) -> None:
    sentinel = running.root / "state" / "victim.img"
    sentinel.write_text("keep me")
    requests = [
        (running.controller.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id=bad_id)),
        (
            running.controller.ControllerGetVolume,
            csi_pb2.ControllerGetVolumeRequest(volume_id=bad_id),
        ),
        (
            running.node.NodeStageVolume,
            csi_pb2.NodeStageVolumeRequest(
                volume_id=bad_id,
                staging_target_path=str(running.root / "s"),
                volume_capability=mount_cap(),
            ),
        ),
        (running.controller.DeleteSnapshot, csi_pb2.DeleteSnapshotRequest(snapshot_id=bad_id)),
        (
            running.controller.CreateSnapshot,
            csi_pb2.CreateSnapshotRequest(name="s", source_volume_id=bad_id),
        ),
    ]
    for call, request in requests:
        err = _error(call, request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (call, err.details())
        assert "_id" in err.details()  # names the field
    assert sentinel.read_text() == "keep me"


@pytest.mark.parametrize(
    "path",
    ["relative/path", "/tmp/../etc", "/x/./y", "/etc/kubernetes"],
)
def test_bad_node_paths_are_rejected(running: Running, path: str) -> None:
    vol = running.controller.CreateVolume(create_request("paths")).volume
    err = _error(
        running.node.NodeStageVolume,
        csi_pb2.NodeStageVolumeRequest(
            volume_id=vol.volume_id, staging_target_path=path, volume_capability=mount_cap()
        ),
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "staging_target_path" in err.details()


@pytest.mark.parametrize(
    ("name", "word"),
    [
        pytest.param("", "missing", id="empty"),
        pytest.param("n" * 129, "128 bytes", id="too-long"),
        pytest.param("pvc/../x", "path separators", id="slash"),
        pytest.param("tab\tname", "control", id="control"),
    ],
)
def test_bad_names_are_rejected(running: Running, name: str, word: str) -> None:
    err = _error(running.controller.CreateVolume, create_request(name))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert word in err.details() and "name" in err.details()


def test_unknown_parameter_and_unsupported_mode_are_named(running: Running) -> None:
    err = _error(running.controller.CreateVolume, create_request("p", parameters={"tier": "x"}))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "'tier'" in err.details()
    multi = mount_cap(csi_pb2.VolumeCapability.AccessMode.MULTI_NODE_MULTI_WRITER)
    err = _error(running.controller.CreateVolume, create_request("m", cap=multi))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "MULTI_NODE_MULTI_WRITER" in err.details()


def test_concurrent_create_of_one_name_yields_one_volume(running: Running) -> None:
    request = create_request("same-name")
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: running.controller.CreateVolume(request), range(16)))
    ids = {r.volume.volume_id for r in results}
    assert len(ids) == 1
    listed = running.controller.ListVolumes(csi_pb2.ListVolumesRequest()).entries
    assert [e.volume.volume_id for e in listed] == list(ids)
    images = list((running.root / "state" / "volumes").iterdir())
    assert [p.name for p in images] == [f"{ids.pop()}.img"]


def test_concurrent_create_of_distinct_names(running: Running) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(lambda i: running.controller.CreateVolume(create_request(f"v{i}")), range(8))
        )
    assert len({r.volume.volume_id for r in results}) == 8


def test_same_name_other_size_is_already_exists(running: Running) -> None:
    running.controller.CreateVolume(create_request("sized", 32 << 20))
    err = _error(running.controller.CreateVolume, create_request("sized", 64 << 20))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS


def test_list_volumes_pages_and_rejects_bad_tokens(running: Running) -> None:
    made = [
        running.controller.CreateVolume(create_request(f"p{i}")).volume.volume_id for i in range(5)
    ]
    seen, token = [], ""
    for _ in range(5):
        page = running.controller.ListVolumes(
            csi_pb2.ListVolumesRequest(max_entries=2, starting_token=token)
        )
        seen += [e.volume.volume_id for e in page.entries]
        token = page.next_token
        if not token:
            break
    assert seen == made
    err = _error(running.controller.ListVolumes, csi_pb2.ListVolumesRequest(starting_token="zz"))
    assert err.code() == grpc.StatusCode.ABORTED


def test_identity_over_the_socket_with_authority_localhost(running: Running) -> None:
    info = running.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest())
    assert info.name == "csi.kubext.io" and info.vendor_version == "0.1.0"
    assert running.identity.Probe(csi_pb2.ProbeRequest()).ready.value is True
    caps = running.identity.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest())
    services = {c.service.type for c in caps.capabilities if c.HasField("service")}
    Service = csi_pb2.PluginCapability.Service
    assert services == {
        Service.CONTROLLER_SERVICE,
        Service.VOLUME_ACCESSIBILITY_CONSTRAINTS,
        Service.GROUP_CONTROLLER_SERVICE,
        Service.SNAPSHOT_METADATA_SERVICE,
    }
