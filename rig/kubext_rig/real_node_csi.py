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


def csi_driver_manifest() -> dict[str, Any]:
    """The CSIDriver object of our driver on the real node, as the chart's."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSIDriver",
        "metadata": {"name": DRIVER},
        "spec": {
            "attachRequired": False,  # no external-attacher: the kubelet stages at once
            # The kubelet marks an inline volume (csi.storage.k8s.io/ephemeral) in the volume
            # context only along with the pod's info.
            "podInfoOnMount": True,
            "volumeLifecycleModes": ["Persistent", "Ephemeral"],
        },
    }


def create_csi_driver(storage: client.StorageV1Api) -> None:
    storage.create_csi_driver(csi_driver_manifest())


def create_storage_class(
    storage: client.StorageV1Api,
    name: str,
    *,
    reclaim_policy: str = "Retain",
    volume_binding_mode: str = "Immediate",
) -> None:
    """A class of our driver that allows expansion: the API server's PersistentVolumeClaimResize
    admission refuses to grow a claim of any other (or of none)."""
    storage.create_storage_class(
        client.V1StorageClass(
            metadata=client.V1ObjectMeta(name=name),
            provisioner=DRIVER,
            allow_volume_expansion=True,
            reclaim_policy=reclaim_policy,
            volume_binding_mode=volume_binding_mode,
        )
    )


def registered(storage: client.StorageV1Api) -> dict[str, Any] | None:
    """The driver's entry in the real node's CSINode, once the kubelet has registered it."""
    # Raw JSON: the client's model refuses a CSINode whose drivers list is still null.
    raw = storage.read_csi_node(node.NODE_NAME, _preload_content=False)
    drivers = json.loads(raw.data)["spec"].get("drivers") or []
    return next((d for d in drivers if d["name"] == DRIVER), None)


def capability(*, block: bool = False) -> csi_pb2.VolumeCapability:
    """ReadWriteOnce as external-provisioner and -resizer send it: ext4 mount, or raw block."""
    access_mode = csi_pb2.VolumeCapability.AccessMode(
        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    )
    if block:
        return csi_pb2.VolumeCapability(
            block=csi_pb2.VolumeCapability.BlockVolume(), access_mode=access_mode
        )
    return csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"), access_mode=access_mode
    )


def create_volume(
    controller: csi_pb2_grpc.ControllerStub,
    name: str,
    *,
    size_bytes: int = 64 << 20,
    block: bool = False,
) -> csi_pb2.Volume:
    """As external-provisioner calls it for a PVC of ReadWriteOnce (ext4, or raw block)."""
    request = csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=size_bytes),
        volume_capabilities=[capability(block=block)],
        accessibility_requirements=csi_pb2.TopologyRequirement(
            requisite=[csi_pb2.Topology(segments={TOPOLOGY_KEY: node.NODE_NAME})]
        ),
    )
    return controller.CreateVolume(request, timeout=60, wait_for_ready=True).volume


def pv_and_claim(
    core: client.CoreV1Api,
    volume: csi_pb2.Volume,
    *,
    pv: str,
    claim: str,
    namespace: str,
    block: bool = False,
    storage_class: str = "",
) -> None:
    """A PV as external-provisioner writes it (node affinity from the volume's topology), and a
    claim bound to it by name; ``block`` makes both volumeMode Block (no filesystem)."""
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
    mode = "Block" if block else "Filesystem"
    core.create_persistent_volume(
        client.V1PersistentVolume(
            metadata=client.V1ObjectMeta(name=pv),
            spec=client.V1PersistentVolumeSpec(
                capacity={"storage": size},
                access_modes=["ReadWriteOnce"],
                persistent_volume_reclaim_policy="Retain",
                storage_class_name=storage_class,
                volume_mode=mode,
                node_affinity=affinity,
                csi=client.V1CSIPersistentVolumeSource(
                    driver=DRIVER,
                    volume_handle=volume.volume_id,
                    fs_type=None if block else "ext4",
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
                storage_class_name=storage_class,
                volume_mode=mode,
                volume_name=pv,
                resources=client.V1VolumeResourceRequirements(requests={"storage": size}),
            ),
        ),
    )


def expand_as_resizer(
    core: client.CoreV1Api,
    controller: csi_pb2_grpc.ControllerStub,
    volume_id: str,
    *,
    pv: str,
    claim: str,
    namespace: str,
    size_bytes: int,
) -> csi_pb2.ControllerExpandVolumeResponse:
    """What external-resizer (with RecoverVolumeExpansionFailure, GA in 1.34) does once a claim's
    request has grown: mark the controller resize in progress, ControllerExpandVolume, the PV's
    capacity, then either NodeResizePending (the kubelet's NodeExpandVolume at the next mount
    finishes it and sets the claim's capacity) or the claim's capacity at once."""
    size = f"{size_bytes >> 20}Mi"
    core.patch_namespaced_persistent_volume_claim_status(
        claim,
        namespace,
        {
            "status": {
                "allocatedResources": {"storage": size},
                "allocatedResourceStatuses": {"storage": "ControllerResizeInProgress"},
            }
        },
    )
    response = controller.ControllerExpandVolume(
        csi_pb2.ControllerExpandVolumeRequest(
            volume_id=volume_id,
            capacity_range=csi_pb2.CapacityRange(required_bytes=size_bytes),
            volume_capability=capability(),
        ),
        timeout=60,
    )
    done = f"{response.capacity_bytes >> 20}Mi"
    core.patch_persistent_volume(pv, {"spec": {"capacity": {"storage": done}}})
    if response.node_expansion_required:
        status: dict[str, Any] = {
            "allocatedResourceStatuses": {"storage": "NodeResizePending"},
            "conditions": [{"type": "FileSystemResizePending", "status": "True"}],
        }
    else:
        status = {"capacity": {"storage": done}, "allocatedResourceStatuses": None}
    core.patch_namespaced_persistent_volume_claim_status(claim, namespace, {"status": status})
    return response
