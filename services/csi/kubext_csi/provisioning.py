"""What the built-in provisioner decides, without I/O: which claims this node provisions, the
CreateVolume request for one, the PV that records the volume, and which PVs to delete.

It does what external-provisioner does in ``--node-deployment`` mode, on the API's JSON objects
(camelCase dicts as the API server sends them). ``provisioner.py`` lists, watches and acts.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from kubext import quantity
from kubext_proto.csi.v1 import csi_pb2

# The annotations and finalizer external-provisioner uses, so either one can take over.
SELECTED_NODE = "volume.kubernetes.io/selected-node"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer"
# StorageClass parameters with this prefix are the provisioner's own, never the driver's.
RESERVED_PREFIX = "csi.storage.k8s.io/"
FSTYPE_PARAMETER = "csi.storage.k8s.io/fstype"
DEFAULT_FSTYPE = "ext4"

_Mode = csi_pb2.VolumeCapability.AccessMode
ACCESS_MODES = {
    "ReadWriteOnce": _Mode.SINGLE_NODE_WRITER,
    "ReadOnlyMany": _Mode.MULTI_NODE_READER_ONLY,
    "ReadWriteMany": _Mode.MULTI_NODE_MULTI_WRITER,
    "ReadWriteOncePod": _Mode.SINGLE_NODE_SINGLE_WRITER,
}

JSON = dict[str, Any]


class ClaimError(Exception):
    """A claim or class this provisioner cannot serve; the message goes into the claim's Event."""


class Action(enum.Enum):
    SKIP = "skip"  # not ours, not this node's, or already provisioned
    TAKE = "take"  # Immediate binding: claim it for this node first (selected-node)
    PROVISION = "provision"


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who provisions: the driver's name, this node, and its topology segment."""

    driver: str
    node_id: str
    topology_key: str

    @property
    def segment(self) -> dict[str, str]:
        return {self.topology_key: self.node_id}


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return _meta(obj).get("annotations") or {}


def volume_name(claim: Mapping[str, Any]) -> str:
    """The volume's and the PV's name: ``pvc-<claim uid>``, as external-provisioner names it
    (CreateVolume is idempotent by name, so a retry after a crash finds the same volume)."""
    return f"pvc-{_meta(claim)['uid']}"


def claim_action(
    claim: Mapping[str, Any], storage_class: Mapping[str, Any] | None, me: Identity
) -> Action:
    """Whether this node provisions ``claim`` now.

    Ours: a pending claim without a volume, of a StorageClass whose provisioner is our driver,
    that the PV controller has handed to our driver (``volume.kubernetes.io/storage-provisioner``).
    WaitForFirstConsumer: only the node the scheduler picked (``selected-node``) provisions it.
    Immediate: the first node that writes its own name into ``selected-node`` (an update
    conditioned on the claim's resourceVersion, so exactly one wins) provisions it, if the
    class's allowedTopologies admit that node; the others then see another node's name and skip.
    """
    meta, spec = _meta(claim), claim.get("spec") or {}
    if storage_class is None or storage_class.get("provisioner") != me.driver:
        return Action.SKIP
    if meta.get("deletionTimestamp") or spec.get("volumeName"):
        return Action.SKIP
    if (claim.get("status") or {}).get("phase", "Pending") != "Pending":
        return Action.SKIP
    annotations = _annotations(claim)
    handed_to = annotations.get(STORAGE_PROVISIONER) or annotations.get(BETA_STORAGE_PROVISIONER)
    if handed_to != me.driver:
        return Action.SKIP
    selected = annotations.get(SELECTED_NODE)
    if selected:
        return Action.PROVISION if selected == me.node_id else Action.SKIP
    if storage_class.get("volumeBindingMode", "Immediate") == "WaitForFirstConsumer":
        return Action.SKIP  # the scheduler has not picked a node yet
    return Action.TAKE if topology_allowed(storage_class, me) else Action.SKIP


def topology_allowed(storage_class: Mapping[str, Any], me: Identity) -> bool:
    """Whether the class's allowedTopologies (none: any) admit this node's segment."""
    terms = storage_class.get("allowedTopologies") or []
    if not terms:
        return True
    for term in terms:
        expressions = term.get("matchLabelExpressions") or []
        if all(
            e.get("key") == me.topology_key and me.node_id in (e.get("values") or [])
            for e in expressions
        ):
            return True
    return False


