"""Background tasks restart after a failure, with backoff; one that keeps failing fails the
probes, by name, until a run of it lasts."""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from kubext import health
from kubext_operator import supervisor


async def _until(condition: Callable[[], bool], *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def _probe(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Flaky:
    """Fails ``failures`` times, then runs until cancelled."""

    def __init__(self, failures: int) -> None:
        self.failures, self.starts, self.running = failures, 0, False

    async def run(self) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            raise RuntimeError(f"boom {self.starts}")
        self.running = True
        await asyncio.Event().wait()


def test_a_failed_task_is_restarted_with_backoff_and_each_failure_logged(caplog) -> None:
    async def scenario() -> list[float]:
        flaky = Flaky(failures=3)
        tasks = supervisor.Supervisor(base_delay=0.01, max_delay=0.02)
        tasks.start("reflect-Pod", flaky.run)
        await _until(lambda: flaky.running)
        await tasks.stop()
        return [r.retry_in_s for r in caplog.records if hasattr(r, "retry_in_s")]

    with caplog.at_level(logging.ERROR, logger="kubext_operator.supervisor"):
        delays = asyncio.run(scenario())
    assert delays == [0.01, 0.02, 0.02]  # doubling, capped
    failures = [r for r in caplog.records if r.name == "kubext_operator.supervisor"]
    assert [r.task for r in failures] == ["reflect-Pod"] * 3
    assert failures[0].exc_info and "RuntimeError: boom 1" in failures[0].error


def test_a_task_that_returns_is_done_not_restarted() -> None:
    async def scenario() -> int:
        calls = []

        async def once() -> None:
            calls.append(1)

        tasks = supervisor.Supervisor(base_delay=0.001)
        await asyncio.wait_for(tasks.start("keep-lease", once), timeout=1)
        await asyncio.sleep(0.01)
        await tasks.stop()
        return len(calls)

    assert asyncio.run(scenario()) == 1


def test_a_task_that_keeps_failing_fails_the_probes_by_name_until_a_run_lasts() -> None:
    now = [0.0]

    async def scenario() -> None:
        flaky = Flaky(failures=4)
        tasks = supervisor.Supervisor(
            base_delay=0.001, max_delay=0.001, report_after=3, reset_after=60, clock=lambda: now[0]
        )
        srv = health.HealthServer(live=tasks.check, ready=tasks.check).start()
        try:
            assert _probe(srv.port, "/healthz") == (200, "ok\n")
            tasks.start("resync", lambda: asyncio.Event().wait())
            tasks.start("reflect-Deployment", flaky.run)
            await _until(lambda: flaky.running)
            for path in ("/healthz", "/readyz"):
                code, body = await asyncio.to_thread(_probe, srv.port, path)
                assert code == 503
                assert "reflect-Deployment" in body and "RuntimeError: boom 4" in body
                assert "resync" not in body
            now[0] += 60  # the restarted run has lasted: the task is healthy again
            assert await asyncio.to_thread(_probe, srv.port, "/healthz") == (200, "ok\n")
        finally:
            srv.stop()
            await tasks.stop()

    asyncio.run(scenario())


def test_stop_cancels_every_task() -> None:
    async def scenario() -> None:
        tasks = supervisor.Supervisor()
        started = [tasks.start(f"t{n}", lambda: asyncio.Event().wait()) for n in range(3)]
        await tasks.stop()
        assert all(t.cancelled() for t in started)
        with pytest.raises(ValueError):
            tasks.start("t0", lambda: asyncio.sleep(0))  # names are unique

    asyncio.run(scenario())
