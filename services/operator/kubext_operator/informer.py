"""List-then-watch caches for the children (client-go's reflector, in small).

kopf handles the custom resources; the children are watched here instead because kopf's
per-object machinery does not scale to thousands of Deployments and Services (its index
synchronisation wakes every object's worker on every listed object: quadratic at start-up)
and it cannot say when an initial listing is complete. A reflector lists in pages, projects
each object at once (bodies are never kept), then watches from the list's resourceVersion with
bookmarks and both a server-side and a client-side timeout, and relists on 410 Gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from kubext_operator import kube

log = logging.getLogger("kubext_operator.informer")

Upsert = Callable[[str, dict[str, Any]], None]
Delete = Callable[[str, str, str], None]
Known = Callable[[str, str | None], set[tuple[str, str]]]


class Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


class Reflector:
    def __init__(
        self,
        *,
        api: kube.Api,
        kind: str,
        namespace: str | None,
        selector: str,
        upsert: Upsert,
        delete: Delete,
        known: Known,
        server_timeout: int,
        client_timeout: int,
        page_size: int = 500,
    ) -> None:
        self.api, self.kind, self.namespace, self.selector = api, kind, namespace, selector
        self.upsert, self.delete, self.known = upsert, delete, known
        self.server_timeout, self.client_timeout = server_timeout, client_timeout
        self.page_size = page_size
        self.synced = asyncio.Event()

    @property
    def path(self) -> str:
        return kube.KINDS[self.kind].path(self.namespace)

    async def list(self) -> str:
        """List everything (in pages); forget what is gone. Returns the list's resourceVersion."""
        seen: set[tuple[str, str]] = set()
        token, version = "", ""
        while True:
            params = {"labelSelector": self.selector, "limit": str(self.page_size)}
            if token:
                params["continue"] = token
            page = await self.api.request("GET", self.path, params=params)
            for item in page.get("items") or ():
                meta = item.get("metadata") or {}
                seen.add((meta.get("namespace", ""), meta.get("name", "")))
                self.upsert(self.kind, item)
            token = (page.get("metadata") or {}).get("continue") or ""
            version = (page.get("metadata") or {}).get("resourceVersion") or version
            if not token:
                break
        for namespace, name in self.known(self.kind, self.namespace) - seen:
            self.delete(self.kind, namespace, name)
        return version

    async def watch(self, version: str) -> str:
        """Apply watch events until the server ends the stream; returns the last version."""
        params = {
            "watch": "1",
            "labelSelector": self.selector,
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self.server_timeout),
        }
        async for event in self.api.watch(self.path, params=params, timeout=self.client_timeout):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Gone(obj.get("message", "410 Gone"))
                raise kube.ApiError(int(obj.get("code") or 0), str(obj.get("reason")), str(obj))
            meta = obj.get("metadata") or {}
            version = meta.get("resourceVersion") or version
            if kind in ("ADDED", "MODIFIED"):
                self.upsert(self.kind, obj)
            elif kind == "DELETED":
                self.delete(self.kind, meta.get("namespace", ""), meta.get("name", ""))
        return version

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                version = await self.list()
                self.synced.set()
                backoff = 0.5
                while True:
                    version = await self.watch(version)
            except asyncio.CancelledError:
                raise
            except Gone:
                log.info("watch expired; relisting", extra={"kind": self.kind})
            except (kube.ApiError, aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
                log.warning(
                    "list/watch failed; retrying",
                    extra={"kind": self.kind, "error": str(exc), "retry_in_s": backoff},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
