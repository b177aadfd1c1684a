"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

A candidate takes the Lease when it is free or its holder let it expire: expiry is judged by
this process's own clock from when it last saw the record change, never by comparing clocks.
The leader renews every retry period; if it cannot renew within the renew deadline it has lost
and must stop acting (the process exits and restarts as a candidate).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable

from kubext.lease import Observation as Observation
from kubext.lease import Timing as Timing
from kubext.lease import claimed, released
from kubext.lease import decide as decide
from kubext_operator import kube, metrics

log = logging.getLogger("kubext_operator.leader")


class LeaderElector:
    def __init__(
        self,
        *,
        api: kube.Api,
        namespace: str,
        name: str,
        identity: str,
        timing: Timing,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.timing, self.clock, self.wall_clock = timing, clock, wall_clock
        self._seen = Observation()
        self._renewed_at = 0.0
        self.leading = False

    async def _try(self) -> bool:
        try:
            lease = await self.api.get("Lease", self.namespace, self.name)
        except kube.ApiError as exc:
            if not exc.not_found:
                log.warning("cannot read lease", extra={"error": str(exc)})
                return False
            return await self._create()
        spec = lease.get("spec") or {}
        if not decide(
            me=self.identity,
            spec=spec,
            seen=self._seen,
            now=self.clock(),
            duration=self.timing.lease_duration,
        ):
            return False
        lease["spec"] = claimed(
            spec, me=self.identity, duration=self.timing.lease_duration, now=self.wall_clock()
        )
        try:
            await self.api.request(
                "PUT", kube.KINDS["Lease"].path(self.namespace, self.name), body=lease
            )
        except kube.ApiError as exc:
            log.info("lease update lost a race", extra={"error": exc.reason})
            return False
        return True

    async def _create(self) -> bool:
        spec = claimed(
            {}, me=self.identity, duration=self.timing.lease_duration, now=self.wall_clock()
        )
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {**spec, "leaseTransitions": 0},
        }
        try:
            await self.api.create(body)
        except kube.ApiError as exc:
            log.info("lease creation lost a race", extra={"error": exc.reason})
            return False
        return True

    async def _attempt(self, *, within: float) -> bool:
        """One acquire-or-renew, abandoned after ``within`` seconds; any error is a failed
        attempt (a request can take the client's general timeout, longer than the lease)."""
        if within <= 0:
            return False
        try:
            return await asyncio.wait_for(self._try(), timeout=within)
        except TimeoutError:
            log.warning("lease request timed out", extra={"after_s": round(within, 3)})
        except Exception as exc:
            log.warning("lease request failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        return False

    async def acquire(self) -> None:
        """Block until this process holds the Lease."""
        log.info("waiting for leadership", extra={"lease": f"{self.namespace}/{self.name}"})
        metrics.LEADER.labels(self.name).set(0)
        while True:
            # The write lands after the attempt starts: counting from the start is safe.
            started = self.clock()
            if await self._attempt(within=self.timing.renew_deadline):
                break
            await asyncio.sleep(self.timing.retry_period)
        self._renewed_at = started
        self.leading = True
        metrics.LEADER.labels(self.name).set(1)
        log.info("became leader", extra={"identity": self.identity})

    async def keep(self) -> None:
        """Renew until renewal fails for longer than the renew deadline; then return (lost).

        Each attempt is bounded by what is left of the deadline, as client-go does, so the
        leader gives up (renew deadline) before a standby may take over (lease duration)."""
        while True:
            await asyncio.sleep(self.timing.retry_period)
            started = self.clock()
            left = self._renewed_at + self.timing.renew_deadline - started
            if await self._attempt(within=left):
                self._renewed_at = started
            elif self.clock() - self._renewed_at >= self.timing.renew_deadline:
                self.leading = False
                metrics.LEADER.labels(self.name).set(0)
                log.error("lost leadership", extra={"identity": self.identity})
                return

    async def release(self) -> None:
        """Hand the Lease over on a clean shutdown, so a standby takes over at once."""
        if not self.leading:
            return
        try:
            lease = await self.api.get("Lease", self.namespace, self.name)
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"] = released(lease["spec"])
            await self.api.request(
                "PUT", kube.KINDS["Lease"].path(self.namespace, self.name), body=lease
            )
        except kube.ApiError as exc:
            log.warning("lease not released", extra={"error": str(exc)})
        self.leading = False
