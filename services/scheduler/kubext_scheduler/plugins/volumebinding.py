"""VolumeBinding: a pod's PersistentVolumeClaims decide where it may run, as kube-scheduler's
plugin (pkg/scheduler/framework/plugins/volumebinding, v1.35) does.

PreFilter: every claim the pod names (``persistentVolumeClaim`` and generic ``ephemeral``
volumes) must exist and not be lost or being deleted; an unbound claim of an Immediate class
(or one pre-bound to a PV the PV controller has not finished) waits for the PV controller.
Filter: a bound claim's PV must accept the node (its ``nodeAffinity``); each unbound claim of a
WaitForFirstConsumer class needs, on this node, either an available PV to bind (class, access
modes, volume mode, capacity, selector, node affinity; the smallest that fits) or a
provisioner whose StorageClass ``allowedTopologies`` admit the node. Reserve assumes the choice
in the cache (the PV's claimRef, the claim's ``volume.kubernetes.io/selected-node``); PreBind
writes it (PUT the PV: the PV controller binds the claim; PUT the claim: external-provisioner
provisions on that node) and waits, up to ``bindTimeoutSeconds``, until every claim is Bound.

Score is off, as upstream's without the alpha StorageCapacityScoring gate; so is the
CSIStorageCapacity check (no CSIStorageCapacity informer: a full node fails CreateVolume and
the provisioner's reschedule brings the pod back). Without a volume view (the extender's
calls, where kube-scheduler's own VolumeBinding decides volumes) the plugin skips.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import pydantic

from kubext import quantity
from kubext_scheduler.framework import interfaces, labels, status
from kubext_scheduler.framework.cycle_state import CycleState, key
from kubext_scheduler.framework.interfaces import Pod
from kubext_scheduler.framework.nodeinfo import NodeInfo, name_of
from kubext_scheduler.framework.resources import InvalidObject
from kubext_scheduler.framework.status import Status
from kubext_scheduler.framework.volumes import (
    NeedsVolumes,
    VolumeAPI,
    VolumeAPIError,
    VolumeCache,
    VolumeState,
    key_of_claim,
    resource_version,
)
from kubext_scheduler.plugins import nodeaffinity

NAME = "VolumeBinding"
STATE_KEY = key("PreFilter", NAME)

ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_BETA_CLASS = "volume.beta.kubernetes.io/storage-class"
NO_PROVISIONER = "kubernetes.io/no-provisioner"

# Upstream's ConflictReasons and PreFilter reason, word for word.
REASON_NODE_CONFLICT = "node(s) didn't match PersistentVolume's node affinity"
REASON_BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"
REASON_PV_NOT_EXIST = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
REASON_UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"

Obj = Mapping[str, Any]


class Args(pydantic.BaseModel):
    """VolumeBindingArgs: ``bindTimeoutSeconds`` (default 600, as upstream; 0 fails at once
    unless the claims are already bound). ``shape`` needs the alpha StorageCapacityScoring
    gate upstream and is refused here (unknown field)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    bindTimeoutSeconds: pydantic.StrictInt = pydantic.Field(600, ge=0)


# --- reading claims and volumes ------------------------------------------------------------


def _meta(obj: Obj) -> Mapping[str, Any]:
    meta = obj.get("metadata") or {}
    return meta if isinstance(meta, Mapping) else {}


def _spec(obj: Obj) -> Mapping[str, Any]:
    spec = obj.get("spec") or {}
    return spec if isinstance(spec, Mapping) else {}


def _annotations(obj: Obj) -> Mapping[str, str]:
    found = _meta(obj).get("annotations") or {}
    return found if isinstance(found, Mapping) else {}


def claim_class(claim: Obj) -> str:
    """GetPersistentVolumeClaimClass: the beta annotation first, then spec.storageClassName."""
    annotations = _annotations(claim)
    if ANN_BETA_CLASS in annotations:
        return str(annotations[ANN_BETA_CLASS])
    return str(_spec(claim).get("storageClassName") or "")


