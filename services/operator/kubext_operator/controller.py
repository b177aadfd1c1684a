"""The work loop: keys from watch events go through a work queue to the reconciler's workers."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from kubext_operator import metrics, reconciler, store, views, workqueue

log = logging.getLogger("kubext_operator.controller")

CONTROLLERS = {"WebApp": "webapp", "Database": "database"}


class Controller:
    """Feeds the store from kopf, queues owner keys, runs ``workers`` reconcile loops."""

    def __init__(
        self, *, cache: store.Store, reconcile: reconciler.Reconciler, workers: int
    ) -> None:
        self.cache, self.reconciler, self.workers = cache, reconcile, workers
        self.queue: workqueue.WorkQueue[store.Key] = workqueue.WorkQueue("kubext-operator")
        self._tasks: list[asyncio.Task[None]] = []

    # -- fed by the kopf handlers (the custom resources) ---------------------------------------

    def owner_event(self, kind: str, body: Any, *, deleted: bool) -> None:
        view = views.owner_view(kind, body)
        if deleted:
            gone = self.cache.delete_owner(view.key)
            if gone is not None:
                self.reconciler.forget_owner(gone.uid)
            return
        self.cache.upsert_owner(view)
        self.queue.add(view.key)

    # -- fed by the children's reflectors ----------------------------------------------------

    def child_upsert(self, kind: str, body: dict[str, Any]) -> None:
        owner = self.cache.upsert_child(views.child_view(kind, body))
        if owner is not None and self.cache.owner(owner) is not None:
            # A rollout that completed goes in the queue's first lane: the owner's status write
            # (one round trip) must not wait behind a burst of new owners' first reconciles.
            # Other changes keep their turn: a WebApp whose rollout is slower than the settle
            # time would otherwise write Pending before Running (a write the queue's wait saves).
            self.queue.add(owner, soon=views.rolled_out(kind, body))

    def child_delete(self, kind: str, namespace: str, name: str) -> None:
        key = (kind, namespace, name)
        owner = self.cache.delete_child(key)
        self.reconciler.forget_child(key)
        if owner is not None and self.cache.owner(owner) is not None:
            self.queue.add(owner)

    # -- workers -----------------------------------------------------------------------------

    def start(self) -> None:
        for controller in CONTROLLERS.values():
            metrics.MAX_CONCURRENT.labels(controller).set(self.workers)
        for n in range(self.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"reconcile-worker-{n}"))

    async def stop(self) -> None:
        await self.queue.shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def resync(self, period: float) -> None:
        """Re-queue every owner each ``period`` seconds (a safety net; writes only on drift)."""
        while True:
            await asyncio.sleep(period)
            for key in self.cache.owner_keys():
                self.queue.add(key)

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except workqueue.ShutDown:
                return
            controller = CONTROLLERS.get(key[0], key[0])
            metrics.ACTIVE_WORKERS.labels(controller).inc()
            started = time.monotonic()
            try:
                result = await self.reconciler.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = self.queue.add_rate_limited(key)
                metrics.RECONCILE_ERRORS.labels(controller).inc()
                metrics.RECONCILE_TOTAL.labels(controller, "error").inc()
                conflict = getattr(exc, "conflict", False)
                log.log(
                    logging.INFO if conflict else logging.WARNING,
                    "reconcile failed; retrying",
                    extra={
                        "object": f"{key[1]}/{key[2]}",
                        "kind": key[0],
                        "error": str(exc),
                        "retry_in_s": round(delay, 3),
                    },
                    exc_info=not isinstance(exc, reconciler.kube.ApiError),
                )
            else:
                self.queue.forget(key)
                if result.requeue_after is not None:
                    self.queue.add_after(key, result.requeue_after)
                    metrics.RECONCILE_TOTAL.labels(controller, "requeue_after").inc()
                else:
                    metrics.RECONCILE_TOTAL.labels(controller, "success").inc()
            finally:
                elapsed = time.monotonic() - started
                metrics.RECONCILE_TIME.labels(controller).observe(elapsed)
                metrics.QUEUE_WORK.labels(self.queue.name).observe(elapsed)
                metrics.ACTIVE_WORKERS.labels(controller).dec()
                self.queue.done(key)
