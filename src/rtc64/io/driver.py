"""The one io driver: a sans-I/O core's timer on the event loop, in the process clock.

Rules (the shape of aioquic's asyncio adapter):

- Every core keeps its deadlines as plain numbers on one clock per process, ``clock()``
  (``time.monotonic``: the timebase of the relay's packet timestamps too), exposes the
  earliest as ``get_timer()`` and fires what is due in ``handle_timer(now)``.
- The driver holds exactly one loop timer, for the core's earliest deadline rounded up
  to a grid of ``resolution`` seconds (10 ms): deadlines in the same grid cell share one
  wake-up (the clock is precise to the microsecond: without the grid, each deadline of
  a burst of transactions would wake the loop on its own), a timer never fires early
  and at most ``resolution`` (+1 ms against the loop's millisecond rounding) late.
  Whoever feeds the core input (a datagram, a response, a finished look-up) calls
  ``update()`` afterwards; the driver re-arms only when that grid point moved.
  ``soon()`` is ``update()`` once, after the callbacks already queued on the loop have
  run: a core told of every step of a message (the proxy: several times per datagram)
  or of a burst of datagrams asks its deadline once per loop iteration. A timer that
  fires meanwhile handles what is due and follows the core as usual; a deadline that
  moved earlier is armed at most one loop iteration later.
- A callback that raises is logged, never lost, and the driver keeps running: a bad
  message must not stop a core's timers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Protocol

RESOLUTION = 0.01
"""Seconds: the grid the driver's wake-ups are rounded up to (SIP's shortest timer,
T1 = 500 ms, moves by at most 2 %)."""
_MARGIN = 0.001  # the loop rounds delays to whole milliseconds: never wake before the grid


def clock() -> float:
    """The process clock every core's ``now`` comes from (monotonic seconds)."""
    return time.monotonic()


class TimerCore(Protocol):
    """What a driven core offers: its earliest deadline and a way to fire it."""

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


class Driver:
    """Runs ``core.handle_timer`` at ``core.get_timer()``, one ``call_later`` at a time.

    Built before its core when the core needs ``update`` as a callback (the core is then
    given with ``drive``); ``close`` stops it for good.
    """

    __slots__ = ("_core", "_handle", "_log", "_loop", "_resolution", "_soon", "_when")

    def __init__(
        self,
        core: TimerCore | None = None,
        *,
        log: logging.Logger | None = None,
        resolution: float = RESOLUTION,
    ) -> None:
        if not resolution > 0:
            raise ValueError(f"resolution must be > 0 seconds, not {resolution!r}")
        self._loop = asyncio.get_running_loop()
        self._core = core
        self._resolution = resolution
        self._handle: asyncio.TimerHandle | None = None
        self._when: float | None = None
        self._soon = False  # an ``update`` is queued on the loop (``soon``)
        self._log = log or logging.getLogger("rtc64.io.driver")

    def drive(self, core: TimerCore) -> None:
        """Start driving ``core`` (once)."""
        if self._core is not None:
            raise RuntimeError("this driver already drives a core")
        self._core = core
        self.update()

    def update(self) -> None:
        """The core took input: follow its earliest deadline."""
        core = self._core
        when = core.get_timer() if core is not None else None
        if when is not None:  # the grid point at or after the deadline
            when = math.ceil(when / self._resolution) * self._resolution
        if when == self._when and (self._handle is not None or when is None):
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._when = when
        if when is not None:
            self._handle = self._loop.call_later(max(0.0, when - clock()) + _MARGIN, self._fire)

    def soon(self) -> None:
        """``update`` once the callbacks queued on the loop have run (see the rules)."""
        if not self._soon:
            self._soon = True
            self._loop.call_soon(self._settle)

    def _settle(self) -> None:
        self._soon = False
        self.update()

    def _fire(self) -> None:
        self._handle = None
        self._when = None
        core = self._core
        if core is None:
            return
        try:
            core.handle_timer(clock())
        except Exception:
            self._log.exception("timer of %s failed", type(core).__name__)
        self.update()

    def close(self) -> None:
        """Cancel the pending timer and drop the core."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._when = None
        self._core = None
