"""Wiring details of the operator process that need no API server."""

from __future__ import annotations

import asyncio

from kubext_operator import app


def test_waiting_for_stop_or_loss_leaves_no_task_behind() -> None:
    async def scenario() -> set[asyncio.Task]:
        stop, lost = asyncio.Event(), asyncio.Event()
        waiting = asyncio.ensure_future(app.first_of(stop, lost))
        await asyncio.sleep(0)
        lost.set()
        await asyncio.wait_for(waiting, timeout=1)
        await asyncio.sleep(0)  # let cancellations land
        return asyncio.all_tasks() - {asyncio.current_task()}

    assert asyncio.run(scenario()) == set()


def test_a_cancelled_wait_leaves_no_task_behind() -> None:
    async def scenario() -> set[asyncio.Task]:
        waiting = asyncio.ensure_future(app.first_of(asyncio.Event(), asyncio.Event()))
        await asyncio.sleep(0)
        waiting.cancel()  # kopf ended on its own: the flag is cancelled
        await asyncio.gather(waiting, return_exceptions=True)
        await asyncio.sleep(0)
        return asyncio.all_tasks() - {asyncio.current_task()}

    assert asyncio.run(scenario()) == set()
