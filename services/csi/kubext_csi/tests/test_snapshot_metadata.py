"""SnapshotMetadata: allocated ranges of a snapshot and the changed ranges between two, on real
images. Blocks are written through the loop device of a volume staged for block access, as a pod
would write them; each snapshot is a real CreateSnapshot."""

from __future__ import annotations

import os

import grpc
import pytest

from kubext_proto.csi.v1 import csi_pb2, csi_pb2_grpc

from .. import errors, snapshotmetadata
from .conftest import Running, needs_root, start
from .helpers import block_cap, create_request

KiB, MiB = 1 << 10, 1 << 20
VARIABLE = csi_pb2.BlockMetadataType.VARIABLE_LENGTH


# ---- the pure parts ----


def test_on_grid_rounds_out_clips_and_merges() -> None:
    extents = [(100, 10), (4096, 4096), (8192 + 1, 1), (40960, 8192)]
    # Touching blocks merge: 100..110, 4096..8192 and 8193 lie in the first three blocks.
    assert list(snapshotmetadata.on_grid(extents, 0, 1 << 20)) == [(0, 12288), (40960, 8192)]
    # A start inside a block keeps that block; the end clips.
    assert list(snapshotmetadata.on_grid(extents, 45000, 45056)) == [(40960, 4096)]


def test_changed_blocks_reports_only_differing_blocks() -> None:
    base = bytes(4 * 4096)
    target = bytearray(base)
    target[4096 + 7] = 1
    target[3 * 4096] = 2
    assert list(snapshotmetadata.changed_blocks(1 << 20, base, bytes(target))) == [
        ((1 << 20) + 4096, 4096),
        ((1 << 20) + 3 * 4096, 4096),
    ]
    assert list(snapshotmetadata.changed_blocks(0, base, base)) == []


def test_merged_joins_touching_ranges_and_pages_split() -> None:
    assert list(snapshotmetadata.merged([(0, 4), (4, 4), (10, 2)])) == [(0, 8), (10, 2)]
    assert list(snapshotmetadata.pages([(0, 1), (2, 1), (4, 1)], 2)) == [[(0, 1), (2, 1)], [(4, 1)]]
    assert list(snapshotmetadata.pages([], 5)) == [[]]


def test_arguments() -> None:
    assert snapshotmetadata.check_max_results(0) == snapshotmetadata.DEFAULT_MAX_RESULTS
    with pytest.raises(errors.CsiError) as err:
        snapshotmetadata.check_max_results(-1)
    assert err.value.code is errors.Code.INVALID_ARGUMENT
    assert snapshotmetadata.check_starting_offset(64, 64) == 64
    for bad in (-1, 65):
        with pytest.raises(errors.CsiError) as err:
            snapshotmetadata.check_starting_offset(bad, 64)
        assert err.value.code is errors.Code.OUT_OF_RANGE


# ---- over gRPC, on real images ----


def _metadata(run: Running) -> csi_pb2_grpc.SnapshotMetadataStub:
    return csi_pb2_grpc.SnapshotMetadataStub(run.channel)


def _block_volume(run: Running, name: str) -> tuple[str, str]:
    """A 64 MiB volume staged and published for block access: (volume id, device path)."""
    volume_id = run.controller.CreateVolume(create_request(name, cap=block_cap())).volume.volume_id
    staging = run.root / f"staging-{name}"
    target = run.root / f"dev-{name}"
    run.node.NodeStageVolume(
        csi_pb2.NodeStageVolumeRequest(
            volume_id=volume_id, staging_target_path=str(staging), volume_capability=block_cap()
        )
    )
    run.node.NodePublishVolume(
        csi_pb2.NodePublishVolumeRequest(
            volume_id=volume_id,
            staging_target_path=str(staging),
            target_path=str(target),
            volume_capability=block_cap(),
        )
    )
    return volume_id, str(target)


