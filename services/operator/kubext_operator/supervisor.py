"""Background tasks that come back after a failure, and fail the probes while they cannot.

A reflector, the resync loop or the Lease renewal that dies on an unexpected exception would
otherwise leave a stale cache (or an unrenewed Lease) behind a green /healthz. Each runs here
from a factory of coroutines: a failure is logged with its exception and the task started again
after a capped exponential backoff (client-go's BackoffUntil). A task that has failed
``report_after`` times in a row fails :meth:`Supervisor.check` by name until a run of it lasts
``reset_after`` seconds. A task that returns is done: it is not started again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from kubext import health

log = logging.getLogger("kubext_operator.supervisor")


@dataclasses.dataclass
class _Record:
    failures: int = 0  # in a row
    last_error: str = ""
    running_since: float | None = None  # None while waiting to start again


class Supervisor:
    def __init__(
        self,
        *,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        report_after: int = 5,
        reset_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_delay, self.max_delay = base_delay, max_delay
        self.report_after, self.reset_after, self.clock = report_after, reset_after, clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._records: dict[str, _Record] = {}

    def start(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run ``run()`` as the task ``name``, again after each failure, until it returns."""
        if name in self._tasks:
            raise ValueError(f"a background task named {name!r} exists already")
        self._records[name] = _Record()
        task = asyncio.create_task(self._supervise(name, run), name=name)
        self._tasks[name] = task
        return task

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        record = self._records[name]
        while True:
            started = record.running_since = self.clock()
            try:
                await run()
                record.running_since = None
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                record.running_since = None
                if self.clock() - started >= self.reset_after:
                    record.failures = 0  # it had recovered: this is a new run of failures
                record.failures += 1
                record.last_error = f"{type(exc).__name__}: {exc}"[:300]
                delay = min(self.max_delay, self.base_delay * 2 ** (record.failures - 1))
                log.error(
                    "background task failed; restarting",
                    extra={
                        "task": name,
                        "error": record.last_error,
                        "failures_in_a_row": record.failures,
                        "retry_in_s": delay,
                    },
                    exc_info=exc,
                )
                await asyncio.sleep(delay)

    def problems(self) -> list[str]:
        """One line per task that keeps failing (read from the health server's thread)."""
        now = self.clock()
        out = []
        for name, record in list(self._records.items()):
            since = record.running_since
            recovered = since is not None and now - since >= self.reset_after
            if record.failures >= self.report_after and not recovered:
                out.append(
                    f"{name} failed {record.failures} times in a row, last: {record.last_error}"
                )
        return out

    def check(self) -> bool:
        """A health check: True, or :class:`health.Unhealthy` naming the failing tasks."""
        problems = self.problems()
        if problems:
            raise health.Unhealthy("background task " + "; ".join(problems))
        return True

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
