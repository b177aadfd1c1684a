"""Which replica schedules: leader election on a Lease, so two replicas never both bind.

The decisions are ``kubext.lease``'s (shared with the operator); this module runs them on a
thread with an injected clock and reaches the API server only through the ``LeasePort``
(``cluster.KubeLease``; an in-memory Lease in the tests). Each attempt (a get, then a create
or an update) may take only what is left of the renew deadline: every call gets that as its
timeout, and an attempt that returns late counts as failed, as client-go's context does.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from kubext import lease

log = logging.getLogger(__name__)
Obj = Mapping[str, Any]


class LeaseError(Exception):
    """A Lease call failed: timed out, refused, or lost a write race (409)."""


class LeasePort(Protocol):
    def get(self, *, timeout: float) -> Obj | None:
        """The Lease object, None when there is none; raises LeaseError."""

    def create(self, spec: Obj, *, timeout: float) -> None:
        """Create the Lease with ``spec``; raises LeaseError (one exists already, ...)."""

    def update(self, lease: Obj, *, timeout: float) -> None:
        """Replace the Lease (its resourceVersion is the precondition); raises LeaseError."""


class LeaderElector:
    def __init__(
        self,
        port: LeasePort,
        *,
        identity: str,
        timing: lease.Timing,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.port, self.identity, self.timing = port, identity, timing
        self.clock, self.wall = clock, wall
        self._seen = lease.Observation()
        self._renewed_at = 0.0
        self.leading = False

    def _try(self, deadline: float) -> bool:
        def left() -> float:
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise LeaseError("renew deadline passed")
            return remaining

        current = self.port.get(timeout=left())
        if current is None:
            spec = lease.claimed(
                {}, me=self.identity, duration=self.timing.lease_duration, now=self.wall()
            )
            self.port.create({**spec, "leaseTransitions": 0}, timeout=left())  # a first holder
            return True
        spec = current.get("spec") or {}
        if not lease.decide(
            me=self.identity,
            spec=spec,
            seen=self._seen,
            now=self.clock(),
            duration=self.timing.lease_duration,
        ):
            return False
        claimed = lease.claimed(
            spec, me=self.identity, duration=self.timing.lease_duration, now=self.wall()
        )
        self.port.update({**current, "spec": claimed}, timeout=left())
        return True

    def attempt(self, *, within: float) -> bool:
        """One acquire-or-renew taking at most ``within`` seconds; any failure is a failed
        attempt (never raised: the election keeps going)."""
        deadline = self.clock() + within
        try:
            won = self._try(deadline)
        except LeaseError as exc:
            log.info("lease attempt failed", extra={"error": str(exc)})
            return False
        except Exception as exc:  # an unexpected error must not end the election thread
            log.warning("lease attempt failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            return False
        # A reply after the deadline may come after a standby could take over: not a renewal.
        return won and self.clock() <= deadline

    def acquire(self, wait: Callable[[float], bool]) -> bool:
        """Block until this replica leads (True) or ``wait`` reports a stop (False).

        ``wait(seconds)`` sleeps and says whether to stop (``threading.Event.wait``)."""
        log.info("waiting for leadership", extra={"identity": self.identity})
        while True:
            started = self.clock()  # the write lands after the start: counting from it is safe
            if self.attempt(within=self.timing.renew_deadline):
                self._renewed_at, self.leading = started, True
                log.info("became leader", extra={"identity": self.identity})
                return True
            if wait(self.timing.retry_period):
                return False

    def keep(self, wait: Callable[[float], bool]) -> bool:
        """Renew every retry period until a stop (True) or until no renewal succeeded within
        the renew deadline (False: lost; stop acting before the Lease can be taken)."""
        while not wait(self.timing.retry_period):
            started = self.clock()
            budget = lease.attempt_budget(
                renewed_at=self._renewed_at, now=started, timing=self.timing
            )
            if budget > 0 and self.attempt(within=budget):
                self._renewed_at = started
            elif self.clock() - self._renewed_at >= self.timing.renew_deadline:
                self.leading = False
                log.error("lost leadership", extra={"identity": self.identity})
                return False
        return True

    def release(self) -> None:
        """Hand the Lease over on a clean shutdown, so that a standby takes over at once."""
        if not self.leading:
            return
        self.leading = False
        try:
            current = self.port.get(timeout=self.timing.retry_period)
            spec = (current or {}).get("spec") or {}
            if current is not None and spec.get("holderIdentity") == self.identity:
                self.port.update(
                    {**current, "spec": lease.released(spec)}, timeout=self.timing.retry_period
                )
        except LeaseError as exc:
            log.warning("lease not released", extra={"error": str(exc)})
