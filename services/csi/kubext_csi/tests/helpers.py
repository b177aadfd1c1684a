"""Request builders shared by the csi tests and the benchmark."""

from __future__ import annotations

from kubext_proto.csi.v1 import csi_pb2

Mode = csi_pb2.VolumeCapability.AccessMode.Mode
MiB = 1 << 20


def mount_cap(
    mode: int = Mode.SINGLE_NODE_WRITER, fs_type: str = "", flags: tuple[str, ...] = ()
) -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type=fs_type, mount_flags=list(flags)),
        access_mode=csi_pb2.VolumeCapability.AccessMode(mode=mode),
    )


def block_cap(mode: int = Mode.SINGLE_NODE_WRITER) -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(
        block=csi_pb2.VolumeCapability.BlockVolume(),
        access_mode=csi_pb2.VolumeCapability.AccessMode(mode=mode),
    )


def create_request(
    name: str, size: int = 64 * MiB, cap: csi_pb2.VolumeCapability | None = None, **kwargs
) -> csi_pb2.CreateVolumeRequest:
    return csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=size),
        volume_capabilities=[cap or mount_cap()],
        **kwargs,
    )
