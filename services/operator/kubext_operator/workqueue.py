"""An asyncio work queue with client-go's semantics: a key is queued at most once, never handed
to two workers at once, re-queued if it changed while being processed, and retried with
per-key exponential backoff.

Two lanes, each first in first out: keys added ``soon`` are handed out before the others. The
controller queues an owner soon when its Deployment's rollout completed: during a burst of new
objects the queue holds hundreds of first reconciles (each waits for its children's creation,
the Service's being the slowest), and a WebApp whose Deployment has just become ready would
otherwise wait behind all of them for a status write of one round trip. A key waiting in the
later lane that is added soon moves up (its old place is skipped when reached)."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from kubext_operator import metrics

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):
    """The queue was shut down; workers stop."""


class WorkQueue(Generic[K]):
    def __init__(
        self,
        name: str,
        *,
        base_delay: float = 0.05,
        max_delay: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._soon: collections.deque[K] = collections.deque()
        self._queue: collections.deque[K] = collections.deque()
        self._in_soon: set[K] = set()
        self._waiting = 0  # keys in a lane (a key moved up leaves a stale place behind)
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._added_at: dict[K, float] = {}
        self._failures: collections.Counter[K] = collections.Counter()
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._nonempty = asyncio.Event()
        self._base, self._max, self._clock = base_delay, max_delay, clock
        self._shut = False

    def __len__(self) -> int:
        return self._waiting

    def add(self, key: K, *, soon: bool = False) -> None:
        """Queue ``key`` unless it is already waiting; a key being processed is queued after.
        ``soon``: in the first lane (a key already waiting in the other one moves up)."""
        if self._shut:
            return
        if key in self._dirty:
            if soon and key not in self._in_soon and key not in self._processing:
                self._in_soon.add(key)
                self._soon.append(key)  # its place in the later lane is now stale
            elif soon and key in self._processing:
                self._in_soon.add(key)  # done() puts it in the first lane
            return
        metrics.QUEUE_ADDS.labels(self.name).inc()
        self._dirty.add(key)
        self._added_at.setdefault(key, self._clock())
        if soon:
            self._in_soon.add(key)
        if key in self._processing:
            return
        self._enqueue(key)

    def _enqueue(self, key: K) -> None:
        (self._soon if key in self._in_soon else self._queue).append(key)
        self._waiting += 1
        metrics.QUEUE_DEPTH.labels(self.name).set(self._waiting)
        self._nonempty.set()

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` in ``delay`` seconds; an earlier pending wake-up for it wins."""
        if delay <= 0:
            self.add(key)
            return
        due = self._clock() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= due:
                return
            pending[1].cancel()
        handle = asyncio.get_running_loop().call_later(delay, self._fire, key)
        self._timers[key] = (due, handle)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: K) -> float:
        """Retry ``key`` after base * 2^failures (capped); returns the delay chosen."""
        failures = self._failures[key]
        self._failures[key] += 1
        metrics.QUEUE_RETRIES.labels(self.name).inc()
        delay = min(self._max, self._base * (2**failures))
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """``key`` succeeded: its next failure starts from the base delay again."""
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures[key]

    def _pop(self) -> K | None:
        """The next waiting key, soon lane first; None when both lanes are empty."""
        if self._soon:  # never stale: a key in it is handed out from here
            key = self._soon.popleft()
            self._in_soon.discard(key)
            return key
        while self._queue:
            key = self._queue.popleft()
            if key in self._dirty and key not in self._processing and key not in self._in_soon:
                return key
            # else a stale place: the key moved up to the soon lane (and may be handed out)
        return None

    async def get(self) -> K:
        while True:
            key = self._pop()
            if key is not None:
                break
            if self._shut:
                raise ShutDown
            self._nonempty.clear()
            await self._nonempty.wait()
        self._waiting -= 1
        metrics.QUEUE_DEPTH.labels(self.name).set(self._waiting)
        added = self._added_at.pop(key, None)
        if added is not None:
            metrics.QUEUE_LATENCY.labels(self.name).observe(max(0.0, self._clock() - added))
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        """Processing of ``key`` ended; if it was added meanwhile, it goes back in the queue."""
        self._processing.discard(key)
        if key in self._dirty:
            self._enqueue(key)

    async def shutdown(self) -> None:
        self._shut = True
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._nonempty.set()
