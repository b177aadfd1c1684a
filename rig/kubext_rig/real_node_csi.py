"""Our CSI driver on the rig's real node, as the CSI real-node test and the bench run it: a root
host process with the kubelet's plugin registration on, a CSIDriver object, and the volumes, PVs
and claims external-provisioner would make (no external-provisioner or -attacher runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubernetes import client

from kubext_proto.csi.v1 import csi_pb2, csi_pb2_grpc
from kubext_rig import node

DRIVER = "csi.kubext.io"
TOPOLOGY_KEY = "topology.csi.kubext.io/node"


def csi_dir(state: Path) -> Path:
    return state / "node" / "csi"


def kubelet_dir(state: Path) -> Path:
    return state / "node" / "kubelet"


def endpoint(state: Path) -> str:
    return f"unix://{csi_dir(state) / 'csi.sock'}"


def driver_config(state: Path, *, pool_size: str, **extra: Any) -> dict[str, Any]:
    """The driver's config for the real node of ``state``, registration with its kubelet on."""
    return {
        "driver_name": DRIVER,
        "endpoint": endpoint(state),
        "node_id": node.NODE_NAME,
        "topology_key": TOPOLOGY_KEY,
        "state_dir": str(csi_dir(state) / "state"),
        "pool_size": pool_size,
        # The kubelet stages and publishes only under its root.
        "path_roots": [str(kubelet_dir(state))],
        "health": {"host": "127.0.0.1", "port": 0},
        "registration": {"enabled": True, "kubelet_dir": str(kubelet_dir(state))},
        **extra,
    }


def create_csi_driver(storage: client.StorageV1Api) -> None:
    storage.create_csi_driver(
        client.V1CSIDriver(
            metadata=client.V1ObjectMeta(name=DRIVER),
            spec=client.V1CSIDriverSpec(
                attach_required=False,  # no external-attacher: the kubelet stages at once
                pod_info_on_mount=False,
                volume_lifecycle_modes=["Persistent"],
            ),
        )
    )


def registered(storage: client.StorageV1Api) -> dict[str, Any] | None:
    """The driver's entry in the real node's CSINode, once the kubelet has registered it."""
    # Raw JSON: the client's model refuses a CSINode whose drivers list is still null.
    raw = storage.read_csi_node(node.NODE_NAME, _preload_content=False)
    drivers = json.loads(raw.data)["spec"].get("drivers") or []
    return next((d for d in drivers if d["name"] == DRIVER), None)


def create_volume(controller: csi_pb2_grpc.ControllerStub, name: str) -> csi_pb2.Volume:
    """As external-provisioner calls it for a PVC of ReadWriteOnce, ext4, 64Mi."""
    capability = csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
        access_mode=csi_pb2.VolumeCapability.AccessMode(
            mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
        ),
    )
    request = csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=64 << 20),
        volume_capabilities=[capability],
        accessibility_requirements=csi_pb2.TopologyRequirement(
            requisite=[csi_pb2.Topology(segments={TOPOLOGY_KEY: node.NODE_NAME})]
        ),
    )
    return controller.CreateVolume(request, timeout=60, wait_for_ready=True).volume


def pv_and_claim(
    core: client.CoreV1Api, volume: csi_pb2.Volume, *, pv: str, claim: str, namespace: str
) -> None:
    """A PV as external-provisioner writes it (node affinity from the volume's topology), and a
    claim bound to it by name."""
    affinity = client.V1VolumeNodeAffinity(
        required=client.V1NodeSelector(
            node_selector_terms=[
                client.V1NodeSelectorTerm(
                    match_expressions=[
                        client.V1NodeSelectorRequirement(key=k, operator="In", values=[v])
                        for k, v in volume.accessible_topology[0].segments.items()
                    ]
                )
            ]
        )
    )
    size = f"{volume.capacity_bytes >> 20}Mi"
    core.create_persistent_volume(
        client.V1PersistentVolume(
            metadata=client.V1ObjectMeta(name=pv),
            spec=client.V1PersistentVolumeSpec(
                capacity={"storage": size},
                access_modes=["ReadWriteOnce"],
                persistent_volume_reclaim_policy="Retain",
                storage_class_name="",
                volume_mode="Filesystem",
                node_affinity=affinity,
                csi=client.V1CSIPersistentVolumeSource(
                    driver=DRIVER,
                    volume_handle=volume.volume_id,
                    fs_type="ext4",
                    volume_attributes=dict(volume.volume_context),
                ),
            ),
        )
    )
    core.create_namespaced_persistent_volume_claim(
        namespace,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name=claim),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                storage_class_name="",
                volume_name=pv,
                resources=client.V1VolumeResourceRequirements(requests={"storage": size}),
            ),
        ),
    )