def volume_class(volume: Obj) -> str:
    annotations = _annotations(volume)
    if ANN_BETA_CLASS in annotations:
        return str(annotations[ANN_BETA_CLASS])
    return str(_spec(volume).get("storageClassName") or "")


def fully_bound(claim: Obj) -> bool:
    """isPVCFullyBound: the PV controller has finished (volumeName and bind-completed)."""
    return bool(_spec(claim).get("volumeName")) and ANN_BIND_COMPLETED in _annotations(claim)


def _bytes(where: str, raw: object) -> Decimal:
    try:
        return quantity.parse_quantity(raw).value  # type: ignore[arg-type]
    except (quantity.QuantityError, TypeError) as exc:
        raise InvalidObject(f"{where}: {raw!r} is not a quantity ({exc})") from None


def requested_storage(claim: Obj) -> Decimal:
    requests = (_spec(claim).get("resources") or {}).get("requests") or {}
    raw = requests.get("storage") if isinstance(requests, Mapping) else None
    if raw is None:
        return Decimal(0)
    return _bytes(f"persistentvolumeclaim {key_of_claim(claim)} storage request", raw)


def volume_capacity(volume: Obj) -> Decimal:
    raw = (_spec(volume).get("capacity") or {}).get("storage")
    if raw is None:
        return Decimal(0)
    return _bytes(f"persistentvolume {name_of(volume)} capacity", raw)


def node_affinity_matches(volume: Obj, node_labels: Mapping[str, str]) -> bool:
    """CheckNodeAffinity: no nodeAffinity (or no required part) accepts every node; else one
    of the required terms must match the node's labels (upstream builds a node of labels only,
    so a metadata.name field term matches no name)."""
    affinity = _spec(volume).get("nodeAffinity") or {}
    required = affinity.get("required") if isinstance(affinity, Mapping) else None
    if required is None:
        return True
    node = {"metadata": {"labels": dict(node_labels)}}
    return any(nodeaffinity.term_matches(t, node) for t in required.get("nodeSelectorTerms") or [])


def topology_matches(storage_class: Obj, node_labels: Mapping[str, str]) -> bool:
    """MatchTopologySelectorTerms on the class's allowedTopologies: none admits every node; a
    term without expressions admits none; a term admits a node that has every key with one of
    its values."""
    terms = storage_class.get("allowedTopologies") or []
    if not terms:
        return True
    for term in terms:
        expressions = term.get("matchLabelExpressions") or []
        if not expressions:
            continue
        if all(
            e.get("key") in node_labels
            and node_labels[e.get("key")] in [str(v) for v in e.get("values") or []]
            for e in expressions
        ):
            return True
    return False


def volume_bound_to_claim(volume: Obj, claim: Obj) -> bool:
    ref = _spec(volume).get("claimRef")
    if not ref:
        return False
    meta = _meta(claim)
    if ref.get("name") != meta.get("name") or ref.get("namespace") != meta.get("namespace"):
        return False
    return not ref.get("uid") or ref.get("uid") == meta.get("uid")


def find_matching_volume(
    claim: Obj, volumes: Sequence[Obj], node_labels: Mapping[str, str], excluded: set[str]
) -> Obj | None:
    """FindMatchingVolume with delayBinding and a node: a PV pre-bound to this claim if the
    node suits it, else the smallest Available PV of the claim's class that is big enough, of
    its volume mode and attributes class, matches its selector, suits the node and offers every
    access mode the claim asks for."""
    requested = requested_storage(claim)
    wanted_class = claim_class(claim)
    claim_spec = _spec(claim)
    selector = (
        labels.selector(claim_spec["selector"], "spec.selector")
        if claim_spec.get("selector") is not None
        else None
    )
    smallest: Obj | None = None
    smallest_size = Decimal(0)
    for volume in volumes:
        name = name_of(volume)
        spec = _spec(volume)
        if name in excluded:
            continue
        if spec.get("claimRef") and not volume_bound_to_claim(volume, claim):
            continue
        size = volume_capacity(volume)
        if size < requested:
            continue
        if (claim_spec.get("volumeMode") or "Filesystem") != (
            spec.get("volumeMode") or "Filesystem"
        ):
            continue
        if (claim_spec.get("volumeAttributesClassName") or "") != (
            spec.get("volumeAttributesClassName") or ""
        ):
            continue
        if _meta(volume).get("deletionTimestamp"):
            continue
        affinity_ok = node_affinity_matches(volume, node_labels)
        if volume_bound_to_claim(volume, claim):
            return volume if affinity_ok else None
        if (volume.get("status") or {}).get("phase") != "Available":
            continue
        if selector is not None and not selector.matches(labels.labels_of(volume)):
            continue
        if volume_class(volume) != wanted_class or not affinity_ok:
            continue
        offered = set(spec.get("accessModes") or [])
        if not set(claim_spec.get("accessModes") or []) <= offered:
            continue
        if smallest is None or size < smallest_size:
            smallest, smallest_size = volume, size
    return smallest


