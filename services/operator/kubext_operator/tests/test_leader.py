"""Lease decisions: free, own, held, expired by our own clock (never by comparing clocks)."""

from __future__ import annotations

import asyncio
import copy
import time

from kubext_operator import kube, leader


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


class LeaseApi:
    """One Lease in memory, written like the API server would; ``stall`` makes every later call
    hang (a wedged API server), ``fail`` makes every later call raise."""

    def __init__(self) -> None:
        self.lease: dict | None = None
        self.renewed_at: list[float] = []  # when (monotonic) each write of the Lease landed
        self.stalled = False
        self.fail: BaseException | None = None

    async def _answer(self) -> None:
        if self.stalled:
            await asyncio.Event().wait()
        if self.fail is not None:
            raise self.fail

    async def get(self, kind: str, namespace: str, name: str) -> dict:
        await self._answer()
        if self.lease is None:
            raise kube.ApiError(404, "NotFound", "leases not found")
        return copy.deepcopy(self.lease)

    async def create(self, body: dict) -> dict:
        await self._answer()
        self.lease = copy.deepcopy(body)
        self.renewed_at.append(time.monotonic())
        return body

    async def request(self, method: str, path: str, *, body: dict) -> dict:
        await self._answer()
        self.lease = copy.deepcopy(body)
        self.renewed_at.append(time.monotonic())
        return body


TIMING = leader.Timing(lease_duration=1.5, renew_deadline=0.5, retry_period=0.05)


async def _leading(api: LeaseApi) -> tuple[leader.LeaderElector, asyncio.Task[None]]:
    """An elector that holds the Lease and has renewed it at least twice."""
    elector = leader.LeaderElector(
        api=api,  # type: ignore[arg-type]
        namespace="ns",
        name="kubext-operator",
        identity="a",
        timing=TIMING,
    )
    await asyncio.wait_for(elector.acquire(), timeout=5)
    keeping = asyncio.create_task(elector.keep())
    deadline = time.monotonic() + 5
    while len(api.renewed_at) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert len(api.renewed_at) >= 3, "the leader does not renew"
    return elector, keeping


async def _until_not_leading(elector: leader.LeaderElector, by: float) -> None:
    while elector.leading and time.monotonic() < by:
        await asyncio.sleep(0.01)


def test_a_stalled_renewal_gives_up_leadership_before_the_lease_can_be_taken() -> None:
    async def scenario() -> None:
        api = LeaseApi()
        elector, keeping = await _leading(api)
        api.stalled = True  # every call from now on hangs, longer than any lease
        # A standby may take the Lease once a full duration has passed since the last write.
        takeover = api.renewed_at[-1] + TIMING.lease_duration
        await _until_not_leading(elector, by=takeover)
        assert not elector.leading, "still leading when the lease can be taken over"
        assert time.monotonic() < takeover
        await asyncio.wait_for(keeping, timeout=0.1)  # keep() returned: the caller stops acting

    asyncio.run(scenario())


def test_an_unexpected_renewal_error_is_a_failed_attempt_not_a_crash() -> None:
    async def scenario() -> None:
        api = LeaseApi()
        elector, keeping = await _leading(api)
        api.fail = ConnectionResetError("reset by peer")
        takeover = api.renewed_at[-1] + TIMING.lease_duration
        await _until_not_leading(elector, by=takeover)
        assert not elector.leading and time.monotonic() < takeover
        await asyncio.wait_for(keeping, timeout=0.1)  # returned (lost), did not raise

    asyncio.run(scenario())


def test_a_leader_that_renews_keeps_leading() -> None:
    async def scenario() -> None:
        api = LeaseApi()
        elector, keeping = await _leading(api)
        renewals = len(api.renewed_at)
        await asyncio.sleep(TIMING.renew_deadline * 2)
        assert elector.leading and not keeping.done()
        assert len(api.renewed_at) > renewals
        keeping.cancel()

    asyncio.run(scenario())


def test_the_lease_advertises_at_least_the_leaders_duration() -> None:
    # TIMING's 1.5 s lease written as 1 would let a standby take over half a second early.
    async def scenario() -> None:
        api = LeaseApi()
        elector, keeping = await _leading(api)
        assert api.lease is not None
        assert api.lease["spec"]["leaseDurationSeconds"] == 2
        assert api.lease["spec"]["holderIdentity"] == "a"
        keeping.cancel()

    asyncio.run(scenario())
