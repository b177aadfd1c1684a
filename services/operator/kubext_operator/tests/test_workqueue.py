"""Work queue semantics: dedup, no concurrent processing of a key, requeue, backoff."""

from __future__ import annotations

import asyncio

from kubext_operator import workqueue


def run(coro):
    return asyncio.run(coro)


def test_a_key_is_queued_once() -> None:
    async def scenario() -> list[str]:
        q: workqueue.WorkQueue[str] = workqueue.WorkQueue("t")
        for key in ("a", "b", "a", "a"):
            q.add(key)
        return [await q.get(), await q.get(), len(q)]

    assert run(scenario()) == ["a", "b", 0]


def test_key_added_while_processing_comes_back_after_done() -> None:
    async def scenario() -> list[object]:
        q: workqueue.WorkQueue[str] = workqueue.WorkQueue("t")
        q.add("a")
        key = await q.get()
        q.add("a")  # changed while a worker has it
        queued_meanwhile = len(q)
        q.done(key)
        return [queued_meanwhile, len(q), await q.get()]

    assert run(scenario()) == [0, 1, "a"]


def test_rate_limited_retries_back_off_and_forget_resets() -> None:
    async def scenario() -> list[float]:
        q: workqueue.WorkQueue[str] = workqueue.WorkQueue("t", base_delay=0.01, max_delay=0.04)
        delays = [q.add_rate_limited("a") for _ in range(4)]
        q.forget("a")
        delays.append(q.add_rate_limited("a"))
        return delays

    assert run(scenario()) == [0.01, 0.02, 0.04, 0.04, 0.01]


def test_add_after_delivers_later_and_earliest_wins() -> None:
    async def scenario() -> tuple[int, str, float]:
        loop = asyncio.get_running_loop()
        q: workqueue.WorkQueue[str] = workqueue.WorkQueue("t")
        q.add_after("a", 5.0)
        q.add_after("a", 0.05)
        before = len(q)
        started = loop.time()
        key = await asyncio.wait_for(q.get(), timeout=2)
        return before, key, loop.time() - started

    before, key, waited = run(scenario())
    assert (before, key) == (0, "a")
    # Not before its delay (the loop's timer may fire within its clock resolution), and the
    # earlier wake-up replaced the later one.
    assert 0.04 <= waited < 1


def test_shutdown_releases_waiting_workers() -> None:
    async def scenario() -> bool:
        q: workqueue.WorkQueue[str] = workqueue.WorkQueue("t")
        waiter = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        await q.shutdown()
        try:
            await asyncio.wait_for(waiter, timeout=1)
        except workqueue.ShutDown:
            return True
        return False

    assert run(scenario())


def test_soon_keys_are_handed_out_before_the_others() -> None:
    async def scenario() -> list[str]:
        q: workqueue.WorkQueue[str] = workqueue.WorkQueue("t")
        for key in ("new-1", "new-2", "new-3"):
            q.add(key)
        q.add("ready", soon=True)
        return [await q.get() for _ in range(4)]

    assert run(scenario()) == ["ready", "new-1", "new-2", "new-3"]


def test_a_waiting_key_added_soon_moves_up_once() -> None:
    async def scenario() -> list[object]:
        q: workqueue.WorkQueue[str] = workqueue.WorkQueue("t")
        for key in ("a", "b", "c"):
            q.add(key)
        q.add("c", soon=True)
        q.add("c", soon=True)
        got = [await q.get() for _ in range(3)]
        return [*got, len(q)]

    # "c" is handed out once, first; its old place behind "b" is skipped.
    assert run(scenario()) == ["c", "a", "b", 0]


def test_a_key_added_soon_while_processing_comes_back_first() -> None:
    async def scenario() -> list[str]:
        q: workqueue.WorkQueue[str] = workqueue.WorkQueue("t")
        q.add("a")
        q.add("b")
        key = await q.get()
        q.add("a", soon=True)  # its child changed while a worker had it
        q.done(key)
        return [key, await q.get(), await q.get()]

    assert run(scenario()) == ["a", "a", "b"]


def test_moved_key_processed_then_requeued_is_handed_out_once() -> None:
    async def scenario() -> list[object]:
        q: workqueue.WorkQueue[str] = workqueue.WorkQueue("t")
        q.add("a")
        q.add("b")
        q.add("b", soon=True)  # "b" now also has a stale place behind "a"
        first = await q.get()
        q.add("b")  # while a worker has it
        q.done(first)
        got = [first, await q.get(), await q.get()]
        return [*got, len(q), q._pop()]

    assert run(scenario()) == ["b", "a", "b", 0, None]
