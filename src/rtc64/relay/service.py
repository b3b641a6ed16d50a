# Wiring of the media relay on the running loop: the engine, its forwarder (in-process,
# or ``media.workers`` processes), and one timer for the engine's earliest deadline.
#
# Rules: the engine stays sans-I/O; this module only owns the loop timer and picks the
# forwarder. Engine time is ``time.monotonic()``, the forwarders' packet timebase.
"""Start a MediaRelay on the running event loop."""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import monotonic

from rtc64.io.media import MediaForwarder
from rtc64.io.media_workers import WorkerPool
from rtc64.io.scheduler import MonotonicTimer
from rtc64.relay.engine import Forwarder, MediaRelay
from rtc64.relay.options import RelaySettings


class RunningRelay(MediaRelay):
    """A MediaRelay whose timers run on the loop; ``close`` stops them and the forwarder."""

    _timer: MonotonicTimer

    def close(self) -> None:
        self._timer.close()
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
    relays: list[MediaRelay] = []
    timer = MonotonicTimer(lambda now: relays[0].handle_timer(now) if relays else None)
    relay = RunningRelay(
        settings,
        forwarder,
        clock=monotonic,
        on_timeout=on_timeout,
        on_timer=timer.schedule,
        log=log,
    )
    relay._timer = timer
    relays.append(relay)
    return relay