def take_patch(claim: Mapping[str, Any], me: Identity) -> JSON:
    """The merge patch that claims an Immediate claim for this node; its resourceVersion makes the
    API server refuse it (409) when another node got there first."""
    return {
        "metadata": {
            "resourceVersion": _meta(claim)["resourceVersion"],
            "annotations": {SELECTED_NODE: me.node_id},
        }
    }


def _quantity(value: object, what: str) -> int:
    try:
        return quantity.to_bytes(value)  # type: ignore[arg-type]
    except (quantity.QuantityError, TypeError, ValueError) as exc:
        raise ClaimError(f"{what}: {exc}") from None


def capacity_range(claim: Mapping[str, Any]) -> csi_pb2.CapacityRange:
    """The claim's storage request as required_bytes, its limit (if any) as limit_bytes."""
    resources = (claim.get("spec") or {}).get("resources") or {}
    requested = (resources.get("requests") or {}).get("storage")
    if requested is None:
        raise ClaimError("the claim requests no storage (spec.resources.requests.storage)")
    required = _quantity(requested, "spec.resources.requests.storage")
    limit_text = (resources.get("limits") or {}).get("storage")
    limit = 0 if limit_text is None else _quantity(limit_text, "spec.resources.limits.storage")
    if limit and limit < required:
        raise ClaimError(f"the storage limit {limit_text} is below the request {requested}")
    return csi_pb2.CapacityRange(required_bytes=required, limit_bytes=limit)


def fs_type(storage_class: Mapping[str, Any]) -> str:
    return (storage_class.get("parameters") or {}).get(FSTYPE_PARAMETER) or DEFAULT_FSTYPE


def volume_capabilities(
    claim: Mapping[str, Any], storage_class: Mapping[str, Any]
) -> list[csi_pb2.VolumeCapability]:
    """One capability per access mode: raw block for volumeMode Block, else a mount of the
    class's fstype with its mountOptions."""
    spec = claim.get("spec") or {}
    modes = spec.get("accessModes") or []
    if not modes:
        raise ClaimError("the claim names no access mode (spec.accessModes)")
    block = spec.get("volumeMode") == "Block"
    capabilities = []
    for mode in modes:
        if mode not in ACCESS_MODES:
            raise ClaimError(f"access mode {mode!r} is not one of {', '.join(ACCESS_MODES)}")
        access = _Mode(mode=ACCESS_MODES[mode])
        if block:
            capabilities.append(
                csi_pb2.VolumeCapability(
                    block=csi_pb2.VolumeCapability.BlockVolume(), access_mode=access
                )
            )
        else:
            mount = csi_pb2.VolumeCapability.MountVolume(
                fs_type=fs_type(storage_class),
                mount_flags=list(storage_class.get("mountOptions") or []),
            )
            capabilities.append(csi_pb2.VolumeCapability(mount=mount, access_mode=access))
    return capabilities


def create_request(
    claim: Mapping[str, Any], storage_class: Mapping[str, Any], me: Identity
) -> csi_pb2.CreateVolumeRequest:
    """CreateVolume as external-provisioner sends it with --strict-topology: the class's
    parameters (without the provisioner's own csi.storage.k8s.io/ keys), the claim's capacity
    and access modes, and this node as the one requisite and preferred topology."""
    if (claim.get("spec") or {}).get("dataSource") or (claim.get("spec") or {}).get(
        "dataSourceRef"
    ):
        raise ClaimError("the built-in provisioner does not restore or clone (spec.dataSource)")
    parameters = {
        k: str(v)
        for k, v in (storage_class.get("parameters") or {}).items()
        if not k.startswith(RESERVED_PREFIX)
    }
    topology = csi_pb2.Topology(segments=me.segment)
    return csi_pb2.CreateVolumeRequest(
        name=volume_name(claim),
        capacity_range=capacity_range(claim),
        volume_capabilities=volume_capabilities(claim, storage_class),
        parameters=parameters,
        accessibility_requirements=csi_pb2.TopologyRequirement(
            requisite=[topology], preferred=[topology]
        ),
    )