def _write(device: str, offset: int, data: bytes) -> None:
    fd = os.open(device, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def _snapshot(run: Running, volume_id: str, name: str) -> str:
    request = csi_pb2.CreateSnapshotRequest(source_volume_id=volume_id, name=name)
    return run.controller.CreateSnapshot(request).snapshot.snapshot_id


def _ranges(responses) -> list[tuple[int, int]]:
    out = []
    for response in responses:
        assert response.block_metadata_type == VARIABLE
        assert response.volume_capacity_bytes == 64 * MiB
        out += [(b.byte_offset, b.size_bytes) for b in response.block_metadata]
    return out


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        list(call())
    return err.value.code(), err.value.details()


@pytest.fixture
def two_snapshots(running: Running) -> tuple[Running, str, str, str]:
    """Snapshot 1 after writing 8 KiB at 1 MiB and 4 KiB across a block edge at 10 MiB;
    snapshot 2 after changing 4 KiB at 1 MiB, rewriting 10 MiB with the same bytes, writing
    12 KiB at 20 MiB and zeros at 30 MiB (allocated, but the same as the hole before)."""
    volume_id, device = _block_volume(running, "cbt")
    first = os.urandom(8 * KiB)
    edge = os.urandom(4 * KiB)
    _write(device, 1 * MiB, first)
    _write(device, 10 * MiB + 100, edge)
    base = _snapshot(running, volume_id, "cbt-1")
    _write(device, 1 * MiB, os.urandom(4 * KiB))
    _write(device, 10 * MiB + 100, edge)
    _write(device, 20 * MiB, os.urandom(12 * KiB))
    _write(device, 30 * MiB, bytes(4 * KiB))
    target = _snapshot(running, volume_id, "cbt-2")
    return running, volume_id, base, target


@needs_root
def test_allocated_ranges_of_each_snapshot(two_snapshots) -> None:
    run, _, base, target = two_snapshots
    request = csi_pb2.GetMetadataAllocatedRequest
    assert _ranges(_metadata(run).GetMetadataAllocated(request(snapshot_id=base))) == [
        (1 * MiB, 8 * KiB),
        (10 * MiB, 8 * KiB),
    ]
    assert _ranges(_metadata(run).GetMetadataAllocated(request(snapshot_id=target))) == [
        (1 * MiB, 8 * KiB),
        (10 * MiB, 8 * KiB),
        (20 * MiB, 12 * KiB),
        (30 * MiB, 4 * KiB),
    ]


@needs_root
def test_delta_shows_exactly_the_changed_ranges(two_snapshots) -> None:
    run, _, base, target = two_snapshots
    request = csi_pb2.GetMetadataDeltaRequest(base_snapshot_id=base, target_snapshot_id=target)
    assert _ranges(_metadata(run).GetMetadataDelta(request)) == [
        (1 * MiB, 4 * KiB),
        (20 * MiB, 12 * KiB),
    ]


@needs_root
def test_paging_and_starting_offset(two_snapshots) -> None:
    run, _, base, target = two_snapshots
    stub = _metadata(run)
    pages = list(
        stub.GetMetadataAllocated(
            csi_pb2.GetMetadataAllocatedRequest(snapshot_id=target, max_results=1)
        )
    )
    assert [len(p.block_metadata) for p in pages] == [1, 1, 1, 1]
    # Continuing mid-range: the first tuple ends after the offset, nothing before it comes.
    resumed = stub.GetMetadataAllocated(
        csi_pb2.GetMetadataAllocatedRequest(snapshot_id=target, starting_offset=1 * MiB + 5000)
    )
    assert _ranges(resumed) == [
        (1 * MiB + 4 * KiB, 4 * KiB),
        (10 * MiB, 8 * KiB),
        (20 * MiB, 12 * KiB),
        (30 * MiB, 4 * KiB),
    ]
    delta = stub.GetMetadataDelta(
        csi_pb2.GetMetadataDeltaRequest(
            base_snapshot_id=base, target_snapshot_id=target, starting_offset=2 * MiB
        )
    )
    assert _ranges(delta) == [(20 * MiB, 12 * KiB)]
    # At the very end there is nothing left: one empty message still gives the capacity.
    end = list(
        stub.GetMetadataAllocated(
            csi_pb2.GetMetadataAllocatedRequest(snapshot_id=target, starting_offset=64 * MiB)
        )
    )
    assert len(end) == 1 and not end[0].block_metadata
    assert end[0].volume_capacity_bytes == 64 * MiB


@needs_root
def test_bad_requests_get_the_spec_codes(two_snapshots) -> None:
    run, _, base, target = two_snapshots
    stub = _metadata(run)
    allocated, delta = csi_pb2.GetMetadataAllocatedRequest, csi_pb2.GetMetadataDeltaRequest
    cases = [
        (lambda: stub.GetMetadataAllocated(allocated()), grpc.StatusCode.INVALID_ARGUMENT),
        (
            lambda: stub.GetMetadataAllocated(allocated(snapshot_id="nope")),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            lambda: stub.GetMetadataAllocated(allocated(snapshot_id=base, starting_offset=-1)),
            grpc.StatusCode.OUT_OF_RANGE,
        ),
        (
            lambda: stub.GetMetadataAllocated(
                allocated(snapshot_id=base, starting_offset=64 * MiB + 1)
            ),
            grpc.StatusCode.OUT_OF_RANGE,
        ),
        (
            lambda: stub.GetMetadataAllocated(allocated(snapshot_id=base, max_results=-1)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda: stub.GetMetadataDelta(delta(target_snapshot_id=target)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda: stub.GetMetadataDelta(delta(base_snapshot_id=base)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda: stub.GetMetadataDelta(delta(base_snapshot_id=base, target_snapshot_id="x")),
            grpc.StatusCode.NOT_FOUND,
        ),
        (  # the target must be the later snapshot
            lambda: stub.GetMetadataDelta(delta(base_snapshot_id=target, target_snapshot_id=base)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda: stub.GetMetadataDelta(delta(base_snapshot_id=base, target_snapshot_id=base)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ]
    for call, expected in cases:
        assert _code(call)[0] == expected


@needs_root
def test_delta_of_snapshots_of_different_volumes_is_invalid(two_snapshots) -> None:
    run, _, base, _ = two_snapshots
    other_id, _ = _block_volume(run, "other")
    other = _snapshot(run, other_id, "other-1")
    request = csi_pb2.GetMetadataDeltaRequest(base_snapshot_id=base, target_snapshot_id=other)
    code, details = _code(lambda: _metadata(run).GetMetadataDelta(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "different volumes" in details


@needs_root
def test_advertised_and_served_after_a_restart(two_snapshots) -> None:
    run, _, base, target = two_snapshots
    Service = csi_pb2.PluginCapability.Service
    types = [
        c.service.type
        for c in run.identity.GetPluginCapabilities(
            csi_pb2.GetPluginCapabilitiesRequest()
        ).capabilities
        if c.HasField("service")
    ]
    assert Service.SNAPSHOT_METADATA_SERVICE in types
    run.stop()
    again = start(run.root)
    try:
        request = csi_pb2.GetMetadataDeltaRequest(base_snapshot_id=base, target_snapshot_id=target)
        assert _ranges(_metadata(again).GetMetadataDelta(request)) == [
            (1 * MiB, 4 * KiB),
            (20 * MiB, 12 * KiB),
        ]
    finally:
        run.server, run.channel, run.driver = again.server, again.channel, again.driver


@needs_root
def test_a_failure_midway_ends_the_stream_with_internal(two_snapshots, monkeypatch) -> None:
    """Messages already sent stay sent; the stream then ends with INTERNAL naming the error
    (not UNKNOWN), so the caller knows to continue from its last offset."""
    run, _, _, target = two_snapshots
    real = snapshotmetadata.system.data_extents

    def failing(fd: int, start: int, end: int):
        yield from list(real(fd, start, end))[:2]  # the first range is complete at the second
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(snapshotmetadata.system, "data_extents", failing)
    request = csi_pb2.GetMetadataAllocatedRequest(snapshot_id=target, max_results=1)
    received = []
    with pytest.raises(grpc.RpcError) as err:
        for response in _metadata(run).GetMetadataAllocated(request):
            received.append(response)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "Input/output error" in err.value.details()
    assert [(b.byte_offset, b.size_bytes) for r in received for b in r.block_metadata] == [
        (1 * MiB, 8 * KiB)
    ]
