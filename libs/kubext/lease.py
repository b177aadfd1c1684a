"""Leader election on a coordination.k8s.io/v1 Lease, the decisions only (pure: the caller
passes the clock and does the I/O), as client-go's leaderelection makes them.

Expiry is judged by the candidate's own clock from when it last saw the Lease record change,
never by comparing clocks across machines. A leader renews every retry period; each attempt
may take only what is left of the renew deadline, so a leader whose API calls stall gives up
(renew deadline) before a standby may take over (lease duration).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True)
class Timing:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


@dataclasses.dataclass
class Observation:
    """The last Lease record seen, and when (by the local monotonic clock) it last changed."""

    holder: str | None = None
    record: tuple[Any, ...] = ()
    changed_at: float = 0.0


def decide(
    *, me: str, spec: Mapping[str, Any], seen: Observation, now: float, duration: float
) -> bool:
    """Whether ``me`` may write itself into a Lease whose spec is ``spec``."""
    record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
    if record != seen.record:
        seen.record, seen.holder, seen.changed_at = record, spec.get("holderIdentity"), now
    holder = spec.get("holderIdentity")
    if not holder or holder == me:
        return True
    lease = float(spec.get("leaseDurationSeconds") or duration)
    return now - seen.changed_at > lease


def micro_time(at: dt.datetime) -> str:
    """A MicroTime as the API server writes it."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claimed(
    spec: Mapping[str, Any], *, me: str, duration: float, now: dt.datetime
) -> dict[str, Any]:
    """The spec that makes ``me`` the holder of a Lease whose spec is ``spec`` (renewal when
    ``me`` holds it already: acquireTime and leaseTransitions kept)."""
    stamp = micro_time(now)
    transitions = int(spec.get("leaseTransitions") or 0)
    taking = spec.get("holderIdentity") != me
    return {
        **spec,
        "holderIdentity": me,
        # Whole seconds, rounded up: a standby waits this long, never less than our own lease.
        "leaseDurationSeconds": max(1, math.ceil(duration)),
        "renewTime": stamp,
        "acquireTime": stamp if taking else spec.get("acquireTime", stamp),
        "leaseTransitions": transitions + 1 if taking else transitions,
    }


def released(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec a leader writes on a clean shutdown, so that a standby takes over at once."""
    return {**spec, "holderIdentity": None, "leaseDurationSeconds": 1}


def attempt_budget(*, renewed_at: float, now: float, timing: Timing) -> float:
    """Seconds the next renewal may take: what is left of the renew deadline (<= 0: lost)."""
    return renewed_at + timing.renew_deadline - now
