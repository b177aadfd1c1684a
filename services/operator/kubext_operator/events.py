"""core/v1 Events, posted in the background like client-go's event broadcaster.

A reconcile records an Event and goes on: it never waits for the POST (one round trip less per
change while the API server is busy), and failing to record one never fails a reconcile. Like
the broadcaster, the backlog is bounded and the overflow dropped with a warning rather than
letting memory grow while the API server is unreachable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from kubext_operator import views
from kubext_operator.planning import common

log = logging.getLogger("kubext_operator.events")


class _Poster(Protocol):
    async def create(self, body: dict) -> dict: ...


class EventRecorder:
    def __init__(
        self,
        api: _Poster,
        *,
        identity: str,
        api_versions: dict[str, str],
        now: Callable[[], str],
        in_flight: int = 8,
        backlog: int = 1000,
    ) -> None:
        self.api, self.identity, self.api_versions, self.now = api, identity, api_versions, now
        self.backlog = backlog
        self._slots = asyncio.Semaphore(in_flight)
        self._pending: set[asyncio.Task[None]] = set()
        self.dropped = 0

    def record(self, view: views.OwnerView, type_: str, reason: str, message: str) -> None:
        """Queue an Event about ``view``; returns at once."""
        if len(self._pending) >= self.backlog:
            self.dropped += 1
            log.warning("event dropped: backlog full", extra={"reason": reason})
            return
        task = asyncio.get_running_loop().create_task(
            self._post(self.body(view, type_, reason, message))
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def body(self, view: views.OwnerView, type_: str, reason: str, message: str) -> dict:
        now = self.now()
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{view.name}.", "namespace": view.namespace},
            "involvedObject": {
                "apiVersion": self.api_versions[view.kind],
                "kind": view.kind,
                "name": view.name,
                "namespace": view.namespace,
                "uid": view.uid,
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": common.FIELD_MANAGER},
            "reportingComponent": common.FIELD_MANAGER,
            "reportingInstance": self.identity,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }

    async def _post(self, body: dict) -> None:
        async with self._slots:
            try:
                await self.api.create(body)
            except Exception as exc:  # refused or unreachable: logged, never a task error
                log.warning(
                    "event not recorded",
                    extra={"reason": body["reason"], "error": f"{type(exc).__name__}: {exc}"},
                )

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the queued Events (on shutdown, so the last ones are not lost)."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)
