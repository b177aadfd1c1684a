"""ControllerModifyVolume and CreateVolume's mutable_parameters (a VolumeAttributesClass):
validated by key and value, merged, idempotent, persisted, reported in the volume context, and the
``label`` written to the real ext filesystem (online while mounted, offline while not)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from kubext_proto.csi.v1 import csi_pb2

from .. import errors, system, validation
from .conftest import Running, needs_root, start
from .helpers import block_cap, create_request
from .test_lifecycle import stage_and_publish, unpublish_and_unstage


def _modify(run: Running, volume_id: str, **params: str) -> csi_pb2.ControllerModifyVolumeResponse:
    return run.controller.ControllerModifyVolume(
        csi_pb2.ControllerModifyVolumeRequest(volume_id=volume_id, mutable_parameters=params)
    )


def _context(run: Running, volume_id: str) -> dict[str, str]:
    got = run.controller.ControllerGetVolume(
        csi_pb2.ControllerGetVolumeRequest(volume_id=volume_id)
    )
    return dict(got.volume.volume_context)


def _code(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    return err.value.code(), err.value.details()


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"XXX_FakeKey": "x"}, "XXX_FakeKey"),
        ({"iopsClass": "turbo"}, "iopsClass"),
        ({"label": "seventeen-chars-x"}, "label"),
        ({"label": "has space"}, "label"),
    ],
)
def test_bad_mutable_parameters_are_invalid_and_named(params: dict, named: str) -> None:
    with pytest.raises(errors.CsiError) as err:
        validation.check_mutable_parameters(params)
    assert err.value.code == errors.Code.INVALID_ARGUMENT
    assert named in err.value.message


def test_good_mutable_parameters_pass() -> None:
    params = {"iopsClass": "fast", "label": "data-1"}
    assert validation.check_mutable_parameters(params) == params
    assert validation.check_mutable_parameters({"label": ""}) == {"label": ""}  # clears it


@needs_root
def test_create_with_mutable_parameters_labels_the_filesystem(running: Running) -> None:
    request = create_request("vac", mutable_parameters={"iopsClass": "fast", "label": "vac-1"})
    vol = running.controller.CreateVolume(request).volume
    assert dict(vol.volume_context) == {"iopsClass": "fast", "label": "vac-1"}
    # A retry is the same answer; other mutable parameters under the name are not.
    assert running.controller.CreateVolume(request).volume == vol
    code, _ = _code(
        running.controller.CreateVolume,
        create_request("vac", mutable_parameters={"iopsClass": "max"}),
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS
    code, details = _code(
        running.controller.CreateVolume,
        create_request("vac-bad", mutable_parameters={"XXX_FakeKey": "XXX_FakeValue"}),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "XXX_FakeKey" in details
    staging, target = stage_and_publish(running, vol.volume_id)  # mkfs writes the label
    stage = running.driver.store.find_stage(vol.volume_id)
    assert stage is not None
    info = system.ext_info(stage.device)
    assert info is not None and info.label == "vac-1"
    unpublish_and_unstage(running, vol.volume_id, staging, target)


@needs_root
def test_modify_relabels_a_mounted_filesystem_online(running: Running) -> None:
    vol = running.controller.CreateVolume(create_request("online")).volume
    assert dict(vol.volume_context) == {}
    staging, target = stage_and_publish(running, vol.volume_id)
    Path(target, "data").write_text("kept")
    device = running.driver.store.find_stage(vol.volume_id).device

    _modify(running, vol.volume_id, label="fresh", iopsClass="max")
    info = system.ext_info(device)
    assert info is not None and info.label == "fresh"
    assert system.mount_at(target) is not None and Path(target, "data").read_text() == "kept"
    assert _context(running, vol.volume_id) == {"iopsClass": "max", "label": "fresh"}

    _modify(running, vol.volume_id, label="fresh", iopsClass="max")  # a retry: same answer
    _modify(running, vol.volume_id, iopsClass="standard")  # given keys change, others stay
    assert _context(running, vol.volume_id) == {"iopsClass": "standard", "label": "fresh"}

    unpublish_and_unstage(running, vol.volume_id, staging, target)
    on_disk = system.ext_info(running.driver.image(vol.volume_id))
    assert on_disk is not None and on_disk.label == "fresh"  # written through to the image

    _modify(running, vol.volume_id, label="offline")  # unstaged: e2label on the image
    on_disk = system.ext_info(running.driver.image(vol.volume_id))
    assert on_disk is not None and on_disk.label == "offline"


@needs_root
def test_modify_errors_change_nothing(running: Running) -> None:
    vol = running.controller.CreateVolume(
        create_request("errs", mutable_parameters={"iopsClass": "fast"})
    ).volume
    modify = running.controller.ControllerModifyVolume
    Request = csi_pb2.ControllerModifyVolumeRequest
    cases = [
        (
            Request(mutable_parameters={"iopsClass": "max"}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "volume_id",
        ),
        (Request(volume_id=vol.volume_id), grpc.StatusCode.INVALID_ARGUMENT, "mutable_parameters"),
        (
            Request(volume_id=vol.volume_id, mutable_parameters={"iopsClass": "max", "XXX": "1"}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "XXX",
        ),
        (
            Request(volume_id=vol.volume_id, mutable_parameters={"label": "a" * 17}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "label",
        ),
        (
            Request(volume_id="non-existing-volume-id", mutable_parameters={"iopsClass": "max"}),
            grpc.StatusCode.NOT_FOUND,
            "non-existing-volume-id",
        ),
    ]
    for request, code, named in cases:
        got, details = _code(modify, request)
        assert (got, named in details) == (code, True), details
    assert _context(running, vol.volume_id) == {"iopsClass": "fast"}


@needs_root
def test_label_waits_for_a_mount_while_staged_for_block(tools: None, workdir: Path) -> None:
    run = start(workdir)
    try:
        vol = run.controller.CreateVolume(create_request("later")).volume
        staging, target = stage_and_publish(run, vol.volume_id)  # formatted, no label
        unpublish_and_unstage(run, vol.volume_id, staging, target)
        staging, target = stage_and_publish(run, vol.volume_id, cap=block_cap())
        _modify(run, vol.volume_id, label="deferred")  # the pod owns the raw device now
        image = run.driver.image(vol.volume_id)
        info = system.ext_info(image)
        assert info is not None and info.label == ""
        unpublish_and_unstage(run, vol.volume_id, staging, target)
    finally:
        run.stop()
    run = start(workdir)  # the modification survived a restart
    try:
        assert _context(run, vol.volume_id) == {"label": "deferred"}
        staging, target = stage_and_publish(run, vol.volume_id)  # the mount stage writes it
        device = run.driver.store.find_stage(vol.volume_id).device
        info = system.ext_info(device)
        assert info is not None and info.label == "deferred"
        unpublish_and_unstage(run, vol.volume_id, staging, target)
    finally:
        run.stop()
