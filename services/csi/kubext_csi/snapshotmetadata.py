"""CSI SnapshotMetadata (alpha): which blocks of a snapshot hold data, and which blocks changed
between two snapshots of one volume (changed-block tracking, for incremental backups).

A snapshot is a sparse copy of the volume's loop-device image (``system.copy_sparse`` copies the
data extents only), so its allocated ranges are the image's data extents (SEEK_DATA/SEEK_HOLE),
rounded out to the 4 KiB block grid. The delta reads both images where either holds data (a hole
in both is zeros in both) and reports only the blocks whose bytes differ: a block rewritten with
the same bytes is not a change, a block whose data went away (now zeros) is. Ranges are
VARIABLE_LENGTH extents: adjacent blocks merge into one tuple.

Snapshot images never change once created, so a stream reads them without holding the driver
lock: they are looked up and opened under it, and a DeleteSnapshot during a stream unlinks a file
the stream still holds open. A filesystem volume's image is a block device image too (ext4 on the
loop device), so its snapshots are served the same way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator

from kubext_proto.csi.v1 import csi_pb2, csi_pb2_grpc

from . import driver as driver_
from . import errors, state, system, validation

log = logging.getLogger(__name__)

BLOCK = 4096  # the grid ranges are reported on: the page and ext4 block size
DEFAULT_MAX_RESULTS = 256  # tuples per message when the request leaves it 0 (as the peer)
_CHUNK = 1 << 20  # bytes read at a time from each image when comparing
Range = tuple[int, int]  # (byte_offset, size_bytes)


# ---- pure: arguments, the block grid, comparison, paging ----


def check_max_results(value: int) -> int:
    if value < 0:
        raise errors.invalid(f"max_results must not be negative (got {value})")
    return value or DEFAULT_MAX_RESULTS


def check_starting_offset(value: int, capacity: int) -> int:
    """The request's offset, valid for a volume of ``capacity`` bytes (the spec: OUT_OF_RANGE
    when negative or beyond the volume's size)."""
    if value < 0 or value > capacity:
        raise errors.out_of_range(
            f"starting_offset {value} is outside the volume's {capacity} bytes"
        )
    return value


