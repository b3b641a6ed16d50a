# Wiring of the media relay on the running loop: the engine, its forwarder (in-process,
# or ``media.workers`` processes), and the io driver for the engine's earliest deadline.
#
# Rules: the engine stays sans-I/O; this module only picks the forwarder and gives the
# engine a driver of its own. Engine time is the process clock (``io.driver.clock``,
# monotonic), which is also the forwarders' packet timebase.
"""Start a MediaRelay on the running event loop."""

from __future__ import annotations

import logging
from collections.abc import Callable

from rtc64.io.driver import Driver, clock
from rtc64.io.media import MediaForwarder
from rtc64.io.media_workers import WorkerPool
from rtc64.relay.engine import Forwarder, MediaRelay
from rtc64.relay.options import RelaySettings


class RunningRelay(MediaRelay):
    """A MediaRelay whose timers run on the loop through its own driver; ``close`` stops
    the driver, the calls and the forwarder."""

    def __init__(
        self,
        settings: RelaySettings,
        forwarder: Forwarder,
        *,
        on_timeout: Callable[[bytes], None] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self._driver = Driver(log=log)
        super().__init__(
            settings,
            forwarder,
            clock=clock,
            on_timeout=on_timeout,
            on_timer=self._driver.update,
            log=log,
        )
        self._driver.drive(self)

    def close(self) -> None:
        self._driver.close()
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
    return RunningRelay(settings, forwarder, on_timeout=on_timeout, log=log)
