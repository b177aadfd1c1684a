"""Thin kopf handlers: project each watched object into the store, then queue its owner.

Index handlers feed the store: kopf runs them for every object before any regular handler,
and holds regular handlers back until every watched kind is fully listed, so reconciling never
starts from a half-filled cache. The event handlers then only queue keys.
"""

from __future__ import annotations

from typing import Any

import kopf

from kubext_operator import controller as ctl
from kubext_operator import views
from kubext_operator.planning import common

OWNERS = {
    "WebApp": ("example.com", "v1", "webapps"),
    "Database": ("db.example.com", "v1", "databases"),
}
CHILDREN = {
    "Deployment": ("apps", "v1", "deployments"),
    "StatefulSet": ("apps", "v1", "statefulsets"),
    "CronJob": ("batch", "v1", "cronjobs"),
    "Service": ("", "v1", "services"),
    "Secret": ("", "v1", "secrets"),
    "PersistentVolumeClaim": ("", "v1", "persistentvolumeclaims"),
    "Pod": ("", "v1", "pods"),
}
MANAGED = f"{common.LABEL_MANAGED_BY}={common.MANAGED_BY}"
SERVER_SIDE_SELECTORS = {
    "Pod": f"{MANAGED},{common.LABEL_NAME}=database",
}
"""Label selectors the API server applies to the children's watches (less traffic, less memory)."""


def selector_for(kind: str) -> str:
    return SERVER_SIDE_SELECTORS.get(kind, MANAGED)


def register(registry: kopf.OperatorRegistry, controller: ctl.Controller) -> None:
    for kind, (group, version, plural) in OWNERS.items():
        _register_owner(registry, controller, kind, group, version, plural)
    for kind, (group, version, plural) in CHILDREN.items():
        _register_child(registry, controller, kind, group, version, plural)


def _register_owner(
    registry: kopf.OperatorRegistry,
    controller: ctl.Controller,
    kind: str,
    group: str,
    version: str,
    plural: str,
) -> None:
    resource = {"group": group, "version": version, "plural": plural, "registry": registry}

    @kopf.index(**resource, id=f"{plural}-store")
    async def seen(body: kopf.Body, **_: Any) -> None:
        controller.owner_seen(views.owner_view(kind, body))

    @kopf.on.event(**resource, id=f"{plural}-queue")
    async def queue(type: str | None, name: str, namespace: str, **_: Any) -> None:
        controller.owner_event(kind, namespace, name, deleted=type == "DELETED")


def _register_child(
    registry: kopf.OperatorRegistry,
    controller: ctl.Controller,
    kind: str,
    group: str,
    version: str,
    plural: str,
) -> None:
    resource = {"group": group, "version": version, "plural": plural, "registry": registry}

    @kopf.index(**resource, id=f"{plural}-store")
    async def seen(body: kopf.Body, **_: Any) -> None:
        controller.child_seen(views.child_view(kind, body))

    @kopf.on.event(**resource, id=f"{plural}-queue")
    async def queue(type: str | None, name: str, namespace: str, **_: Any) -> None:
        controller.child_event(kind, namespace, name, deleted=type == "DELETED")


def configure(
    settings: kopf.OperatorSettings,
    *,
    server_timeout: int,
    client_timeout: int,
    connect_timeout: int,
) -> None:
    """kopf settings: watch timeouts (a stream without them can stall silently), server-side
    selectors for the children, no kopf state in the objects, quiet event posting."""
    settings.watching.server_timeout = server_timeout
    settings.watching.client_timeout = client_timeout
    settings.watching.connect_timeout = connect_timeout
    for kind, (group, version, plural) in CHILDREN.items():
        settings.watching.label_selectors[group, version, plural] = selector_for(kind)
    # Only warnings about objects become Kubernetes Events; the reconciler posts its own.
    settings.posting.level = 30
    # Leader election is by Lease (leader.py): kopf's peering is off.
    settings.peering.standalone = True
    # kopf's handlers here are event watchers only: they store nothing in the objects.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kopf.kubext")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="kopf.kubext")
