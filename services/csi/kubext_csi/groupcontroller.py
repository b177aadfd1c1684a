"""CSI GroupController: crash-consistent snapshots of several volumes at one point in time.

A group snapshot is one snapshot record per source volume (``group_snapshot_id`` set) and a group
record, committed together. Consistency: under the driver lock every writable staged filesystem
of the group is frozen (FIFREEZE) at once, then all images are copied, then all are thawed, so
the members show the volumes as one power cut would have left them. Volumes that are not staged
have no writer and are copied as they are; volumes staged for block access are flushed but cannot
be frozen (the kernel has no freeze for a raw device), so a pod writing to one during the copy may
tear that member. Each member is an ordinary snapshot: GetSnapshot, ListSnapshots and
CreateVolume from it work one by one; only DeleteVolumeGroupSnapshot deletes it.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid

from kubext_proto.csi.v1 import csi_pb2, csi_pb2_grpc

from . import driver as driver_
from . import errors, state, system, validation
from .controller import snapshot_pb, timestamp

log = logging.getLogger(__name__)
RPC = csi_pb2.GroupControllerServiceCapability.RPC
CAPABILITIES = (RPC.CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT,)


def check_source_volume_ids(ids: list[str]) -> list[str]:
    """The group's volumes: at least one, valid IDs, none twice. Sorted: the order is not part
    of a group's identity, so a retry listing them otherwise is the same request."""
    if not ids:
        raise errors.invalid("source_volume_ids missing in request")
    checked = [validation.check_id("source_volume_ids", v) for v in ids]
    twice = sorted({v for v in checked if checked.count(v) > 1})
    if twice:
        raise errors.invalid(f"source_volume_ids lists {', '.join(twice)} more than once")
    return sorted(checked)


def check_member_ids(group_id: str, given: list[str], members: list[state.Snapshot]) -> None:
    """``snapshot_ids`` must name exactly the group's members (the spec's mismatch check)."""
    expected = sorted(m.id for m in members)
    if sorted(given) != expected:
        raise errors.invalid(
            f"snapshot_ids {sorted(given)} do not match the snapshots of group snapshot "
            f"{group_id} ({expected})"
        )


class GroupControllerServicer(csi_pb2_grpc.GroupControllerServicer):
    def __init__(self, driver: driver_.Driver) -> None:
        self.driver = driver
        self.store = driver.store

    def _group_pb(
        self, group: state.GroupSnapshot, members: list[state.Snapshot]
    ) -> csi_pb2.VolumeGroupSnapshot:
        return csi_pb2.VolumeGroupSnapshot(
            group_snapshot_id=group.id,
            snapshots=[snapshot_pb(m) for m in members],
            creation_time=timestamp(group.created_ns),
            ready_to_use=group.ready,
        )

    def GroupControllerGetCapabilities(self, request, context):  # - gRPC method names
        cap = csi_pb2.GroupControllerServiceCapability
        return csi_pb2.GroupControllerGetCapabilitiesResponse(
            capabilities=[cap(rpc=cap.RPC(type=t)) for t in CAPABILITIES]
        )

    def CreateVolumeGroupSnapshot(self, request, context):
        name = validation.check_name("name", request.name)
        source_ids = check_source_volume_ids(list(request.source_volume_ids))
        if request.parameters:
            key = sorted(request.parameters)[0]
            raise errors.invalid(
                f"unknown group snapshot parameter {key!r}: this driver takes none"
            )
        with self.driver.lock:
            existing = self.store.find_group_snapshot_by_name(name)
            if existing is not None:
                members = self.store.group_members(existing.id)
                if sorted(m.source_volume_id for m in members) != source_ids:
                    raise errors.already_exists(
                        f"group snapshot {name!r} exists for other volumes "
                        f"({sorted(m.source_volume_id for m in members)})"
                    )
                return csi_pb2.CreateVolumeGroupSnapshotResponse(
                    group_snapshot=self._group_pb(existing, members)
                )
            volumes = [self.store.get_volume(v) for v in source_ids]
            self.driver.reserve(sum(v.capacity for v in volumes), f"group snapshot {name!r}")
            group = state.GroupSnapshot(id=str(uuid.uuid4()), name=name, created_ns=time.time_ns())
            members = [
                state.Snapshot(
                    id=str(uuid.uuid4()),
                    # Never a CO's snapshot name: those may not hold a "/".
                    name=f"{name}/{v.id}",
                    source_volume_id=v.id,
                    size=v.capacity,
                    created_ns=group.created_ns,
                    group_snapshot_id=group.id,
                )
                for v in volumes
            ]
            images = [self.driver.snapshot_image(m.id) for m in members]
            undo = [lambda image=image: system.remove(image) for image in images]
            with driver_.rollback_on_error(undo), contextlib.ExitStack() as frozen:
                for volume in volumes:  # all frozen before the first copy: one point in time
                    frozen.enter_context(self.driver.quiesced(volume))
                for volume, image in zip(volumes, images, strict=True):
                    system.copy_sparse(self.driver.image(volume.id), image, size=volume.capacity)
                frozen.close()  # thaw before the commit: the pods wait no longer than the copies
                self.store.put_group_snapshot(group, members)
        log.info(
            "created group snapshot",
            extra={"group_snapshot_id": group.id, "volumes": len(volumes)},
        )
        return csi_pb2.CreateVolumeGroupSnapshotResponse(
            group_snapshot=self._group_pb(group, members)
        )

    def GetVolumeGroupSnapshot(self, request, context):
        group_id = validation.check_id("group_snapshot_id", request.group_snapshot_id)
        group = self.store.get_group_snapshot(group_id)
        members = self.store.group_members(group_id)
        check_member_ids(group_id, list(request.snapshot_ids), members)
        return csi_pb2.GetVolumeGroupSnapshotResponse(group_snapshot=self._group_pb(group, members))

    def DeleteVolumeGroupSnapshot(self, request, context):
        group_id = validation.check_id("group_snapshot_id", request.group_snapshot_id)
        with self.driver.lock:
            group = self.store.find_group_snapshot(group_id)
            if group is None:
                return csi_pb2.DeleteVolumeGroupSnapshotResponse()  # gone: repeated calls fine
            members = self.store.group_members(group_id)
            check_member_ids(group_id, list(request.snapshot_ids), members)
            # Records first: a crash before the files go leaves orphans, removed at start.
            self.store.delete_group_snapshot(group_id)
            for member in members:
                system.remove(self.driver.snapshot_image(member.id))
        log.info("deleted group snapshot", extra={"group_snapshot_id": group_id})
        return csi_pb2.DeleteVolumeGroupSnapshotResponse()
