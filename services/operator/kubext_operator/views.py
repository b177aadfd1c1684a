"""Small projections of watched objects: what reconciling needs, nothing more (memory is bounded).

The operator keeps one view per watched object instead of the body (a Deployment body with
managedFields is tens of kilobytes; its view is a few hundred bytes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kubext_operator.planning import common
from kubext_operator.planning import database as db_plan


@dataclasses.dataclass(frozen=True, slots=True)
class OwnerView:
    """A WebApp or Database as the reconciler sees it."""

    kind: str
    namespace: str
    name: str
    uid: str
    generation: int
    resource_version: str
    deleting: bool
    finalizers: tuple[str, ...]
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    created: str
    requests: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """The Database's backup/restore request annotations (the only annotations kept)."""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)


@dataclasses.dataclass(frozen=True, slots=True)
class ChildView:
    """A child the operator created: whose it is, what was applied, and the status facts it needs."""

    kind: str
    namespace: str
    name: str
    uid: str
    owner_kind: str | None
    owner_name: str | None
    owner_uid: str | None
    spec_hash: str | None
    generation: int
    facts: Mapping[str, Any]


def owner_view(kind: str, body: Mapping[str, Any]) -> OwnerView:
    """List items carry no ``kind``, so the caller (who knows what it watches) passes it."""
    meta = body.get("metadata") or {}
    return OwnerView(
        kind=kind,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name")),
        uid=str(meta.get("uid")),
        generation=int(meta.get("generation") or 1),
        resource_version=str(meta.get("resourceVersion", "")),
        deleting=bool(meta.get("deletionTimestamp")),
        finalizers=tuple(meta.get("finalizers") or ()),
        spec=dict(body.get("spec") or {}),
        status=dict(body.get("status") or {}),
        created=str(meta.get("creationTimestamp", "")),
        requests={
            k: str(v)
            for k, v in (meta.get("annotations") or {}).items()
            if k in db_plan.REQUEST_ANNOTATIONS
        },
    )


def _controller(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    for ref in meta.get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return {}


def _failure(conditions: list[Mapping[str, Any]]) -> str | None:
    """A Deployment that will not make progress by itself (deadline exceeded, quota, ...)."""
    for cond in conditions:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return str(cond.get("message") or "progress deadline exceeded")
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return str(cond.get("message") or "replica failure")
    return None


def _facts(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    status = body.get("status") or {}
    meta = body.get("metadata") or {}
    if kind in ("Deployment", "StatefulSet"):
        facts = {
            "replicas": int(status.get("replicas") or 0),
            "ready": int(status.get("readyReplicas") or 0),
            "updated": int(status.get("updatedReplicas") or 0),
            "generation_observed": int(status.get("observedGeneration") or 0)
            >= int(meta.get("generation") or 0),
        }
        if kind == "Deployment":
            facts["failure"] = _failure(status.get("conditions") or [])
        else:
            facts["revisions_match"] = status.get("currentRevision") == status.get("updateRevision")
        return facts
    if kind == "CronJob":
        return {
            "last_schedule": status.get("lastScheduleTime"),
            "last_success": status.get("lastSuccessfulTime"),
            "active": len(status.get("active") or ()),
        }
    if kind == "Job":
        finished = {
            c.get("type"): c for c in status.get("conditions") or () if c.get("status") == "True"
        }
        failed = finished.get("Failed")
        return {
            "succeeded": "Complete" in finished,
            "failed": str(failed.get("reason") or "Failed") if failed else None,
            "completed": status.get("completionTime"),
        }
    if kind == "Pod":
        labels = meta.get("labels") or {}
        return {"role": labels.get(db_plan.ROLE_LABEL)}
    return {}


def rolled_out(kind: str, body: Mapping[str, Any]) -> bool:
    """A Deployment or StatefulSet whose controller has seen its spec and has every wanted
    replica updated and ready: what its owner's status waits for."""
    if kind not in ("Deployment", "StatefulSet"):
        return False
    spec, status, meta = (
        body.get("spec") or {},
        body.get("status") or {},
        body.get("metadata") or {},
    )
    wanted = int(spec.get("replicas", 1) or 0)
    return (
        int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
        and int(status.get("readyReplicas") or 0) >= wanted
        and int(status.get("updatedReplicas") or 0) >= wanted
    )


def child_view(kind: str, body: Mapping[str, Any]) -> ChildView:
    meta = body.get("metadata") or {}
    ref = _controller(meta)
    annotations = meta.get("annotations") or {}
    if kind == "Pod":
        # Pods belong to a StatefulSet; the Database is named by the instance label instead.
        labels = meta.get("labels") or {}
        ref = {"kind": "Database", "name": labels.get(common.LABEL_INSTANCE), "uid": None}
    return ChildView(
        kind=kind,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name")),
        uid=str(meta.get("uid")),
        owner_kind=ref.get("kind"),
        owner_name=ref.get("name"),
        owner_uid=ref.get("uid"),
        spec_hash=annotations.get(common.ANNOTATION_SPEC_HASH),
        generation=int(meta.get("generation") or 0),
        facts=_facts(kind, body),
    )
