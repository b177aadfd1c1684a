"""CSI Node: stage (loop device + filesystem mount), publish (bind mount), stats and expansion.

Every RPC: validate the request -> take the driver lock -> look up state -> act -> persist.
Unstage and unpublish succeed when there is nothing left to undo.
"""

from __future__ import annotations

import logging
import os
import time

from kubext_proto.csi.v1 import csi_pb2, csi_pb2_grpc

from . import driver as driver_
from . import errors, state, system, validation

log = logging.getLogger(__name__)
RPC = csi_pb2.NodeServiceCapability.RPC
CAPABILITIES = (
    RPC.STAGE_UNSTAGE_VOLUME,
    RPC.GET_VOLUME_STATS,
    RPC.EXPAND_VOLUME,
    RPC.VOLUME_CONDITION,
    RPC.SINGLE_NODE_MULTI_WRITER,
)
Mode = validation.Mode


def _capability(request) -> validation.Capability:
    if not request.HasField("volume_capability"):
        raise errors.invalid("volume_capability missing in request")
    return validation.parse_capability(request.volume_capability, field="volume_capability")


class NodeServicer(csi_pb2_grpc.NodeServicer):
    def __init__(self, driver: driver_.Driver) -> None:
        self.driver = driver
        self.store = driver.store
        self.roots = driver.settings.path_roots

    def NodeGetInfo(self, request, context):  # - gRPC method names
        settings = self.driver.settings
        return csi_pb2.NodeGetInfoResponse(
            node_id=settings.node_id,
            max_volumes_per_node=settings.max_volumes_per_node,
            accessible_topology=csi_pb2.Topology(segments=settings.topology),
        )

    def NodeGetCapabilities(self, request, context):
        cap = csi_pb2.NodeServiceCapability
        return csi_pb2.NodeGetCapabilitiesResponse(
            capabilities=[cap(rpc=cap.RPC(type=t)) for t in CAPABILITIES]
        )

    # ---- stage ----

    def NodeStageVolume(self, request, context):
        volume_id = validation.check_id("volume_id", request.volume_id)
        path = validation.check_path(
            "staging_target_path", request.staging_target_path, roots=self.roots
        )
        cap = _capability(request)
        wanted = state.Stage(
            volume_id=volume_id,
            staging_path=path,
            access_type=cap.access_type,
            device="",
            fs_type=cap.fs_type,
            read_only=cap.read_only,
            mount_flags=cap.mount_flags,
            mode=cap.mode,
        )
        with self.driver.lock:
            volume = self.store.get_volume(volume_id)
            existing = self.store.find_stage(volume_id)
            if existing is not None:
                self._check_same_stage(existing, wanted)
                wanted = existing
            else:
                limit = self.driver.settings.max_volumes_per_node
                if limit and len(self.store.stages()) >= limit:
                    raise errors.exhausted(f"this node already holds {limit} volumes")
            # Undo only what this call sets up: never a loop device or mount that was there.
            image = self.driver.image(volume_id)
            undo: list = []
            if not system.loops_for(image):
                undo.append(lambda: system.detach_loops(image))
            if cap.access_type == "mount" and system.mount_at(path) is None:
                undo.append(lambda: system.unmount(path))
            with driver_.rollback_on_error(undo):
                staged = self.driver.ensure_staged(volume, wanted)
                if staged != existing:
                    self.store.put_stage(staged)
        log.info("staged volume", extra={"volume_id": volume_id, "path": path})
        return csi_pb2.NodeStageVolumeResponse()

    @staticmethod
    def _check_same_stage(existing: state.Stage, wanted: state.Stage) -> None:
        if existing.staging_path != wanted.staging_path:
            raise errors.precondition(
                f"volume {wanted.volume_id} is already staged at {existing.staging_path}"
            )
        if existing.access_type != wanted.access_type or existing.read_only != wanted.read_only:
            raise errors.already_exists(
                f"volume {wanted.volume_id} is staged at {existing.staging_path} with another "
                f"capability ({existing.access_type}, {Mode.Name(existing.mode)})"
            )
        if wanted.fs_type and existing.fs_type and wanted.fs_type != existing.fs_type:
            raise errors.already_exists(
                f"volume {wanted.volume_id} is staged as {existing.fs_type}, not {wanted.fs_type}"
            )

    def NodeUnstageVolume(self, request, context):
        volume_id = validation.check_id("volume_id", request.volume_id)
        path = validation.check_path(
            "staging_target_path", request.staging_target_path, roots=self.roots
        )
        with self.driver.lock:
            stage = self.store.find_stage(volume_id)
            if stage is None:
                self.store.get_volume(volume_id)  # NOT_FOUND for a volume that never existed
                return csi_pb2.NodeUnstageVolumeResponse()  # nothing staged: nothing to do
            if stage.staging_path != path:
                raise errors.precondition(
                    f"volume {volume_id} is staged at {stage.staging_path}, not at {path}"
                )
            published = self.store.publishes(volume_id)
            if published:
                raise errors.precondition(
                    f"volume {volume_id} is still published at {published[0].target_path}"
                )
            if stage.access_type == "mount":
                system.unmount(path)
            system.detach_loops(self.driver.image(volume_id))
            self.store.delete_stage(volume_id)
        log.info("unstaged volume", extra={"volume_id": volume_id, "path": path})
        return csi_pb2.NodeUnstageVolumeResponse()

    # ---- publish ----

    def NodePublishVolume(self, request, context):
        volume_id = validation.check_id("volume_id", request.volume_id)
        target = validation.check_path("target_path", request.target_path, roots=self.roots)
        cap = _capability(request)
        if validation.is_ephemeral(request.volume_context):
            return self._publish_ephemeral(request, volume_id, target, cap)
        staging = validation.check_path(
            "staging_target_path", request.staging_target_path, roots=self.roots
        )
        wanted = state.Publish(
            target_path=target,
            volume_id=volume_id,
            staging_path=staging,
            access_type=cap.access_type,
            read_only=request.readonly or cap.read_only,
            mount_flags=cap.mount_flags,
            mode=cap.mode,
        )
        with self.driver.lock:
            self.store.get_volume(volume_id)
            stage = self.store.find_stage(volume_id)
            if stage is None or stage.staging_path != staging:
                raise errors.precondition(
                    f"volume {volume_id} is not staged at {staging}; call NodeStageVolume first"
                )
            if stage.access_type != cap.access_type:
                raise errors.precondition(
                    f"volume {volume_id} is staged for {stage.access_type} access, "
                    f"not {cap.access_type}"
                )
            if stage.read_only and not wanted.read_only:
                raise errors.precondition(
                    f"volume {volume_id} is staged read-only; it can only be published read-only"
                )
            existing = self.store.find_publish(target)
            if existing is not None:
                if existing != wanted:
                    raise errors.already_exists(
                        f"{target} already publishes volume {existing.volume_id} "
                        f"(read_only={existing.read_only}, {existing.access_type})"
                    )
            else:
                self._check_single_writer(wanted)
            undo: list = []
            if not os.path.lexists(target):
                undo.append(lambda: _remove_target(target))
            if system.mount_at(target) is None:
                undo.append(lambda: system.unmount(target))
            with driver_.rollback_on_error(undo):
                self.driver.ensure_published(wanted, stage)
                if existing is None:
                    self.store.put_publish(wanted)
        log.info("published volume", extra={"volume_id": volume_id, "path": target})
        return csi_pb2.NodePublishVolumeResponse()

    def _publish_ephemeral(
        self, request, volume_id: str, target: str, cap: validation.Capability
    ) -> csi_pb2.NodePublishVolumeResponse:
        """An inline volume, as csi-driver-host-path's ephemeral branch: the kubelet calls
        neither CreateVolume nor NodeStageVolume, so publishing creates, formats and stages it;
        NodeUnpublishVolume deletes it. The id is the kubelet's (csi-<hash>)."""
        if cap.access_type != "mount":
            raise errors.invalid("an ephemeral volume can only be published for mount, not block")
        settings = self.driver.settings
        size = validation.ephemeral_size(
            request.volume_context,
            default=settings.default_volume_bytes,
            maximum=settings.max_volume_bytes,
        )
        fs_type = cap.fs_type or validation.DEFAULT_FS
        wanted = state.Publish(
            target_path=target,
            volume_id=volume_id,
            staging_path=self.driver.ephemeral_staging(volume_id),
            access_type="mount",
            read_only=request.readonly or cap.read_only,
            mount_flags=cap.mount_flags,
            mode=cap.mode,
        )
        with self.driver.lock:
            volume = self.store.find_volume(volume_id)
            if volume is not None and not volume.ephemeral:
                raise errors.already_exists(f"volume {volume_id} exists and is not ephemeral")
            if volume is not None and volume.capacity != size:
                raise errors.already_exists(
                    f"ephemeral volume {volume_id} exists with {volume.capacity} bytes, not {size}"
                )
            existing = self.store.find_publish(target)
            if existing is not None and existing != wanted:
                raise errors.already_exists(
                    f"{target} already publishes volume {existing.volume_id} "
                    f"(read_only={existing.read_only}, {existing.access_type})"
                )
            elsewhere = [p for p in self.store.publishes(volume_id) if p.target_path != target]
            if elsewhere:
                raise errors.precondition(
                    f"ephemeral volume {volume_id} is already published at "
                    f"{elsewhere[0].target_path}"
                )
            undo: list = []
            if volume is None:
                limit = settings.max_volumes_per_node
                if limit and len(self.store.stages()) >= limit:
                    raise errors.exhausted(f"this node already holds {limit} volumes")
                self.driver.reserve(size, f"ephemeral volume {volume_id}")
                undo.append(lambda: self.driver.remove_ephemeral(volume_id))
            if not os.path.lexists(target):
                undo.append(lambda: _remove_target(target))
            if system.mount_at(target) is None:
                undo.append(lambda: system.unmount(target))
            with driver_.rollback_on_error(undo):
                if volume is None:
                    volume = state.Volume(
                        id=volume_id,
                        name=f"ephemeral-{volume_id}",
                        capacity=size,
                        fs_type=fs_type,
                        created_ns=time.time_ns(),
                        ephemeral=True,
                    )
                    system.create_image(self.driver.image(volume_id), size)
                    self.store.put_volume(volume)
                stage = self.store.find_stage(volume_id) or state.Stage(
                    volume_id=volume_id,
                    staging_path=wanted.staging_path,
                    access_type="mount",
                    device="",
                    fs_type=fs_type,
                    read_only=False,  # the pod's readOnly applies to its bind mount
                    mount_flags=cap.mount_flags,
                    mode=cap.mode,
                )
                staged = self.driver.ensure_staged(volume, stage)
                if staged != self.store.find_stage(volume_id):
                    self.store.put_stage(staged)
                self.driver.ensure_published(wanted, staged)
                if existing is None:
                    self.store.put_publish(wanted)
        log.info("published ephemeral volume", extra={"volume_id": volume_id, "path": target})
        return csi_pb2.NodePublishVolumeResponse()

    def _check_single_writer(self, wanted: state.Publish) -> None:
        """SINGLE_NODE_SINGLE_WRITER: at most one writable publication at a time."""
        if wanted.read_only:
            return
        writers = [p for p in self.store.publishes(wanted.volume_id) if not p.read_only]
        single = Mode.SINGLE_NODE_SINGLE_WRITER
        if writers and (wanted.mode == single or any(p.mode == single for p in writers)):
            raise errors.precondition(
                f"volume {wanted.volume_id} is single-writer and already published writable "
                f"at {writers[0].target_path}"
            )

    def NodeUnpublishVolume(self, request, context):
        volume_id = validation.check_id("volume_id", request.volume_id)
        target = validation.check_path("target_path", request.target_path, roots=self.roots)
        with self.driver.lock:
            publish = self.store.find_publish(target)
            if publish is None:
                self.store.get_volume(volume_id)  # NOT_FOUND for a volume that never existed
            elif publish.volume_id != volume_id:
                raise errors.precondition(f"{target} publishes volume {publish.volume_id}")
            system.unmount(target)
            _remove_target(target)  # the spec: the driver deletes what it created at the target
            if publish is not None:
                self.store.delete_publish(target)
            volume = self.store.find_volume(volume_id)
            if volume is not None and volume.ephemeral and not self.store.publishes(volume_id):
                self.driver.remove_ephemeral(volume_id)  # an inline volume lives as its pod's
        log.info("unpublished volume", extra={"volume_id": volume_id, "path": target})
        return csi_pb2.NodeUnpublishVolumeResponse()

    # ---- stats and expansion ----

    def _held_at(self, volume_id: str, path: str) -> tuple[state.Stage, str]:
        """The stage of a volume and its access type at ``path``; NOT_FOUND if it is not there."""
        normalized = os.path.normpath(path) if path.startswith("/") else None
        stage = self.store.find_stage(volume_id)
        if stage is not None and normalized is not None:
            if stage.staging_path == normalized:
                return stage, stage.access_type
            publish = self.store.find_publish(normalized)
            if publish is not None and publish.volume_id == volume_id:
                return stage, publish.access_type
        raise errors.not_found(f"volume {volume_id} is not staged or published at {path!r}")

    def NodeGetVolumeStats(self, request, context):
        volume_id = validation.check_id("volume_id", request.volume_id)
        if not request.volume_path:
            raise errors.invalid("volume_path missing in request")
        with self.driver.lock:
            volume = self.store.get_volume(volume_id)
            stage, access_type = self._held_at(volume_id, request.volume_path)
            condition = self.driver.condition(volume)
        condition_pb = csi_pb2.VolumeCondition(
            abnormal=condition.abnormal, message=condition.message
        )
        Unit = csi_pb2.VolumeUsage.Unit
        if condition.abnormal:
            return csi_pb2.NodeGetVolumeStatsResponse(volume_condition=condition_pb)
        if access_type == "block":
            usage = [csi_pb2.VolumeUsage(total=system.device_size(stage.device), unit=Unit.BYTES)]
        else:
            st = system.fs_stats(os.path.normpath(request.volume_path))
            usage = [
                csi_pb2.VolumeUsage(
                    available=st.available, total=st.total, used=st.used, unit=Unit.BYTES
                ),
                csi_pb2.VolumeUsage(
                    available=st.inodes_free,
                    total=st.inodes_total,
                    used=st.inodes_used,
                    unit=Unit.INODES,
                ),
            ]
        return csi_pb2.NodeGetVolumeStatsResponse(usage=usage, volume_condition=condition_pb)

    def NodeExpandVolume(self, request, context):
        volume_id = validation.check_id("volume_id", request.volume_id)
        if not request.volume_path:
            raise errors.invalid("volume_path missing in request")
        if request.HasField("volume_capability"):
            _capability(request)
        with self.driver.lock:
            volume = self.store.get_volume(volume_id)
            stage, access_type = self._held_at(volume_id, request.volume_path)
            required = request.capacity_range.required_bytes
            if required > volume.capacity:
                raise errors.out_of_range(
                    f"volume {volume_id} has {volume.capacity} bytes; expand it with "
                    f"ControllerExpandVolume to {required} first"
                )
            system.refresh_loop(stage.device)
            if access_type == "mount" and not stage.read_only:
                system.grow_fs(stage.device, mounted=True)
        log.info("expanded volume on node", extra={"volume_id": volume_id})
        return csi_pb2.NodeExpandVolumeResponse(capacity_bytes=volume.capacity)


def _remove_target(target: str) -> None:
    """Removes the directory (mount) or file (block) made for a publication, if still there."""
    try:
        if os.path.isdir(target) and not os.path.islink(target):
            os.rmdir(target)
        else:
            os.unlink(target)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise errors.internal(f"cannot remove target path {target}: {exc.strerror}") from None
