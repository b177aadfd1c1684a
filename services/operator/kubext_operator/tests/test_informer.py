"""The reflector: paged list, watch from the list's version, forget the vanished, relist on 410."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubext_operator import informer, supervisor


def _obj(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": version}}


class FakeApi:
    """Serves ``pages`` to the lists in turn and ``streams`` to the watches (a stream that is an
    exception raises it); after the last stream, a watch that stays quiet."""

    def __init__(
        self, pages: list[dict[str, Any]], streams: list[list[dict[str, Any]] | Exception]
    ) -> None:
        self.pages, self.streams = pages, streams
        self.list_params: list[dict[str, str]] = []
        self.watch_params: list[dict[str, str]] = []
        self.quiet = asyncio.Event()  # set once a watch gets past every stream

    async def request(self, method: str, path: str, *, params: dict[str, str]) -> dict[str, Any]:
        self.list_params.append(params)
        return self.pages[len(self.list_params) - 1]

    async def watch(self, path: str, *, params: dict[str, str], timeout: float):
        self.watch_params.append(params)
        if self.streams:
            stream = self.streams.pop(0)
            if isinstance(stream, Exception):
                raise stream
            for event in stream:
                yield event
            return  # the server ended this stream
        self.quiet.set()
        await asyncio.Event().wait()  # then a quiet one


def _reflector(api: FakeApi, known: set[tuple[str, str]]) -> tuple[informer.Reflector, list]:
    log: list[tuple[str, str]] = []
    reflector = informer.Reflector(
        api=api,  # type: ignore[arg-type]
        kind="Deployment",
        namespace=None,
        selector="app.kubernetes.io/managed-by=kubext-operator",
        upsert=lambda kind, body: log.append(("upsert", body["metadata"]["name"])),
        delete=lambda kind, ns, name: log.append(("delete", name)),
        known=lambda kind, ns: known,
        server_timeout=300,
        client_timeout=330,
        page_size=2,
    )
    return reflector, log


async def _run_until_quiet(reflector: informer.Reflector, api: FakeApi) -> None:
    """Run the reflector until it has applied every stream and waits on a quiet watch."""
    task = asyncio.create_task(reflector.run())
    await asyncio.wait_for(api.quiet.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_list_pages_then_watch_from_the_list_version_and_forget_vanished() -> None:
    pages = [
        {"items": [_obj("a", "1"), _obj("b", "2")], "metadata": {"continue": "t1"}},
        {"items": [_obj("c", "3")], "metadata": {"resourceVersion": "10"}},
    ]
    streams = [
        [
            {"type": "MODIFIED", "object": _obj("a", "11")},
            {"type": "BOOKMARK", "object": _obj("", "12")},
            {"type": "DELETED", "object": _obj("b", "13")},
        ]
    ]
    api = FakeApi(pages, streams)
    reflector, log = _reflector(api, known={("ns", "a"), ("ns", "old")})
    asyncio.run(_run_until_quiet(reflector, api))
    assert reflector.synced.is_set()
    assert [p.get("continue") for p in api.list_params] == [None, "t1"]
    assert all(p["limit"] == "2" for p in api.list_params)
    assert log == [
        ("upsert", "a"),
        ("upsert", "b"),
        ("upsert", "c"),
        ("delete", "old"),  # cached but no longer listed
        ("upsert", "a"),
        ("delete", "b"),
    ]
    assert api.watch_params[0]["resourceVersion"] == "10"
    assert api.watch_params[0]["allowWatchBookmarks"] == "true"
    assert api.watch_params[1]["resourceVersion"] == "13"  # resumes where the stream ended


def test_410_gone_relists() -> None:
    pages = [
        {"items": [_obj("a", "1")], "metadata": {"resourceVersion": "5"}},
        {"items": [_obj("a", "20")], "metadata": {"resourceVersion": "21"}},
    ]
    streams = [[{"type": "ERROR", "object": {"code": 410, "message": "too old"}}]]
    api = FakeApi(pages, streams)
    reflector, log = _reflector(api, known=set())
    asyncio.run(_run_until_quiet(reflector, api))
    assert len(api.list_params) == 2
    assert api.watch_params[-1]["resourceVersion"] == "21"
    assert log == [("upsert", "a"), ("upsert", "a")]


def test_a_reflector_that_dies_unexpectedly_is_restarted_and_relists() -> None:
    pages = [
        {"items": [_obj("a", "1")], "metadata": {"resourceVersion": "5"}},
        {"items": [_obj("a", "20"), _obj("b", "21")], "metadata": {"resourceVersion": "22"}},
    ]
    api = FakeApi(pages, [RuntimeError("a bug in the watch")])
    reflector, log = _reflector(api, known=set())

    async def scenario() -> None:
        tasks = supervisor.Supervisor(base_delay=0.001)
        tasks.start("reflect-Deployment", reflector.run)
        try:
            await asyncio.wait_for(api.quiet.wait(), timeout=5)
        finally:
            await tasks.stop()

    asyncio.run(scenario())
    assert len(api.list_params) == 2  # listed again after the failure
    assert log == [("upsert", "a"), ("upsert", "a"), ("upsert", "b")]  # the cache caught up
    assert api.watch_params[-1]["resourceVersion"] == "22"
