"""The Lease record a candidate writes: a standby reads its duration and waits that long."""

from __future__ import annotations

import datetime as dt

from kubext import lease

NOW = dt.datetime(2026, 12, 2, 1, 2, 3, 456789, tzinfo=dt.UTC)


def test_the_written_duration_is_never_shorter_than_the_leaders_own() -> None:
    # A standby takes over after leaseDurationSeconds; writing 10 for a 10.2 s lease would let
    # it take over while the leader still counts itself within its lease.
    for duration, written in ((10.2, 11), (15.0, 15), (1.5, 2), (0.3, 1)):
        spec = lease.claimed({}, me="a", duration=duration, now=NOW)
        assert spec["leaseDurationSeconds"] == written, duration


def test_taking_counts_a_transition_and_renewing_keeps_acquire_time() -> None:
    taken = lease.claimed(
        {"holderIdentity": "b", "leaseTransitions": 3}, me="a", duration=15, now=NOW
    )
    assert taken["holderIdentity"] == "a" and taken["leaseTransitions"] == 4
    assert taken["acquireTime"] == taken["renewTime"] == "2026-12-02T01:02:03.456789Z"
    later = NOW + dt.timedelta(seconds=2)
    renewed = lease.claimed(taken, me="a", duration=15, now=later)
    assert renewed["leaseTransitions"] == 4
    assert renewed["acquireTime"] == taken["acquireTime"]
    assert renewed["renewTime"] == "2026-12-02T01:02:05.456789Z"


def test_release_lets_a_standby_take_over_at_once() -> None:
    spec = lease.released({"holderIdentity": "a", "leaseDurationSeconds": 15})
    assert spec["holderIdentity"] is None and spec["leaseDurationSeconds"] == 1
