"""Leader election with an injected clock against an in-memory Lease that behaves like the API
server's (resourceVersion preconditions, create conflicts, calls that take time or stall)."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from kubext import lease
from kubext_scheduler.leader import LeaderElector, LeaseError

TIMING = lease.Timing(lease_duration=15.0, renew_deadline=10.0, retry_period=2.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeLease:
    """One Lease; each call takes ``latency`` seconds of the shared clock, and one slower than
    its timeout is cut off at the timeout (the client's request timeout) without landing."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.obj: dict[str, Any] | None = None
        self.version = 0
        self.latency = 0.01
        # urllib3's timeouts bound each socket read, not a whole call: a reply can be late.
        self.honours_timeouts = True
        self.timeouts: list[float] = []
        self.landed: list[tuple[float, str | None]] = []  # (when, holder) of each write

    def _call(self, timeout: float) -> None:
        self.timeouts.append(timeout)
        if self.latency > timeout and self.honours_timeouts:
            self.clock.now += timeout
            raise LeaseError("timed out")
        self.clock.now += self.latency

    def _write(self, spec: Mapping[str, Any]) -> None:
        self.version += 1
        self.obj = {"metadata": {"resourceVersion": str(self.version)}, "spec": dict(spec)}
        self.landed.append((self.clock.now, spec.get("holderIdentity")))

    def get(self, *, timeout: float) -> dict[str, Any] | None:
        self._call(timeout)
        return copy.deepcopy(self.obj)

    def create(self, spec: Mapping[str, Any], *, timeout: float) -> None:
        self._call(timeout)
        if self.obj is not None:
            raise LeaseError("409 AlreadyExists")
        self._write(spec)

    def update(self, obj: Mapping[str, Any], *, timeout: float) -> None:
        self._call(timeout)
        assert self.obj is not None
        if obj["metadata"]["resourceVersion"] != self.obj["metadata"]["resourceVersion"]:
            raise LeaseError("409 Conflict")
        self._write(obj["spec"])

    @property
    def holder(self) -> str | None:
        return None if self.obj is None else self.obj["spec"]["holderIdentity"]


def elector(api: FakeLease, clock: Clock, identity: str) -> LeaderElector:
    wall = lambda: dt.datetime(2026, 12, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=clock.now)  # noqa: E731
    return LeaderElector(api, identity=identity, timing=TIMING, clock=clock, wall=wall)


def waiting(clock: Clock, *, until: Callable[[], bool]) -> Callable[[float], bool]:
    """A ``wait`` that advances the clock and says stop once ``until()`` holds."""

    def wait(seconds: float) -> bool:
        clock.now += seconds
        return until()

    return wait


def test_the_first_candidate_creates_the_lease_and_the_second_stands_by() -> None:
    clock = Clock()
    api = FakeLease(clock)
    a, b = elector(api, clock, "a"), elector(api, clock, "b")
    assert a.acquire(waiting(clock, until=lambda: True))
    assert api.holder == "a" and a.leading
    assert api.obj is not None and api.obj["spec"]["leaseTransitions"] == 0
    assert not b.acquire(waiting(clock, until=lambda: clock.now > 1010))  # a holds it
    assert api.holder == "a" and not b.leading


def test_a_standby_takes_over_only_a_full_lease_after_it_last_saw_a_change() -> None:
    clock = Clock()
    api = FakeLease(clock)
    a, b = elector(api, clock, "a"), elector(api, clock, "b")
    a.acquire(waiting(clock, until=lambda: True))
    first_seen = clock.now
    assert not b.attempt(within=10)  # b sees a's record now; a then dies without releasing
    while not b.attempt(within=10):
        clock.now += TIMING.retry_period
        assert clock.now - first_seen <= TIMING.lease_duration + TIMING.retry_period
    assert clock.now - first_seen > TIMING.lease_duration
    assert api.holder == "b"
    assert api.obj is not None and api.obj["spec"]["leaseTransitions"] == 1


def test_a_renewing_leader_keeps_the_lease_and_the_standby_never_binds() -> None:
    clock = Clock()
    api = FakeLease(clock)
    a, b = elector(api, clock, "a"), elector(api, clock, "b")
    a.acquire(waiting(clock, until=lambda: True))
    # Interleave: a renews every retry period for a minute while b keeps trying.
    for _ in range(30):
        assert a.attempt(within=TIMING.renew_deadline)
        assert not b.attempt(within=TIMING.renew_deadline)
        clock.now += TIMING.retry_period
    assert {holder for _, holder in api.landed} == {"a"}


def test_a_stalled_api_makes_the_leader_stop_before_its_lease_can_be_taken() -> None:
    clock = Clock()
    api = FakeLease(clock)
    a = elector(api, clock, "a")
    a.acquire(waiting(clock, until=lambda: True))
    stop_at = clock.now + 7  # renewals land for 7 s, then every call hangs
    lost = []

    def wait(seconds: float) -> bool:
        clock.now += seconds
        if clock.now >= stop_at:
            api.latency = 30.0  # longer than the lease: the client's general timeout
        return False

    lost.append(a.keep(wait))
    assert lost == [False] and not a.leading
    last_landed = api.landed[-1][0]
    # A standby may take over a lease_duration after it saw the last write; a has stopped first.
    assert clock.now < last_landed + TIMING.lease_duration
    # No call was allowed past the renew deadline, counted from the last renewal's start.
    assert max(api.timeouts) <= TIMING.renew_deadline


def test_a_late_reply_is_not_a_renewal() -> None:
    clock = Clock()
    api = FakeLease(clock)
    a = elector(api, clock, "a")
    a.acquire(waiting(clock, until=lambda: True))
    api.latency, api.honours_timeouts = 0.6, False  # the update lands 0.2 s past the deadline
    assert not a.attempt(within=1.0)
    assert api.holder == "a"  # it landed, yet the leader must not count it as a renewal


def test_release_hands_the_lease_to_the_standby_at_once() -> None:
    clock = Clock()
    api = FakeLease(clock)
    a, b = elector(api, clock, "a"), elector(api, clock, "b")
    a.acquire(waiting(clock, until=lambda: True))
    assert not b.attempt(within=10)
    a.release()
    assert api.holder is None and not a.leading
    assert b.attempt(within=10)
    assert api.holder == "b"


def test_two_candidates_racing_for_a_free_lease_elect_one() -> None:
    clock = Clock()
    api = FakeLease(clock)
    a, b = elector(api, clock, "a"), elector(api, clock, "b")
    real_get = api.get
    seen_none = []

    def get_both_see_none(*, timeout: float) -> dict[str, Any] | None:
        seen_none.append(True)
        return None if len(seen_none) <= 2 else real_get(timeout=timeout)

    api.get = get_both_see_none  # type: ignore[method-assign]
    assert a.attempt(within=10)
    assert not b.attempt(within=10)  # its create conflicts
    assert api.holder == "a"


@pytest.mark.parametrize("failure", [LeaseError("500"), RuntimeError("boom")])
def test_any_failure_is_a_failed_attempt_never_a_dead_election(failure: Exception) -> None:
    clock = Clock()
    api = FakeLease(clock)

    def broken(*, timeout: float) -> None:
        raise failure

    api.get = broken  # type: ignore[assignment,method-assign]
    assert not elector(api, clock, "a").attempt(within=10)
