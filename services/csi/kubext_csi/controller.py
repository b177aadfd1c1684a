"""CSI Controller: volumes and snapshots as sparse image files, capacity against the pool.

Every RPC: validate the request -> take the driver lock -> look up state -> act -> persist.
Retries of a finished request return the same answer (idempotency by name for creations).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid

from google.protobuf import timestamp_pb2, wrappers_pb2

from kubext_proto.csi.v1 import csi_pb2, csi_pb2_grpc

from . import driver as driver_
from . import errors, state, system, validation

log = logging.getLogger(__name__)
RPC = csi_pb2.ControllerServiceCapability.RPC
CAPABILITIES = (
    RPC.CREATE_DELETE_VOLUME,
    RPC.PUBLISH_UNPUBLISH_VOLUME,
    RPC.LIST_VOLUMES,
    RPC.LIST_VOLUMES_PUBLISHED_NODES,
    RPC.GET_CAPACITY,
    RPC.CREATE_DELETE_SNAPSHOT,
    RPC.LIST_SNAPSHOTS,
    RPC.CLONE_VOLUME,
    RPC.EXPAND_VOLUME,
    RPC.GET_VOLUME,
    RPC.VOLUME_CONDITION,
    RPC.SINGLE_NODE_MULTI_WRITER,
    RPC.GET_SNAPSHOT,
    RPC.MODIFY_VOLUME,
)


def timestamp(ns: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


def snapshot_pb(snapshot: state.Snapshot) -> csi_pb2.Snapshot:
    return csi_pb2.Snapshot(
        size_bytes=snapshot.size,
        snapshot_id=snapshot.id,
        source_volume_id=snapshot.source_volume_id,
        creation_time=timestamp(snapshot.created_ns),
        ready_to_use=snapshot.ready,
        group_snapshot_id=snapshot.group_snapshot_id,
    )


class ControllerServicer(csi_pb2_grpc.ControllerServicer):
    def __init__(self, driver: driver_.Driver) -> None:
        self.driver = driver
        self.store = driver.store

    # ---- responses ----

    def _volume_pb(self, volume: state.Volume) -> csi_pb2.Volume:
        source = None
        if volume.source_kind == "snapshot":
            source = csi_pb2.VolumeContentSource(
                snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=volume.source_id)
            )
        elif volume.source_kind == "volume":
            source = csi_pb2.VolumeContentSource(
                volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id=volume.source_id)
            )
        return csi_pb2.Volume(
            capacity_bytes=volume.capacity,
            volume_id=volume.id,
            content_source=source,
            accessible_topology=[csi_pb2.Topology(segments=self.driver.settings.topology)],
            # The mutable parameters in force (a VolumeAttributesClass's, as last modified).
            volume_context=dict(volume.mutable_parameters),
        )

    def _published_nodes(self, volume: state.Volume) -> list[str]:
        """The nodes it is attached to (ControllerPublish), and this node while it stages it:
        with attachRequired false the CO never attaches, yet the volume is in use here."""
        nodes = {a.node_id for a in self.store.attachments(volume.id)}
        if self.store.find_stage(volume.id) or self.store.publishes(volume.id):
            nodes.add(self.driver.settings.node_id)
        return sorted(nodes)

    # ---- volumes ----

    def CreateVolume(self, request, context):  # - gRPC method names
        name = validation.check_name("name", request.name)
        caps = validation.parse_capabilities(request.volume_capabilities)
        validation.check_parameters(request.parameters)
        mutable = validation.check_mutable_parameters(request.mutable_parameters)
        validation.check_accessibility(
            request.accessibility_requirements, self.driver.settings.topology
        )
        fs_type = validation.volume_fs_type(caps)
        settings = self.driver.settings
        rng = request.capacity_range
        size = validation.volume_size(
            rng.required_bytes,
            rng.limit_bytes,
            default=settings.default_volume_bytes,
            maximum=settings.max_volume_bytes,
        )
        source_kind = request.volume_content_source.WhichOneof("type") or ""
        source_id = ""
        if source_kind == "snapshot":
            source_id = validation.check_id(
                "volume_content_source.snapshot.snapshot_id",
                request.volume_content_source.snapshot.snapshot_id,
            )
        elif source_kind == "volume":
            source_id = validation.check_id(
                "volume_content_source.volume.volume_id",
                request.volume_content_source.volume.volume_id,
            )

        with self.driver.lock:
            existing = self.store.find_volume_by_name(name)
            if existing is not None:
                self._check_same_volume(existing, rng, source_kind, source_id, fs_type)
                if mutable and dict(existing.mutable_parameters) != mutable:
                    raise errors.already_exists(
                        f"volume {name!r} exists with other mutable_parameters"
                    )
                return csi_pb2.CreateVolumeResponse(volume=self._volume_pb(existing))
            if source_kind == "snapshot":
                snapshot = self.store.get_snapshot(source_id)
                if size < snapshot.size:
                    raise errors.out_of_range(
                        f"capacity {size} is smaller than snapshot {source_id} ({snapshot.size})"
                    )
            elif source_kind == "volume":
                source_volume = self.store.get_volume(source_id)
                if size < source_volume.capacity:
                    raise errors.out_of_range(
                        f"capacity {size} is smaller than volume {source_id} "
                        f"({source_volume.capacity})"
                    )
            self.driver.reserve(size, f"volume {name!r}")

            volume_id = str(uuid.uuid4())
            image = self.driver.image(volume_id)
            with driver_.rollback_on_error([lambda: system.remove(image)]):
                if source_kind == "snapshot":
                    system.copy_sparse(self.driver.snapshot_image(source_id), image, size=size)
                elif source_kind == "volume":
                    self.driver.copy_volume(source_volume, image, size=size)
                else:
                    # Formatted at its first NodeStageVolume (as kubelet's SafeFormatAndMount
                    # would): volumes never staged, or staged as block, cost no mkfs.
                    system.create_image(image, size)
                info = system.ext_info(image)
                volume = state.Volume(
                    id=volume_id,
                    name=name,
                    capacity=size,
                    fs_type=info.fs_type if info else fs_type,
                    source_kind=source_kind,
                    source_id=source_id,
                    parameters=tuple(sorted(request.parameters.items())),
                    created_ns=time.time_ns(),
                    mutable_parameters=tuple(sorted(mutable.items())),
                )
                self.driver.apply_label(volume)  # a clone has its source's filesystem already
                self.store.put_volume(volume)
        log.info("created volume", extra={"volume_id": volume_id, "bytes": size})
        return csi_pb2.CreateVolumeResponse(volume=self._volume_pb(volume))

    @staticmethod
    def _check_same_volume(
        existing: state.Volume, rng, source_kind: str, source_id: str, fs_type: str
    ) -> None:
        """A retried CreateVolume must ask for what the existing volume is."""
        if rng.required_bytes and existing.capacity < rng.required_bytes:
            raise errors.already_exists(
                f"volume {existing.name!r} exists with {existing.capacity} bytes, "
                f"less than the required {rng.required_bytes}"
            )
        if rng.limit_bytes and existing.capacity > rng.limit_bytes:
            raise errors.already_exists(
                f"volume {existing.name!r} exists with {existing.capacity} bytes, "
                f"more than the limit {rng.limit_bytes}"
            )
        if (existing.source_kind, existing.source_id) != (source_kind, source_id):
            raise errors.already_exists(
                f"volume {existing.name!r} exists with another content source"
            )
        if fs_type and existing.fs_type and fs_type != existing.fs_type:
            raise errors.already_exists(
                f"volume {existing.name!r} exists with {existing.fs_type}, not {fs_type}"
            )

    def DeleteVolume(self, request, context):
        volume_id = validation.check_id("volume_id", request.volume_id)
        with self.driver.lock:
            volume = self.store.find_volume(volume_id)
            if volume is None:
                return csi_pb2.DeleteVolumeResponse()  # already gone: repeated calls are fine
            stage = self.store.find_stage(volume_id)
            if stage is not None:
                raise errors.precondition(
                    f"volume {volume_id} is staged at {stage.staging_path}; unstage it first"
                )
            attached = self.store.attachments(volume_id)
            if attached:
                raise errors.precondition(
                    f"volume {volume_id} is attached to node {attached[0].node_id}; "
                    "ControllerUnpublishVolume it first"
                )
            self.store.delete_volume(volume_id)  # forget first: a crash leaves only an orphan file
            image = self.driver.image(volume_id)
            system.detach_loops(image)
            system.remove(image)
        log.info("deleted volume", extra={"volume_id": volume_id})
        return csi_pb2.DeleteVolumeResponse()

    # ---- attach (ControllerPublish): a record of which node holds the volume ----

    def ControllerPublishVolume(self, request, context):
        volume_id = validation.check_id("volume_id", request.volume_id)
        node_id = validation.check_node_id("node_id", request.node_id)
        if not request.HasField("volume_capability"):
            raise errors.invalid("volume_capability missing in request")
        cap = validation.parse_capability(request.volume_capability, field="volume_capability")
        validation.check_map("volume_context", request.volume_context)
        wanted = state.Attachment(
            volume_id=volume_id,
            node_id=node_id,
            read_only=request.readonly or cap.read_only,
            mode=cap.mode,
        )
        with self.driver.lock:
            self.store.get_volume(volume_id)
            if not self.driver.settings.knows_node(node_id):
                raise errors.not_found(f"node {node_id!r} is not known to this driver")
            existing = self.store.find_attachment(volume_id, node_id)
            if existing is not None:
                if existing != wanted:
                    raise errors.already_exists(
                        f"volume {volume_id} is attached to node {node_id} with another "
                        f"capability (read_only={existing.read_only}, "
                        f"{validation.Mode.Name(existing.mode)})"
                    )
                return csi_pb2.ControllerPublishVolumeResponse()  # a retry: same answer
            elsewhere = [a for a in self.store.attachments(volume_id) if a.node_id != node_id]
            if elsewhere and not validation.may_attach_beside(
                wanted.mode, (a.mode for a in elsewhere)
            ):
                raise errors.precondition(
                    f"volume {volume_id} is attached to node {elsewhere[0].node_id} "
                    f"({validation.Mode.Name(elsewhere[0].mode)}); a single-node volume "
                    "cannot be attached to a second node"
                )
            limit = self.driver.settings.max_volumes_per_node
            if limit and len(self.store.attachments_on(node_id)) >= limit:
                raise errors.exhausted(f"node {node_id} already has {limit} volumes attached")
            self.store.put_attachment(wanted)
        log.info("attached volume", extra={"volume_id": volume_id, "node_id": node_id})
        return csi_pb2.ControllerPublishVolumeResponse()

    def ControllerUnpublishVolume(self, request, context):
        volume_id = validation.check_id("volume_id", request.volume_id)
        # No node_id: detach it from every node (the spec's "all nodes").
        node_id = request.node_id and validation.check_node_id("node_id", request.node_id)
        with self.driver.lock:
            for attachment in self.store.attachments(volume_id):
                if not node_id or attachment.node_id == node_id:
                    self.store.delete_attachment(volume_id, attachment.node_id)
                    log.info(
                        "detached volume",
                        extra={"volume_id": volume_id, "node_id": attachment.node_id},
                    )
        # An unknown volume or node is not attached: done already.
        return csi_pb2.ControllerUnpublishVolumeResponse()

    def ValidateVolumeCapabilities(self, request, context):
        volume_id = validation.check_id("volume_id", request.volume_id)
        if not request.volume_capabilities:
            raise errors.invalid("volume_capabilities missing in request")
        self.store.get_volume(volume_id)
        reasons = [validation.capability_problem(c) for c in request.volume_capabilities]
        try:
            validation.check_parameters(request.parameters)
        except errors.CsiError as exc:
            reasons.append(exc.message)
        try:
            validation.check_mutable_parameters(request.mutable_parameters)
        except errors.CsiError as exc:
            reasons.append(exc.message)
        problems = [r for r in reasons if r]
        if problems:
            return csi_pb2.ValidateVolumeCapabilitiesResponse(message="; ".join(problems))
        confirmed = csi_pb2.ValidateVolumeCapabilitiesResponse.Confirmed(
            volume_context=request.volume_context,
            volume_capabilities=request.volume_capabilities,
            parameters=request.parameters,
            mutable_parameters=request.mutable_parameters,
        )
        return csi_pb2.ValidateVolumeCapabilitiesResponse(confirmed=confirmed)

    def ListVolumes(self, request, context):
        volumes, next_token = validation.page(
            self.store.volumes(),
            max_entries=request.max_entries,
            starting_token=request.starting_token,
        )
        Status = csi_pb2.ListVolumesResponse.VolumeStatus
        entries = []
        for volume in volumes:
            condition = self.driver.condition(volume)
            status = Status(
                published_node_ids=self._published_nodes(volume),
                volume_condition=csi_pb2.VolumeCondition(
                    abnormal=condition.abnormal, message=condition.message
                ),
            )
            entries.append(
                csi_pb2.ListVolumesResponse.Entry(volume=self._volume_pb(volume), status=status)
            )
        return csi_pb2.ListVolumesResponse(entries=entries, next_token=next_token)

    def ControllerGetVolume(self, request, context):
        volume_id = validation.check_id("volume_id", request.volume_id)
        volume = self.store.get_volume(volume_id)
        condition = self.driver.condition(volume)
        status = csi_pb2.ControllerGetVolumeResponse.VolumeStatus(
            published_node_ids=self._published_nodes(volume),
            volume_condition=csi_pb2.VolumeCondition(
                abnormal=condition.abnormal, message=condition.message
            ),
        )
        return csi_pb2.ControllerGetVolumeResponse(volume=self._volume_pb(volume), status=status)

    def GetCapacity(self, request, context):
        validation.check_parameters(request.parameters)
        settings = self.driver.settings
        zero = csi_pb2.GetCapacityResponse(available_capacity=0)
        if any(validation.capability_problem(c) for c in request.volume_capabilities):
            return zero
        wanted = dict(request.accessible_topology.segments)
        if request.HasField("accessible_topology") and not validation.topology_matches(
            wanted, settings.topology
        ):
            return zero
        available = self.driver.available_bytes()
        return csi_pb2.GetCapacityResponse(
            available_capacity=available,
            maximum_volume_size=wrappers_pb2.Int64Value(
                value=min(available, settings.max_volume_bytes)
            ),
            minimum_volume_size=wrappers_pb2.Int64Value(value=validation.MIN_VOLUME_BYTES),
        )

    def ControllerGetCapabilities(self, request, context):
        cap = csi_pb2.ControllerServiceCapability
        return csi_pb2.ControllerGetCapabilitiesResponse(
            capabilities=[cap(rpc=cap.RPC(type=t)) for t in CAPABILITIES]
        )

    def ControllerExpandVolume(self, request, context):
        volume_id = validation.check_id("volume_id", request.volume_id)
        if not request.HasField("capacity_range"):
            raise errors.invalid("capacity_range missing in request")
        block = request.volume_capability.WhichOneof("access_type") == "block"
        settings = self.driver.settings
        with self.driver.lock:
            volume = self.store.get_volume(volume_id)
            rng = request.capacity_range
            size = validation.volume_size(
                rng.required_bytes,
                rng.limit_bytes,
                default=volume.capacity,
                maximum=settings.max_volume_bytes,
            )
            if size <= volume.capacity:  # already that big (a retry, or a shrink we never do)
                return csi_pb2.ControllerExpandVolumeResponse(
                    capacity_bytes=volume.capacity, node_expansion_required=False
                )
            self.driver.reserve(size - volume.capacity, f"expanding volume {volume_id}")
            system.grow_image(self.driver.image(volume_id), size)
            stage = self.store.find_stage(volume_id)
            if stage is not None:
                system.refresh_loop(stage.device)
            self.store.put_volume(dataclasses.replace(volume, capacity=size))
        log.info("expanded volume", extra={"volume_id": volume_id, "bytes": size})
        return csi_pb2.ControllerExpandVolumeResponse(
            capacity_bytes=size, node_expansion_required=not block
        )

    def ControllerModifyVolume(self, request, context):
        volume_id = validation.check_id("volume_id", request.volume_id)
        if not request.mutable_parameters:
            raise errors.invalid("mutable_parameters missing in request")
        changes = validation.check_mutable_parameters(request.mutable_parameters)
        with self.driver.lock:
            volume = self.store.get_volume(volume_id)
            if volume.ephemeral:
                raise errors.precondition(
                    f"volume {volume_id} is an ephemeral inline volume: it has no mutable "
                    "parameters"
                )
            # The keys given change, the others stay (a VolumeAttributesClass names its own).
            merged = {**dict(volume.mutable_parameters), **changes}
            modified = dataclasses.replace(volume, mutable_parameters=tuple(sorted(merged.items())))
            if modified == volume:
                return csi_pb2.ControllerModifyVolumeResponse()  # a retry: already in force
            # Written before the record: a crash in between leaves the old record, and the
            # retry writes the same label again.
            self.driver.apply_label(modified)
            self.store.put_volume(modified)
        log.info("modified volume", extra={"volume_id": volume_id, "keys": sorted(changes)})
        return csi_pb2.ControllerModifyVolumeResponse()

    # ---- snapshots ----

    def CreateSnapshot(self, request, context):
        name = validation.check_name("name", request.name)
        source_id = validation.check_id("source_volume_id", request.source_volume_id)
        if request.parameters:
            key = sorted(request.parameters)[0]
            raise errors.invalid(f"unknown snapshot parameter {key!r}: this driver takes none")
        with self.driver.lock:
            existing = self.store.find_snapshot_by_name(name)
            if existing is not None:
                if existing.source_volume_id != source_id:
                    raise errors.already_exists(
                        f"snapshot {name!r} exists for volume {existing.source_volume_id}"
                    )
                return csi_pb2.CreateSnapshotResponse(snapshot=snapshot_pb(existing))
            volume = self.store.get_volume(source_id)
            self.driver.reserve(volume.capacity, f"snapshot {name!r}")
            snapshot_id = str(uuid.uuid4())
            image = self.driver.snapshot_image(snapshot_id)
            with driver_.rollback_on_error([lambda: system.remove(image)]):
                self.driver.copy_volume(volume, image, size=volume.capacity)
                snapshot = state.Snapshot(
                    id=snapshot_id,
                    name=name,
                    source_volume_id=source_id,
                    size=volume.capacity,
                    created_ns=time.time_ns(),
                )
                self.store.put_snapshot(snapshot)
        log.info("created snapshot", extra={"snapshot_id": snapshot_id, "volume_id": source_id})
        return csi_pb2.CreateSnapshotResponse(snapshot=snapshot_pb(snapshot))

    def GetSnapshot(self, request, context):
        snapshot_id = validation.check_id("snapshot_id", request.snapshot_id)
        snapshot = self.store.get_snapshot(snapshot_id)
        return csi_pb2.GetSnapshotResponse(snapshot=snapshot_pb(snapshot))

    def DeleteSnapshot(self, request, context):
        snapshot_id = validation.check_id("snapshot_id", request.snapshot_id)
        with self.driver.lock:
            snapshot = self.store.find_snapshot(snapshot_id)
            if snapshot is not None and snapshot.group_snapshot_id:
                raise errors.precondition(
                    f"snapshot {snapshot_id} is part of group snapshot "
                    f"{snapshot.group_snapshot_id}; DeleteVolumeGroupSnapshot deletes it"
                )
            if snapshot is not None:
                self.store.delete_snapshot(snapshot_id)
                system.remove(self.driver.snapshot_image(snapshot_id))
                log.info("deleted snapshot", extra={"snapshot_id": snapshot_id})
        return csi_pb2.DeleteSnapshotResponse()

    def ListSnapshots(self, request, context):
        snapshots = self.store.snapshots()
        if request.snapshot_id:
            snapshots = [s for s in snapshots if s.id == request.snapshot_id]
        if request.source_volume_id:
            snapshots = [s for s in snapshots if s.source_volume_id == request.source_volume_id]
        chosen, next_token = validation.page(
            snapshots, max_entries=request.max_entries, starting_token=request.starting_token
        )
        entries = [csi_pb2.ListSnapshotsResponse.Entry(snapshot=snapshot_pb(s)) for s in chosen]
        return csi_pb2.ListSnapshotsResponse(entries=entries, next_token=next_token)
