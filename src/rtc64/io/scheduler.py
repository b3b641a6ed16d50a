"""Deadlines and background tasks for the services, on the running event loop.

``Deadline`` runs a callback at a loop-clock time; rescheduling replaces the pending
call (the transaction layer exposes one earliest deadline, so one handle suffices).
``Spawner`` starts coroutines as tasks, keeps a reference until they finish (asyncio
only holds weak ones) and logs any exception instead of losing it. ``clock`` is the
loop's monotonic clock: sans-I/O cores get their ``now`` from it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any


def clock() -> float:
    """The running loop's monotonic time (the timebase of ``Deadline``)."""
    return asyncio.get_running_loop().time()


class Deadline:
    """One pending ``loop.call_at``; ``schedule(None)`` cancels it."""

    __slots__ = ("_callback", "_handle", "_loop", "_when")

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._when: float | None = None
        self._loop = asyncio.get_running_loop()

    def schedule(self, when: float | None) -> None:
        if when == self._when and self._handle is not None:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._when = when
        if when is not None:
            self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._when = None
        self._callback()


class Spawner:
    """Start coroutines as tasks, keep them referenced, log their failures."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._tasks: set[asyncio.Task[Any]] = set()

    def __call__(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("background task failed", exc_info=task.exception())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def every(self, seconds: float, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``job`` every ``seconds`` until closed."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await job()
                except Exception:
                    self._log.exception("periodic job failed")

        self(loop())


class LagMonitor:
    """How late the event loop runs its callbacks: the overload signal of the gateway.

    A callback is scheduled every ``interval`` seconds; the delay between when it was due
    and when it ran is smoothed (EWMA) into ``lag``. A loop that keeps up shows
    microseconds; one that is saturated shows the queueing delay every message suffers.
    """

    def __init__(self, interval: float = 0.05, alpha: float = 0.3) -> None:
        self.interval = interval
        self.alpha = alpha
        self.lag = 0.0
        self._loop = asyncio.get_running_loop()
        self._due = self._loop.time() + interval
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        self.lag += self.alpha * (max(0.0, now - self._due) - self.lag)
        self._due = now + self.interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class MonotonicTimer:
    """One pending call at a ``time.monotonic()`` deadline (for cores that use that clock,
    like the relay engine); ``schedule(None)`` cancels; ``close`` stops it for good."""

    __slots__ = ("_callback", "_handle", "_loop", "_when")

    def __init__(self, callback: Callable[[float], None]) -> None:
        self._callback: Callable[[float], None] | None = callback
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._when: float | None = None

    def schedule(self, when: float | None) -> None:
        if when == self._when and self._handle is not None:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._when = when
        if when is not None and self._callback is not None:
            self._handle = self._loop.call_later(max(0.0, when - time.monotonic()), self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._when = None
        if self._callback is not None:
            self._callback(time.monotonic())

    def close(self) -> None:
        self.schedule(None)
        self._callback = None