def _size(capacity_bytes: int) -> str:
    """A byte count as the PV's capacity: binary suffixes where exact (64Mi), else bytes."""
    for suffix, shift in (("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)):
        if capacity_bytes and capacity_bytes % (1 << shift) == 0:
            return f"{capacity_bytes >> shift}{suffix}"
    return str(capacity_bytes)


def persistent_volume(
    claim: Mapping[str, Any],
    storage_class: Mapping[str, Any],
    volume: csi_pb2.Volume,
    me: Identity,
) -> JSON:
    """The PV for a created volume, bound to the claim by claimRef (the PV controller then binds
    the claim): the volume's id and context, node affinity from its accessible topology, the
    class's reclaim policy and mount options; a Delete PV carries the provisioner's finalizer so
    it outlives its volume only until the volume is deleted."""
    meta, spec = _meta(claim), claim.get("spec") or {}
    reclaim = storage_class.get("reclaimPolicy") or "Delete"
    block = spec.get("volumeMode") == "Block"
    csi: JSON = {
        "driver": me.driver,
        "volumeHandle": volume.volume_id,
        "volumeAttributes": dict(volume.volume_context),
    }
    if not block:
        csi["fsType"] = fs_type(storage_class)
    pv_spec: JSON = {
        "capacity": {"storage": _size(volume.capacity_bytes)},
        "accessModes": list(spec.get("accessModes") or []),
        "persistentVolumeReclaimPolicy": reclaim,
        "storageClassName": _meta(storage_class)["name"],
        "volumeMode": "Block" if block else "Filesystem",
        "claimRef": {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "csi": csi,
    }
    if storage_class.get("mountOptions"):
        pv_spec["mountOptions"] = list(storage_class["mountOptions"])
    terms = [
        {
            "matchExpressions": [
                {"key": k, "operator": "In", "values": [v]} for k, v in sorted(t.segments.items())
            ]
        }
        for t in volume.accessible_topology
    ]
    if terms:
        pv_spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": terms}}
    metadata: JSON = {
        "name": volume_name(claim),
        "annotations": {PROVISIONED_BY: me.driver},
    }
    if reclaim == "Delete":
        metadata["finalizers"] = [FINALIZER]
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": metadata, "spec": pv_spec}


def on_this_node(pv: Mapping[str, Any], me: Identity) -> bool:
    """Whether the PV's node affinity names this node's segment (its volume lives here)."""
    required = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}
    for term in required.get("nodeSelectorTerms") or []:
        for expression in term.get("matchExpressions") or []:
            if expression.get("key") == me.topology_key and me.node_id in (
                expression.get("values") or []
            ):
                return True
    return False


def ours(pv: Mapping[str, Any], me: Identity) -> bool:
    """A PV this node's provisioner made: our annotation, our driver, this node's volume."""
    csi = (pv.get("spec") or {}).get("csi") or {}
    return (
        _annotations(pv).get(PROVISIONED_BY) == me.driver
        and csi.get("driver") == me.driver
        and on_this_node(pv, me)
    )


def should_delete_volume(pv: Mapping[str, Any], me: Identity) -> bool:
    """Reclaim policy Delete and the claim gone (Released, or the PV itself being deleted with our
    finalizer): the volume goes, then the PV."""
    if not ours(pv, me):
        return False
    spec, meta = pv.get("spec") or {}, _meta(pv)
    if spec.get("persistentVolumeReclaimPolicy") != "Delete":
        return False
    released = (pv.get("status") or {}).get("phase") == "Released"
    being_deleted = bool(meta.get("deletionTimestamp")) and FINALIZER in (
        meta.get("finalizers") or []
    )
    return released or being_deleted


def without_finalizer(pv: Mapping[str, Any]) -> JSON:
    """The merge patch that drops our finalizer (and keeps the others, pv-protection included);
    conditioned on the PV's resourceVersion so a concurrent change is not overwritten."""
    meta = _meta(pv)
    return {
        "metadata": {
            "resourceVersion": meta["resourceVersion"],
            "finalizers": [f for f in meta.get("finalizers") or [] if f != FINALIZER],
        }
    }


def failure_message(storage_class: Mapping[str, Any], code: str, message: str) -> str:
    """ProvisioningFailed's message, worded as external-provisioner's."""
    name = _meta(storage_class).get("name", "")
    return (
        f'failed to provision volume with StorageClass "{name}": '
        f"rpc error: code = {code} desc = {message}"
    )


def backoff_seconds(failures: int, *, initial: float, maximum: float) -> float:
    """Exponential retry delay after ``failures`` failures in a row (1, 2, 4 ... initial units),
    capped at ``maximum``, as external-provisioner's --retry-interval-start/-max."""
    if failures <= 0:
        return 0.0
    return float(min(maximum, initial * 2.0 ** min(failures - 1, 32)))
