"""The driver: settings, the one lock, the state store and the volume operations all services share.

Like csi-driver-host-path, one process serves Identity, Controller and Node for the volumes of
its node, and every RPC that changes something runs under ``Driver.lock``:
validate -> lock -> look up state -> act on the system -> persist.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from . import errors, state, system, validation

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Settings:
    name: str
    version: str
    node_id: str
    topology_key: str
    state_dir: Path
    pool_bytes: int
    max_volume_bytes: int
    default_volume_bytes: int
    max_volumes_per_node: int = 0
    path_roots: tuple[str, ...] = ()
    # Node IDs besides node_id that ControllerPublish accepts (records an attachment for).
    attachable_node_ids: tuple[str, ...] = ()

    @property
    def topology(self) -> dict[str, str]:
        return {self.topology_key: self.node_id}

    def knows_node(self, node_id: str) -> bool:
        return node_id == self.node_id or node_id in self.attachable_node_ids


@dataclasses.dataclass(frozen=True)
class Condition:
    abnormal: bool
    message: str


class Driver:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lock = threading.RLock()
        self.images = settings.state_dir / "volumes"
        self.snapshot_dir = settings.state_dir / "snapshots"
        self.images.mkdir(parents=True, exist_ok=True)
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self.store = state.Store(settings.state_dir / "state.db")

    def close(self) -> None:
        self.store.close()

    # ---- paths and accounting ----

    def image(self, volume_id: str) -> Path:
        return self.images / f"{volume_id}.img"

    def snapshot_image(self, snapshot_id: str) -> Path:
        return self.snapshot_dir / f"{snapshot_id}.img"

    def available_bytes(self) -> int:
        return max(0, self.settings.pool_bytes - self.store.used_bytes())

    def reserve(self, size: int, what: str) -> None:
        available = self.available_bytes()
        if size > available:
            raise errors.exhausted(
                f"{what} needs {size} bytes but only {available} of the pool's "
                f"{self.settings.pool_bytes} are free"
            )

    # ---- health of a volume ----

    def condition(self, volume: state.Volume) -> Condition:
        """Abnormal when the image, the loop device or a mount the state promises is gone."""
        image = self.image(volume.id)
        try:
            size = image.stat().st_size
        except FileNotFoundError:
            return Condition(True, f"backing file {image} is missing")
        if size < volume.capacity:
            return Condition(True, f"backing file is {size} bytes, expected {volume.capacity}")
        stage = self.store.find_stage(volume.id)
        if stage is not None:
            if stage.device not in system.loops_for(image):
                return Condition(True, f"loop device {stage.device} is not attached to {image}")
            if stage.access_type == "mount" and system.mount_at(stage.staging_path) is None:
                return Condition(True, f"staging path {stage.staging_path} is not mounted")
        for publish in self.store.publishes(volume.id):
            if system.mount_at(publish.target_path) is None:
                return Condition(True, f"target path {publish.target_path} is not mounted")
        return Condition(False, "volume is healthy")

    # ---- data copies (snapshots and clones) ----

    def copy_volume(self, volume: state.Volume, target: Path, *, size: int) -> None:
        """A consistent copy of a volume: its filesystem is frozen while staged and mounted."""
        with self.quiesced(volume):
            system.copy_sparse(self.image(volume.id), target, size=size)

    @contextlib.contextmanager
    def quiesced(self, volume: state.Volume) -> Iterator[None]:
        """While inside, the volume's image holds a consistent state: a writable staged
        filesystem is frozen (FIFREEZE, what fsfreeze(8) does: writes block until the thaw).
        A volume staged for block access is flushed (fsync of the loop device) but not frozen:
        the kernel has no freeze for a raw device, so a pod writing during the copy can tear it.
        """
        stage = self.store.find_stage(volume.id)
        if stage is not None and stage.access_type == "mount" and not stage.read_only:
            with system.frozen(stage.staging_path):
                yield
            return
        if stage is not None:  # block access: flush what the loop device holds
            fd = os.open(stage.device, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        yield

    # ---- mutable parameters ----

    def apply_label(self, volume: state.Volume) -> bool:
        """Writes the volume's ``label`` mutable parameter to its filesystem where it can now:
        online through the staging mount, or offline on the image while unstaged. False when it
        has to wait: no filesystem yet (mkfs writes it), or staged for block access or
        read-only (the next writable mount stage writes it)."""
        label = volume.label
        if label is None:
            return False
        stage = self.store.find_stage(volume.id)
        if stage is not None:
            if stage.access_type != "mount" or stage.read_only:
                return False
            info = system.ext_info(stage.device)
            if info is not None and info.label != label:
                system.set_label(stage.device, label, mounted_at=stage.staging_path)
            return True
        image = self.image(volume.id)
        info = system.ext_info(image)
        if info is None:
            return False
        if info.label != label:
            system.set_label(image, label)
        return True

    # ---- node: staging, shared by NodeStageVolume and restart recovery ----

    def ensure_staged(self, volume: state.Volume, stage: state.Stage) -> state.Stage:
        """Attaches the loop device and mounts the staging path as ``stage`` describes.

        Idempotent: what is already in place is kept. Returns the stage with its device.
        """
        image = self.image(volume.id)
        if not image.exists():
            raise errors.precondition(f"backing file of volume {volume.id} is missing")
        fs_type = stage.fs_type or volume.fs_type or validation.DEFAULT_FS
        label = volume.label
        mount = stage.access_type == "mount"
        if mount and not system.loops_for(image) and system.ext_info(image) is None:
            # First mount: format the file, faster than the device.
            system.mkfs(image, fs_type, label=label or "")
        device = system.attach_loop(image)
        stage = dataclasses.replace(stage, device=device)
        if stage.access_type == "block":
            return stage
        os.makedirs(stage.staging_path, exist_ok=True)
        mounted = system.mount_at(stage.staging_path)
        if mounted is not None:
            if mounted.source != device:
                raise errors.precondition(
                    f"staging path {stage.staging_path} already holds another mount "
                    f"({mounted.source})"
                )
            return stage
        info = system.ext_info(device)
        if info is None:  # first mount while the loop device was already attached
            system.mkfs(device, fs_type, label=label or "")
            info = system.ext_info(device)
            assert info is not None, "mkfs left no ext superblock"
        if stage.fs_type and stage.fs_type != info.fs_type:
            raise errors.invalid(
                f"volume_capability asks for {stage.fs_type} but volume {volume.id} holds "
                f"{info.fs_type}"
            )
        stage = dataclasses.replace(stage, fs_type=info.fs_type)
        if not stage.read_only:
            system.grow_fs(device, mounted=False)  # expanded or cloned bigger while unstaged
            if label is not None and info.label != label:  # modified while staged for block
                system.set_label(device, label)
        system.mount_device(
            device,
            stage.staging_path,
            fs_type=info.fs_type,
            flags=stage.mount_flags,
            read_only=stage.read_only,
        )
        return stage

    def ensure_published(self, publish: state.Publish, stage: state.Stage) -> None:
        target = publish.target_path
        if system.mount_at(target) is not None:
            return
        if publish.access_type == "block":
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "a"):
                pass
            source = stage.device
        else:
            os.makedirs(target, exist_ok=True)
            source = stage.staging_path
        system.bind_mount(source, target, flags=publish.mount_flags, read_only=publish.read_only)

    # ---- node: ephemeral inline volumes ----

    def ephemeral_staging(self, volume_id: str) -> str:
        """Where an ephemeral volume's filesystem is mounted before the bind into the pod: the
        kubelet stages nothing for it, so the driver picks a path of its own."""
        return str(self.settings.state_dir / "ephemeral" / volume_id)

    def remove_ephemeral(self, volume_id: str) -> None:
        """Unmounts, detaches and deletes an ephemeral volume; what is already gone is fine."""
        stage = self.store.find_stage(volume_id)
        staging = stage.staging_path if stage else self.ephemeral_staging(volume_id)
        system.unmount(staging)
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(staging)
        image = self.image(volume_id)
        system.detach_loops(image)
        with self.store.transaction():
            self.store.delete_stage(volume_id)
            self.store.delete_volume(volume_id)
        system.remove(
            image
        )  # after the records: a crash in between leaves an orphan, removed at start
        log.info("deleted ephemeral volume", extra={"volume_id": volume_id})

    # ---- restart ----

    def recover(self) -> None:
        """Re-establishes what the state says this node holds, and clears what it does not.

        Runs once at start, before serving: removes half-created images (a crash between
        creating a file and recording it), re-attaches loop devices and re-mounts staging and
        target paths (after a reboot they are gone), and detaches loop devices of this driver's
        images that nothing stages.
        """
        started = time.monotonic()
        with self.lock:
            self._remove_orphans()
            for volume in self.store.volumes():
                # Only NodePublishVolume creates an ephemeral volume: without its publication
                # (a crash before recording it) nothing will ever unpublish it.
                if volume.ephemeral and not self.store.publishes(volume.id):
                    log.warning("removing unpublished ephemeral volume %s", volume.id)
                    self.remove_ephemeral(volume.id)
            for attachment in self.store.attachments():
                if self.store.find_volume(attachment.volume_id) is None:
                    log.warning("dropping attach record of unknown volume %s", attachment.volume_id)
                    self.store.delete_attachment(attachment.volume_id, attachment.node_id)
            staged_images = set()
            for stage in self.store.stages():
                volume = self.store.find_volume(stage.volume_id)
                if volume is None:
                    log.warning("dropping stage record of unknown volume %s", stage.volume_id)
                    self.store.delete_stage(stage.volume_id)
                    continue
                staged_images.add(str(self.image(volume.id)))
                try:
                    restored = self.ensure_staged(volume, stage)
                except errors.CsiError as exc:
                    log.error("cannot restore stage of %s: %s", volume.id, exc.message)
                    continue
                if restored != stage:
                    self.store.put_stage(restored)
                for publish in self.store.publishes(volume.id):
                    try:
                        self.ensure_published(publish, restored)
                    except (errors.CsiError, OSError) as exc:
                        log.error(
                            "cannot restore %s at %s: %s", volume.id, publish.target_path, exc
                        )
            for image in sorted(self.images.glob("*.img")):
                if str(image) not in staged_images and system.loops_for(image):
                    log.info("detaching stale loop device of %s", image.name)
                    system.detach_loops(image)
        log.info(
            "recovered state",
            extra={
                "volumes": len(self.store.volumes()),
                "stages": len(self.store.stages()),
                "attachments": len(self.store.attachments()),
                "ms": round((time.monotonic() - started) * 1000),
            },
        )

    def _remove_orphans(self) -> None:
        known = {v.id for v in self.store.volumes()}
        for path in self.images.iterdir():
            volume_id = path.name.removesuffix(".img")
            if path.name.endswith(".partial") or volume_id not in known:
                log.warning("removing orphaned file %s", path)
                system.detach_loops(path)
                system.remove(path)
        snaps = {s.id for s in self.store.snapshots()}
        for path in self.snapshot_dir.iterdir():
            if path.name.endswith(".partial") or path.name.removesuffix(".img") not in snaps:
                log.warning("removing orphaned file %s", path)
                system.remove(path)


@contextlib.contextmanager
def rollback_on_error(undo: list) -> Iterator[list]:
    """Runs the registered undo callables (last first) if the block fails; keeps them otherwise."""
    try:
        yield undo
    except BaseException:
        for step in reversed(undo):
            try:
                step()
            except Exception:  # the original error matters more than a failed undo
                log.exception("rollback step failed")
        raise
