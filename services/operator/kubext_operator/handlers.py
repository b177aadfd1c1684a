"""Thin kopf handlers: each WebApp or Database event updates the store and queues the object.

kopf watches only the custom resources; the children are watched by ``informer`` reflectors.
No kopf state is stored in the objects: event handlers persist nothing, and no kopf finalizer
is added (the reconciler manages its own).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from kubext.crds import database as db_crd
from kubext.crds import webapp as wa_crd
from kubext_operator import controller as ctl

OWNERS = {crd.KIND: (crd.GROUP, crd.VERSION, crd.PLURAL) for crd in (wa_crd, db_crd)}
"""The custom resources kopf watches, at the version the operator reads (the CRDs' own)."""


def register(registry: kopf.OperatorRegistry, controller: ctl.Controller) -> None:
    for kind, (group, version, plural) in OWNERS.items():
        _register_owner(registry, controller, kind, group, version, plural)


def _register_owner(
    registry: kopf.OperatorRegistry,
    controller: ctl.Controller,
    kind: str,
    group: str,
    version: str,
    plural: str,
) -> None:
    @kopf.on.event(group=group, version=version, plural=plural, registry=registry, id=plural)
    async def queue(event: dict[str, Any], **_: Any) -> None:
        # The raw event, not kopf's Body view: the store keeps a small projection of it.
        controller.owner_event(kind, event["object"], deleted=event.get("type") == "DELETED")


def configure(
    settings: kopf.OperatorSettings,
    *,
    server_timeout: int,
    client_timeout: int,
    connect_timeout: int,
    list_page_size: int,
    object_workers: int,
) -> None:
    """kopf settings: watch timeouts (a stream without them can stall silently), paged initial
    listing, bounded per-object workers, quiet event posting, no peering (leader election is
    by Lease, see ``leader``)."""
    settings.watching.server_timeout = server_timeout
    settings.watching.client_timeout = client_timeout
    settings.watching.connect_timeout = connect_timeout
    settings.watching.chunk_size = list_page_size
    # kopf runs one worker per object with events pending; after a listing of thousands that
    # is thousands of tasks holding bodies at once. Bound them (and let idle ones go sooner).
    settings.queueing.worker_limit = object_workers
    settings.queueing.idle_timeout = 0.2  # a slot held by an idle worker is a slot lost
    # Only warnings about objects become Kubernetes Events; the reconciler posts its own.
    settings.posting.level = logging.WARNING
    settings.peering.standalone = True
