"""Events go out in the background: a reconcile never waits for one, nor fails because of one."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kubext_operator import kube, views
from kubext_operator.events import EventRecorder

VIEW = views.owner_view(
    "WebApp",
    {
        "metadata": {"name": "shop", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": {},
    },
)


class SlowApi:
    def __init__(self, *, fail: BaseException | None = None) -> None:
        self.gate = asyncio.Event()
        self.sent: list[dict] = []  # every POST, refused or not
        self.posted: list[dict] = []
        self.fail = fail

    async def create(self, body: dict) -> dict:
        await self.gate.wait()
        self.sent.append(body)
        if self.fail:
            raise self.fail
        self.posted.append(body)
        return body


def recorder(api: SlowApi, **kw) -> EventRecorder:
    return EventRecorder(
        api, identity="op-1", api_versions={"WebApp": "example.com/v1"}, now=lambda: "T", **kw
    )


def test_record_returns_before_the_post_and_drain_waits_for_it() -> None:
    async def scenario() -> None:
        api = SlowApi()
        events = recorder(api)
        events.record(VIEW, "Normal", "Created", "created Deployment shop")
        await asyncio.sleep(0)
        assert api.posted == []  # the POST is still waiting; the caller went on
        api.gate.set()
        await events.drain()
        [body] = api.posted
        assert body["involvedObject"] == {
            "apiVersion": "example.com/v1",
            "kind": "WebApp",
            "name": "shop",
            "namespace": "ns",
            "uid": "u1",
        }
        assert (body["type"], body["reason"], body["reportingInstance"]) == (
            "Normal",
            "Created",
            "op-1",
        )

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("error", "logged"),
    [
        (kube.ApiError(403, "Forbidden", "events is forbidden"), "ApiError: 403 Forbidden"),
        (ConnectionResetError("reset by peer"), "ConnectionResetError: reset by peer"),
    ],
    ids=["refused", "unreachable"],
)
def test_a_refused_or_failed_post_is_logged_not_raised(
    error: BaseException, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> SlowApi:
        api = SlowApi(fail=error)
        api.gate.set()
        events = recorder(api)
        events.record(VIEW, "Warning", "InvalidSpec", "x" * 5000)
        await events.drain()
        return api

    with caplog.at_level(logging.WARNING, logger="kubext_operator.events"):
        api = asyncio.run(scenario())  # no exception escapes, nor a task error
    [sent] = api.sent
    assert sent["message"] == "x" * 1024  # the API server's limit for a message
    assert api.posted == []
    [record] = [r for r in caplog.records if r.name == "kubext_operator.events"]
    assert (record.levelno, record.getMessage(), record.reason) == (
        logging.WARNING,
        "event not recorded",
        "InvalidSpec",
    )
    assert record.error.startswith(logged)


def test_backlog_is_bounded_and_overflow_dropped() -> None:
    async def scenario() -> None:
        api = SlowApi()
        events = recorder(api, in_flight=2, backlog=3)
        for n in range(5):
            events.record(VIEW, "Normal", "Updated", f"change {n}")
        assert events.dropped == 2
        api.gate.set()
        await events.drain()
        assert [b["message"] for b in api.posted] == ["change 0", "change 1", "change 2"]

    asyncio.run(scenario())
