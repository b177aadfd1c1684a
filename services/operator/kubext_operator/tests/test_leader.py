"""Lease decisions: free, own, held, expired by our own clock (never by comparing clocks)."""

from __future__ import annotations

from kubext_operator import leader


def _spec(holder: str | None, renew: str = "t1", transitions: int = 0) -> dict:
    return {
        "holderIdentity": holder,
        "renewTime": renew,
        "leaseTransitions": transitions,
        "leaseDurationSeconds": 15,
    }


def test_free_or_own_lease_is_taken() -> None:
    assert leader.decide(me="a", spec=_spec(None), seen=leader.Observation(), now=0, duration=15)
    assert leader.decide(me="a", spec=_spec("a"), seen=leader.Observation(), now=0, duration=15)


def test_held_lease_waits_a_full_duration_from_when_we_first_saw_it() -> None:
    seen = leader.Observation()
    assert not leader.decide(me="b", spec=_spec("a"), seen=seen, now=100, duration=15)
    assert not leader.decide(me="b", spec=_spec("a"), seen=seen, now=114, duration=15)
    assert leader.decide(me="b", spec=_spec("a"), seen=seen, now=115.5, duration=15)


def test_a_renewal_restarts_the_wait() -> None:
    seen = leader.Observation()
    leader.decide(me="b", spec=_spec("a", "t1"), seen=seen, now=100, duration=15)
    assert not leader.decide(me="b", spec=_spec("a", "t2"), seen=seen, now=110, duration=15)
    assert not leader.decide(me="b", spec=_spec("a", "t2"), seen=seen, now=124, duration=15)
    assert leader.decide(me="b", spec=_spec("a", "t2"), seen=seen, now=126, duration=15)
