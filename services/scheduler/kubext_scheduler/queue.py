"""The scheduling queue, as kube-scheduler's PriorityQueue: active, backoff and unschedulable.

Pure and thread-safe, with an injected clock. ``pop`` hands out the first pod by the
profile's QueueSort ``less``. A pod that did not fit goes to *unschedulable* until a cluster
event that could make it fit (a node added or changed, a bound pod gone) moves it back: to
*backoff* while its backoff (initial * 2^(attempts-1), capped at max) has not passed, else to
*active*. A pod that failed for an internal reason (a bind error) goes straight to backoff.
Unschedulable pods are flushed back after ``max_unschedulable_s`` even without an event.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubext_scheduler.framework.interfaces import QueuedPodInfo
from kubext_scheduler.framework.nodeinfo import pod_key

Obj = Mapping[str, Any]
Less = Callable[[QueuedPodInfo, QueuedPodInfo], bool]
# kube-scheduler's podMaxInUnschedulablePodsDuration.
MAX_UNSCHEDULABLE_S = 300.0


@dataclasses.dataclass
class _Entry:
    info: QueuedPodInfo
    # When the last attempt failed (None: never tried).
    failed_at: float | None = None
    # The heap item that stands for it while active (any older one is stale).
    heap_seq: int = -1


class _HeapItem:
    """An active pod in the heap, ordered by QueueSort's ``less``, then by when it became
    active (as the first of equals in arrival order). Stale once its pod left active or
    changed (lazy deletion: ``pop`` drops stale items)."""

    __slots__ = ("entry", "info", "key", "less", "seq")

    def __init__(self, key: str, entry: _Entry, seq: int, less: Less) -> None:
        self.key, self.entry, self.info, self.seq, self.less = key, entry, entry.info, seq, less

    def __lt__(self, other: _HeapItem) -> bool:
        if self.less(self.info, other.info):
            return True
        return not self.less(other.info, self.info) and self.seq < other.seq


class SchedulingQueue:
    def __init__(
        self,
        less: Less,
        *,
        initial_backoff_s: float = 1.0,
        max_backoff_s: float = 10.0,
        max_unschedulable_s: float = MAX_UNSCHEDULABLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._less = less
        self.initial_backoff_s, self.max_backoff_s = initial_backoff_s, max_backoff_s
        self.max_unschedulable_s = max_unschedulable_s
        self._clock = clock
        self._cond = threading.Condition()
        self._active: dict[str, _Entry] = {}
        # The active pods as a heap (kube-scheduler's activeQ), with stale items left in it.
        self._heap: list[_HeapItem] = []
        self._seq = itertools.count()
        self._backoff: dict[str, _Entry] = {}
        self._unschedulable: dict[str, _Entry] = {}
        # Popped and being scheduled: an update meanwhile must not queue it a second time.
        self._in_flight: dict[str, QueuedPodInfo] = {}
        # A cluster event arrived while a pod was in flight: retry it soon if it fails.
        self._moved_during_flight: set[str] = set()
        self._closed = False

    # --- what the informers call ------------------------------------------------------------

    def add(self, pod: Obj) -> None:
        """A new pending pod, or a newer version of one (its place and attempts are kept)."""
        key = pod_key(pod)
        with self._cond:
            if key in self._in_flight:
                return
            for where in (self._active, self._backoff, self._unschedulable):
                if key in where:
                    entry = where.pop(key)
                    entry.info = dataclasses.replace(entry.info, pod=pod)
                    # An updated pod may fit now (kube-scheduler re-queues on pod updates).
                    self._place(key, entry, self._clock())
                    return
            self._activate(key, _Entry(QueuedPodInfo(pod=pod, timestamp=self._clock())))
            self._cond.notify_all()

    def delete(self, pod: Obj) -> None:
        key = pod_key(pod)
        with self._cond:
            for where in (self._active, self._backoff, self._unschedulable):
                where.pop(key, None)
            self._in_flight.pop(key, None)
            self._moved_during_flight.discard(key)

    def move_all(self) -> None:
        """A cluster event that could make unschedulable pods fit: back to backoff/active."""
        with self._cond:
            now = self._clock()
            for key in list(self._unschedulable):
                self._place(key, self._unschedulable.pop(key), now)
            self._moved_during_flight.update(self._in_flight)

    # --- what the scheduling loop calls -----------------------------------------------------

    def pop(self, timeout: float | None = None) -> QueuedPodInfo | None:
        """The first active pod (attempts counted); None after ``timeout`` or once closed."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                self._flush(self._clock())
                if self._closed:
                    return None
                if self._active:
                    key = self._pop_first()
                    entry = self._active.pop(key)
                    info = dataclasses.replace(entry.info, attempts=entry.info.attempts + 1)
                    self._in_flight[key] = info
                    return info
                wait = self._next_wakeup()
                if deadline is not None:
                    left = deadline - self._clock()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def done(self, info: QueuedPodInfo) -> None:
        """The pod was bound (or is gone): forget it."""
        with self._cond:
            key = pod_key(info.pod)
            self._in_flight.pop(key, None)
            self._moved_during_flight.discard(key)

    def unschedulable(self, info: QueuedPodInfo) -> None:
        """It fit nowhere: wait for a cluster event (or a retry soon if one came meanwhile)."""
        with self._cond:
            key = pod_key(info.pod)
            if self._in_flight.pop(key, None) is None:
                return  # deleted while in flight
            entry = _Entry(info, failed_at=self._clock())
            if key in self._moved_during_flight:
                self._moved_during_flight.discard(key)
                self._place(key, entry, self._clock())
            else:
                self._unschedulable[key] = entry

    def retry(self, info: QueuedPodInfo) -> None:
        """An internal failure (a bind error): retry after the backoff."""
        with self._cond:
            key = pod_key(info.pod)
            self._moved_during_flight.discard(key)
            if self._in_flight.pop(key, None) is None:
                return  # deleted while in flight
            self._backoff[key] = _Entry(info, failed_at=self._clock())
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def lengths(self) -> dict[str, int]:
        """Pods per queue, as scheduler_pending_pods{queue} names them."""
        with self._cond:
            return {
                "active": len(self._active),
                "backoff": len(self._backoff),
                "unschedulable": len(self._unschedulable),
            }

    # --- internals --------------------------------------------------------------------------

    def backoff_s(self, attempts: int) -> float:
        """kube-scheduler's calculateBackoffDuration: initial, doubled per attempt, capped."""
        duration = self.initial_backoff_s
        for _ in range(1, max(attempts, 1)):
            duration *= 2
            if duration >= self.max_backoff_s:
                return self.max_backoff_s
        return min(duration, self.max_backoff_s)

    def _backoff_until(self, entry: _Entry) -> float:
        if entry.failed_at is None:
            return float("-inf")
        return entry.failed_at + self.backoff_s(entry.info.attempts)

    def _place(self, key: str, entry: _Entry, now: float) -> None:
        if self._backoff_until(entry) > now:
            self._backoff[key] = entry
        else:
            self._activate(key, entry)
        self._cond.notify_all()

    def _flush(self, now: float) -> None:
        for key in [k for k, e in self._backoff.items() if self._backoff_until(e) <= now]:
            self._activate(key, self._backoff.pop(key))
        for key in [
            k
            for k, e in self._unschedulable.items()
            if e.failed_at is not None and now - e.failed_at >= self.max_unschedulable_s
        ]:
            self._place(key, self._unschedulable.pop(key), now)

    def _next_wakeup(self) -> float | None:
        now = self._clock()
        times = [self._backoff_until(e) - now for e in self._backoff.values()]
        times += [
            e.failed_at + self.max_unschedulable_s - now
            for e in self._unschedulable.values()
            if e.failed_at is not None
        ]
        return max(min(times), 0.0) if times else None

    def _activate(self, key: str, entry: _Entry) -> None:
        self._active.pop(key, None)  # a re-activated pod counts as arriving now
        self._active[key] = entry
        entry.heap_seq = next(self._seq)
        heapq.heappush(self._heap, _HeapItem(key, entry, entry.heap_seq, self._less))
        if len(self._heap) > 2 * len(self._active) + 64:  # mostly stale: rebuild
            self._heap = [i for i in self._heap if self._is_live(i)]
            heapq.heapify(self._heap)

    def _is_live(self, item: _HeapItem) -> bool:
        entry = item.entry
        return (
            self._active.get(item.key) is entry
            and entry.heap_seq == item.seq
            and entry.info is item.info
        )

    def _pop_first(self) -> str:
        """The first active pod's key, by QueueSort (O(log n)); it stays in ``_active``."""
        while True:
            item = heapq.heappop(self._heap)
            if self._is_live(item):
                return item.key
