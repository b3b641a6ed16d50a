# Wiring of the media relay on the running loop: the engine, its forwarder (in-process,
# or ``media.workers`` processes), and one timer for the engine's earliest deadline.
#
# Rules: the engine stays sans-I/O; this module only owns the loop timer and picks the
# forwarder. Engine time is ``time.monotonic()``, the forwarders' packet timebase.
"""Start a MediaRelay on the running event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from time import monotonic

from rtc64.io.media import MediaForwarder
from rtc64.io.media_workers import WorkerPool
from rtc64.relay.engine import Forwarder, MediaRelay
from rtc64.relay.options import RelaySettings


class _EngineTimer:
    """One loop timer at the engine's ``get_timer()``."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._when: float | None = None
        self.relay: MediaRelay | None = None

    def schedule(self, when: float | None) -> None:
        if when == self._when and self._handle is not None:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._when = when
        if when is not None:
            self._handle = self._loop.call_later(max(0.0, when - monotonic()), self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._when = None
        if self.relay is not None:
            self.relay.handle_timer(monotonic())

    def cancel(self) -> None:
        self.relay = None
        self.schedule(None)


class RunningRelay(MediaRelay):
    """A MediaRelay whose timers run on the loop; ``close`` stops them and the forwarder."""

    _timer: _EngineTimer

    def close(self) -> None:
        self._timer.cancel()
        super().close()


def start_relay(
    settings: RelaySettings,
    *,
    on_timeout: Callable[[bytes], None] | None = None,
    log: logging.Logger | None = None,
) -> RunningRelay:
    """A relay ready for offers, on the running loop (``media.workers`` processes if > 1)."""
    log = log or logging.getLogger("rtc64.relay")
    forwarder: Forwarder
    if settings.workers > 1:
        forwarder = WorkerPool(settings.workers, log=log, stats_interval=settings.stats_interval)
    else:
        forwarder = MediaForwarder(log)
    timer = _EngineTimer()
    relay = RunningRelay(
        settings,
        forwarder,
        clock=monotonic,
        on_timeout=on_timeout,
        on_timer=timer.schedule,
        log=log,
    )
    relay._timer = timer
    timer.relay = relay
    return relay