def on_grid(extents: Iterable[Range], start: int, end: int) -> Iterator[Range]:
    """``extents`` (ascending) rounded out to whole blocks, clipped to the blocks from the one
    holding ``start`` to ``end``, touching or overlapping ones merged."""
    low = start - start % BLOCK
    pending: Range | None = None
    for offset, length in extents:
        lo = max(low, offset - offset % BLOCK)
        hi = min(end, -(-(offset + length) // BLOCK) * BLOCK)
        if hi <= lo:
            continue
        if pending is not None and lo <= pending[0] + pending[1]:
            pending = (pending[0], max(pending[0] + pending[1], hi) - pending[0])
            continue
        if pending is not None:
            yield pending
        pending = (lo, hi - lo)
    if pending is not None:
        yield pending


def changed_blocks(offset: int, base: bytes, target: bytes) -> Iterator[Range]:
    """The blocks where two equally long chunks read at ``offset`` differ (merged)."""
    if base == target:
        return
    run_start = -1
    for at in range(0, len(target), BLOCK):
        differs = base[at : at + BLOCK] != target[at : at + BLOCK]
        if differs and run_start < 0:
            run_start = at
        elif not differs and run_start >= 0:
            yield (offset + run_start, at - run_start)
            run_start = -1
    if run_start >= 0:
        yield (offset + run_start, len(target) - run_start)


def merged(ranges: Iterable[Range]) -> Iterator[Range]:
    """Ascending ranges with touching neighbours joined (a change across two chunks is one)."""
    pending: Range | None = None
    for offset, length in ranges:
        if pending is not None and offset == pending[0] + pending[1]:
            pending = (pending[0], pending[1] + length)
            continue
        if pending is not None:
            yield pending
        pending = (offset, length)
    if pending is not None:
        yield pending


def pages(ranges: Iterable[Range], max_results: int) -> Iterator[list[Range]]:
    """At most ``max_results`` ranges per page; one empty page when there are none (it still
    tells the caller the volume's capacity)."""
    page: list[Range] = []
    sent = False
    for item in ranges:
        page.append(item)
        if len(page) == max_results:
            yield page
            sent, page = True, []
    if page or not sent:
        yield page


# ---- I/O: the images ----


def allocated(fd: int, start: int, end: int) -> Iterator[Range]:
    """The data extents of a snapshot image from ``start`` to ``end``, on the block grid."""
    return on_grid(system.data_extents(fd, start - start % BLOCK, end), start, end)


def delta(base_fd: int, target_fd: int, start: int, end: int) -> Iterator[Range]:
    """The blocks from ``start`` to ``end`` whose bytes differ between the two images (bytes
    beyond an image's end read as zeros, as a hole does)."""
    candidates = on_grid(
        _union(
            system.data_extents(base_fd, start - start % BLOCK, end),
            system.data_extents(target_fd, start - start % BLOCK, end),
        ),
        start,
        end,
    )

    def compared() -> Iterator[Range]:
        for offset, length in candidates:
            for at in range(offset, offset + length, _CHUNK):
                size = min(_CHUNK, offset + length - at)
                base = os.pread(base_fd, size, at).ljust(size, b"\0")
                target = os.pread(target_fd, size, at).ljust(size, b"\0")
                yield from changed_blocks(at, base, target)

    return merged(compared())


def _union(a: Iterator[Range], b: Iterator[Range]) -> Iterator[Range]:
    """Two ascending extent lists as one ascending list (overlaps are merged by on_grid)."""
    next_a, next_b = next(a, None), next(b, None)
    while next_a is not None or next_b is not None:
        if next_b is None or (next_a is not None and next_a[0] <= next_b[0]):
            assert next_a is not None
            yield next_a
            next_a = next(a, None)
        else:
            yield next_b
            next_b = next(b, None)


# ---- the servicer ----

VARIABLE = csi_pb2.BlockMetadataType.VARIABLE_LENGTH


def _tuples(page: list[Range]) -> list[csi_pb2.BlockMetadata]:
    return [csi_pb2.BlockMetadata(byte_offset=o, size_bytes=n) for o, n in page]


class SnapshotMetadataServicer(csi_pb2_grpc.SnapshotMetadataServicer):
    """Both RPCs are generators: gRPC runs them up to the first message at once, so a bad
    request fails the stream before anything is sent, and the images they open are closed when
    the stream ends, fails or is cancelled."""

    def __init__(self, driver: driver_.Driver) -> None:
        self.driver = driver
        self.store = driver.store

    def _open(self, snapshot: state.Snapshot) -> int:
        try:
            return os.open(self.driver.snapshot_image(snapshot.id), os.O_RDONLY)
        except FileNotFoundError:
            raise errors.internal(f"image of snapshot {snapshot.id} is missing") from None

    def GetMetadataAllocated(self, request, context):  # - gRPC method names
        snapshot_id = validation.check_id("snapshot_id", request.snapshot_id)
        max_results = check_max_results(request.max_results)
        with self.driver.lock:
            snapshot = self.store.get_snapshot(snapshot_id)
            start = check_starting_offset(request.starting_offset, snapshot.size)
            fd = self._open(snapshot)
        try:
            for page in pages(allocated(fd, start, snapshot.size), max_results):
                yield csi_pb2.GetMetadataAllocatedResponse(
                    block_metadata_type=VARIABLE,
                    volume_capacity_bytes=snapshot.size,
                    block_metadata=_tuples(page),
                )
        finally:
            os.close(fd)

    def GetMetadataDelta(self, request, context):
        base_id = validation.check_id("base_snapshot_id", request.base_snapshot_id)
        target_id = validation.check_id("target_snapshot_id", request.target_snapshot_id)
        max_results = check_max_results(request.max_results)
        with self.driver.lock:
            base = self.store.get_snapshot(base_id)
            target = self.store.get_snapshot(target_id)
            check_pair(base, target)
            start = check_starting_offset(request.starting_offset, target.size)
            base_fd = self._open(base)
            try:
                target_fd = self._open(target)
            except BaseException:
                os.close(base_fd)
                raise
        try:
            changes = delta(base_fd, target_fd, start, target.size)
            for page in pages(changes, max_results):
                yield csi_pb2.GetMetadataDeltaResponse(
                    block_metadata_type=VARIABLE,
                    volume_capacity_bytes=target.size,
                    block_metadata=_tuples(page),
                )
        finally:
            os.close(base_fd)
            os.close(target_fd)


def check_pair(base: state.Snapshot, target: state.Snapshot) -> None:
    """The spec's delta is from a snapshot to a later one "in the same volume"."""
    if base.source_volume_id != target.source_volume_id:
        raise errors.invalid(
            f"snapshots {base.id} and {target.id} are of different volumes "
            f"({base.source_volume_id}, {target.source_volume_id})"
        )
    if base.id == target.id or target.created_ns <= base.created_ns:
        raise errors.invalid(
            f"target snapshot {target.id} must be taken after base snapshot {base.id}"
        )