def bind_volume_to_claim(volume: Obj, claim: Obj) -> tuple[dict[str, Any], bool]:
    """GetBindVolumeToClaim: the PV with a claimRef to this claim (and bound-by-controller when
    the scheduler made the match); whether anything changed."""
    meta = _meta(claim)
    new: dict[str, Any] = {**volume, "metadata": dict(_meta(volume)), "spec": dict(_spec(volume))}
    dirty = False
    already = volume_bound_to_claim(volume, claim)
    ref = _spec(volume).get("claimRef") or {}
    if (
        ref.get("name") != meta.get("name")
        or ref.get("namespace") != meta.get("namespace")
        or ref.get("uid") != meta.get("uid")
    ):
        new["spec"]["claimRef"] = {
            "kind": "PersistentVolumeClaim",
            "apiVersion": "v1",
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        dirty = True
    annotations = dict(_annotations(volume))
    if not already and ANN_BOUND_BY_CONTROLLER not in annotations:
        annotations[ANN_BOUND_BY_CONTROLLER] = "yes"
        new["metadata"]["annotations"] = annotations
        dirty = True
    return new, dirty


def with_selected_node(claim: Obj, node_name: str) -> dict[str, Any]:
    annotations = {**_annotations(claim), ANN_SELECTED_NODE: node_name}
    return {**claim, "metadata": {**_meta(claim), "annotations": annotations}}


# --- the pure decisions ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PodClaims:
    """GetPodVolumeClaims: the pod's claims, sorted by what the scheduler has to do."""

    bound: tuple[Obj, ...] = ()
    delay_binding: tuple[Obj, ...] = ()
    immediate: tuple[Obj, ...] = ()


@dataclasses.dataclass
class PodVolumes:
    """What one node needs: PVs to bind to claims (static), claims to provision (dynamic)."""

    static: list[tuple[Obj, Obj]] = dataclasses.field(default_factory=list)
    provision: list[Obj] = dataclasses.field(default_factory=list)


def pod_claim_names(pod: Pod) -> list[tuple[str, str, bool]]:
    """(volume name, claim name, ephemeral) for each volume backed by a claim."""
    out = []
    pod_name = name_of(pod)
    for volume in _spec(pod).get("volumes") or []:
        if not isinstance(volume, Mapping):
            continue
        source = volume.get("persistentVolumeClaim")
        if isinstance(source, Mapping):
            out.append((str(volume.get("name")), str(source.get("claimName") or ""), False))
        elif volume.get("ephemeral") is not None:
            out.append((str(volume.get("name")), f"{pod_name}-{volume.get('name')}", True))
    return out


def _owned_by(claim: Obj, pod: Pod) -> bool:
    uid = _meta(pod).get("uid")
    return any(
        ref.get("controller") and ref.get("uid") == uid
        for ref in _meta(claim).get("ownerReferences") or []
    )


def pod_claims(pod: Pod, volumes: VolumeState) -> PodClaims | Status:
    """The pod's claims by kind, or the UnschedulableAndUnresolvable/Error status upstream's
    PreFilter returns for them."""
    namespace = labels.namespace_of(pod)
    bound, delay, immediate = [], [], []
    for _, claim_name, ephemeral in pod_claim_names(pod):
        claim = volumes.claim(namespace, claim_name)
        if claim is None:
            if ephemeral:
                return status.unresolvable(
                    "waiting for ephemeral volume controller to create the "
                    f'persistentvolumeclaim "{claim_name}"'
                )
            return status.unresolvable(f'persistentvolumeclaim "{claim_name}" not found')
        if (claim.get("status") or {}).get("phase") == "Lost":
            return status.unresolvable(
                f'persistentvolumeclaim "{claim_name}" bound to non-existent persistentvolume '
                f'"{_spec(claim).get("volumeName") or ""}"'
            )
        if _meta(claim).get("deletionTimestamp"):
            return status.unresolvable(f'persistentvolumeclaim "{claim_name}" is being deleted')
        if ephemeral and not _owned_by(claim, pod):
            return status.unresolvable(
                f"PVC {namespace}/{claim_name} was not created for pod "
                f"{namespace}/{name_of(pod)} (pod is not owner)"
            )
        if fully_bound(claim):
            bound.append(claim)
            continue
        class_name = claim_class(claim)
        storage_class = volumes.storage_class(class_name) if class_name else None
        delay_mode = False
        if storage_class is not None:
            mode = storage_class.get("volumeBindingMode")
            if not mode:
                return status.error(f'VolumeBindingMode not set for StorageClass "{class_name}"')
            delay_mode = mode == "WaitForFirstConsumer"
        if delay_mode and not _spec(claim).get("volumeName"):
            delay.append(claim)
        else:  # Immediate, or pre-bound: the PV controller's job, not ours
            immediate.append(claim)
    return PodClaims(tuple(bound), tuple(delay), tuple(immediate))


def find_pod_volumes(
    claims: PodClaims, node: Obj, volumes: VolumeState
) -> tuple[PodVolumes, list[str]]:
    """FindPodVolumes for one node: what it would take to place the pod's volumes there, and
    the conflict reasons (none: the node suits every claim). Raises InvalidObject for a claim
    whose class cannot be found (upstream's Error)."""
    node_labels = labels.labels_of(node)
    node_name = name_of(node)
    found = PodVolumes()
    bound_ok = unbound_ok = pvs_found = True

    def reasons() -> list[str]:
        out = [] if bound_ok else [REASON_NODE_CONFLICT]
        out += [] if unbound_ok else [REASON_BIND_CONFLICT]
        return out + ([] if pvs_found else [REASON_PV_NOT_EXIST])

    for claim in claims.bound:  # checkBoundClaims: stops at the first mismatch
        volume = volumes.volume(str(_spec(claim).get("volumeName")))
        if volume is None:
            pvs_found = False
            break
        if not node_affinity_matches(volume, node_labels):
            bound_ok = False
            break
    if not claims.delay_binding:
        return found, reasons()
    to_match, to_provision = [], []
    for claim in claims.delay_binding:
        selected = _annotations(claim).get(ANN_SELECTED_NODE)
        if selected is not None:
            if selected != node_name:  # provisioning already started for another node
                unbound_ok = False
                return found, reasons()
            to_provision.append(claim)
        else:
            to_match.append(claim)
    if to_match:
        chosen: set[str] = set()
        for claim in sorted(to_match, key=requested_storage):  # the smallest claims first
            class_volumes = [
                v for v in volumes.volumes.values() if volume_class(v) == claim_class(claim)
            ]
            volume = find_matching_volume(claim, class_volumes, node_labels, chosen)
            if volume is None:
                unbound_ok = False
                to_provision.append(claim)
                continue
            chosen.add(name_of(volume))
            found.static.append((volume, claim))
    if to_provision:
        # checkVolumeProvisions: its verdict replaces the matching's (a claim without a PV may
        # still be provisioned).
        unbound_ok = True
        for claim in to_provision:
            class_name = claim_class(claim)
            if not class_name:
                raise InvalidObject(f'no class for claim "{key_of_claim(claim)}"')
            storage_class = volumes.storage_class(class_name)
            if storage_class is None:
                raise InvalidObject(f'failed to find storage class "{class_name}"')
            provisioner = str(storage_class.get("provisioner") or "")
            if not provisioner or provisioner == NO_PROVISIONER:
                unbound_ok = False
                break
            if not topology_matches(storage_class, node_labels):
                unbound_ok = False
                break
            found.provision.append(claim)
        if not unbound_ok:
            found.provision = []
    return found, reasons()


# --- the plugin ------------------------------------------------------------------------------


@dataclasses.dataclass
class _State:
    claims: PodClaims
    by_node: dict[str, PodVolumes] = dataclasses.field(default_factory=dict)
    # Reserve's outcome: nothing to bind, or the assumed objects PreBind writes.
    all_bound: bool = False
    assumed: PodVolumes | None = None

    def clone(self) -> _State:
        return self  # as upstream's stateData: Filter results are shared by every copy


class VolumeBinding:
    name = NAME

    def __init__(
        self,
        args: Args,
        *,
        clock: Callable[[], float] = time.monotonic,
        poll_interval_s: float = 1.0,
    ) -> None:
        self.bind_timeout_s = float(args.bindTimeoutSeconds)
        self.clock, self.poll_interval_s = clock, poll_interval_s
        self.cache: VolumeCache | None = None
        self.api: VolumeAPI | None = None

    def set_volumes(self, cache: VolumeCache, api: VolumeAPI | None) -> None:
        self.cache, self.api = cache, api

    def pre_filter(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status | None:
        if state.snapshot is None or not pod_claim_names(pod):
            state.write(STATE_KEY, _State(PodClaims()))
            return status.SKIP
        claims = pod_claims(pod, state.snapshot.volumes)
        if isinstance(claims, Status):
            return claims
        if claims.immediate:
            return status.unresolvable(REASON_UNBOUND_IMMEDIATE)
        state.write(STATE_KEY, _State(claims))
        return None

    def filter(self, state: CycleState, pod: Pod, node: NodeInfo) -> Status | None:
        data = state.read(STATE_KEY, _State)
        assert state.snapshot is not None  # PreFilter skipped the plugin otherwise
        found, reasons = find_pod_volumes(data.claims, node.node, state.snapshot.volumes)
        if reasons:
            return status.unresolvable(*reasons)
        data.by_node[node.name] = found
        return None

    def reserve(self, state: CycleState, pod: Pod, node_name: str) -> Status | None:
        data = state.get(STATE_KEY, _State)
        found = data.by_node.get(node_name) if data is not None else None
        if data is None or found is None or not (found.static or found.provision):
            if data is not None:
                data.all_bound = True
            return None
        if self.cache is None:
            return status.error("no volume cache: this scheduler cannot bind volumes here")
        assumed = PodVolumes()
        for volume, claim in found.static:
            new, dirty = bind_volume_to_claim(volume, claim)
            if dirty:
                self.cache.assume_volume(new)
            assumed.static.append((new, claim))
        for claim in found.provision:
            annotated = with_selected_node(claim, node_name)
            self.cache.assume_claim(annotated)
            assumed.provision.append(annotated)
        data.assumed, data.all_bound = assumed, False
        return None

    def unreserve(self, state: CycleState, pod: Pod, node_name: str) -> None:
        data = state.get(STATE_KEY, _State)
        if data is None or data.assumed is None or self.cache is None:
            return
        self._restore(data.assumed.static, data.assumed.provision)
        data.assumed = None

    def _restore(self, static: Sequence[tuple[Obj, Obj]], provision: Sequence[Obj]) -> None:
        assert self.cache is not None
        for volume, _ in static:
            self.cache.restore_volume(name_of(volume))
        for claim in provision:
            self.cache.restore_claim(key_of_claim(claim))

    def pre_bind(self, state: CycleState, pod: Pod, node_name: str) -> Status | None:
        data = state.get(STATE_KEY, _State)
        if data is None or data.all_bound or data.assumed is None:
            return None
        if self.cache is None or self.api is None:
            return status.error("no volume API: this scheduler cannot bind volumes here")
        static, provision = list(data.assumed.static), list(data.assumed.provision)
        # bindAPIUpdate: the PVs first (the PV controller completes the claims), then the
        # claims (external-provisioner reads selected-node); what is not written is restored.
        done_static = done_provision = 0
        try:
            for i, (volume, claim) in enumerate(static):
                static[i] = (self.api.update_volume(volume), claim)
                done_static += 1
            for i, claim in enumerate(provision):
                provision[i] = self.api.update_claim(claim)
                done_provision += 1
        except VolumeAPIError as exc:
            self._restore(
                data.assumed.static[done_static:], data.assumed.provision[done_provision:]
            )
            return status.error(f"binding volumes: {exc}")
        deadline = self.clock() + self.bind_timeout_s
        while True:
            outcome = check_bindings(self.cache, node_name, static, provision)
            if isinstance(outcome, str):
                return status.error(f"binding volumes: {outcome}")
            if outcome:
                return None
            left = deadline - self.clock()
            if left <= 0:
                waiting = ", ".join(
                    f'"{key_of_claim(c)}"' for c in [c for _, c in static] + provision
                )
                return status.error(
                    f"binding volumes: timed out after {self.bind_timeout_s:g}s waiting for "
                    f"PersistentVolumeClaims {waiting} to be bound"
                )
            self.cache.wait_volume_event(min(self.poll_interval_s, left))


def check_bindings(
    cache: VolumeCache,
    node_name: str,
    static: Sequence[tuple[Obj, Obj]],
    provision: Sequence[Obj],
) -> bool | str:
    """checkBindings on the informers' copies: True once every claim is fully bound, False to
    keep waiting, or why binding failed (the pod is retried; a provisioner that gave up removes
    selected-node)."""
    node = cache.api_node(node_name)
    if node is None:
        return f'failed to get node "{node_name}"'
    node_labels = labels.labels_of(node)
    for written, claim in static:
        volume = cache.api_volume(name_of(written))
        current = cache.api_claim(key_of_claim(claim))
        if volume is None:
            return f'failed to check binding: persistentvolume "{name_of(written)}" not found'
        if current is None:
            return (
                f'failed to check binding: persistentvolumeclaim "{key_of_claim(claim)}" not found'
            )
        if resource_version(written) > resource_version(volume):
            return False  # our write has not reached the informer yet
        if not node_affinity_matches(volume, node_labels):
            return f'pv "{name_of(volume)}" node affinity doesn\'t match node "{node_name}"'
        ref = _spec(volume).get("claimRef") or {}
        if not ref.get("uid"):
            return f'ClaimRef got reset for pv "{name_of(volume)}"'
        if not fully_bound(current):
            return False
    for written in provision:
        current = cache.api_claim(key_of_claim(written))
        name = name_of(written)
        if current is None:
            return f'failed to check provisioning pvc: persistentvolumeclaim "{name}" not found'
        if resource_version(written) > resource_version(current):
            return False
        if _annotations(current).get(ANN_SELECTED_NODE) != node_name:
            return f'provisioning failed for PVC "{name}"'
        volume_name = _spec(current).get("volumeName")
        if volume_name:
            volume = cache.api_volume(str(volume_name))
            if volume is None:
                return False  # the PV may not have reached the informer yet
            if not node_affinity_matches(volume, node_labels):
                return f'pv "{name_of(volume)}" node affinity doesn\'t match node "{node_name}"'
        if not fully_bound(current):
            return False
    return True


def new(args: Args) -> VolumeBinding:
    return VolumeBinding(args)


_filter: type[interfaces.FilterPlugin] = VolumeBinding
_reserve: type[interfaces.ReservePlugin] = VolumeBinding
_pre_bind: type[interfaces.PreBindPlugin] = VolumeBinding
_needs: type[NeedsVolumes] = VolumeBinding
