"""The volume objects one cycle sees (VolumeBinding's listers), and the ports to the volume side.

``VolumeState`` is a cycle's view of the PersistentVolumeClaims (by ``namespace/name``), the
PersistentVolumes and the StorageClasses (by name), with the scheduler's assumptions applied:
a PV it reserved for a claim already carries that claimRef, a claim it chose a node for already
carries the selected-node annotation (upstream's PV and PVC assume caches), so the next cycle
does not hand the same PV to another claim while the API writes are in flight.

The ports are how VolumeBinding's Reserve and PreBind reach beyond the cycle: ``VolumeCache``
(the informer caches with the assumptions; ``cache.ClusterCache``) and ``VolumeAPI`` (the PV/PVC
updates; ``cluster.KubeVolumes``). Both are injected, so the plugin stays pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

Obj = Mapping[str, Any]


def claim_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def key_of_claim(claim: Obj) -> str:
    meta = claim.get("metadata") or {}
    return claim_key(str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def resource_version(obj: Obj) -> int:
    """metadata.resourceVersion as a number (0 when unset or not a number, as for objects built
    by hand), for upstream's "is the informer's copy at least as new" comparisons."""
    raw = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(str(raw))
    except ValueError:
        return 0


@dataclasses.dataclass(frozen=True)
class VolumeState:
    claims: Mapping[str, Obj] = dataclasses.field(default_factory=dict)
    volumes: Mapping[str, Obj] = dataclasses.field(default_factory=dict)
    classes: Mapping[str, Obj] = dataclasses.field(default_factory=dict)

    def claim(self, namespace: str, name: str) -> Obj | None:
        return self.claims.get(claim_key(namespace, name))

    def volume(self, name: str) -> Obj | None:
        return self.volumes.get(name)

    def storage_class(self, name: str) -> Obj | None:
        return self.classes.get(name)


class VolumeAPIError(Exception):
    """The API server refused a PV or PVC update (a conflict, a deleted object, ...)."""


class VolumeCache(Protocol):
    """The scheduler's PV/PVC caches: assume and restore (Reserve/Unreserve), and the API
    servers' copies as the informers last saw them (PreBind's wait reads those, never the
    assumed ones, as upstream's GetAPIObj)."""

    def assume_volume(self, volume: Obj) -> None: ...

    def restore_volume(self, name: str) -> None: ...

    def assume_claim(self, claim: Obj) -> None: ...

    def restore_claim(self, key: str) -> None: ...

    def api_volume(self, name: str) -> Obj | None: ...

    def api_claim(self, key: str) -> Obj | None: ...

    def api_node(self, name: str) -> Obj | None: ...

    def wait_volume_event(self, timeout: float) -> None:
        """Return after a PV or PVC event, or after ``timeout`` seconds."""


class VolumeAPI(Protocol):
    """PV and PVC updates (PUT); each returns the object as the API server stored it and raises
    VolumeAPIError when refused."""

    def update_volume(self, volume: Obj) -> Obj: ...

    def update_claim(self, claim: Obj) -> Obj: ...


@runtime_checkable
class NeedsVolumes(Protocol):
    """A plugin that binds volumes: the standalone scheduler hands it the ports once."""

    def set_volumes(self, cache: VolumeCache, api: VolumeAPI | None) -> None: ...
