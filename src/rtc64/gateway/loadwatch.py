"""The gateway's load watch: overload signals into admission control, collector settings
and memory upkeep, started once the proxy can answer and stopped with the gateway."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable

from rtc64.gateway.admission import Admission
from rtc64.io import memory
from rtc64.io.driver import clock
from rtc64.io.scheduler import LagMonitor, SelfPing, Spawner
from rtc64.net.endpoint import BoundListener, Transport
from rtc64.sip.transaction import TransactionLayer
from rtc64.sip.uri import clear_caches

LATE_TICK = 0.1
"""A lag-monitor tick this late is logged with the CPU the loop used meanwhile."""
STARTUP_GRACE = 3.0
"""Seconds after the watch starts during which lag never sheds (start-up work, not load)."""


class LoadWatch:
    """Lag monitor + self-pings feeding ``admission``; GC tuned; periodic memory upkeep."""

    def __init__(self, lag: LagMonitor, gc_watch: memory.GcWatch) -> None:
        self.lag = lag
        self.gc_watch = gc_watch

    def close(self) -> None:
        self.lag.close()
        self.gc_watch.close()
        memory.untune()


async def watch_load(
    listeners: Iterable[BoundListener],
    admission: Admission,
    layer: TransactionLayer,
    spawner: Spawner,
    log: logging.Logger,
) -> LoadWatch:
    """Start the watch (after the proxy exists: the self-pings are answered by it)."""
    pings = []
    for lst in listeners:
        if lst.transport is not Transport.UDP:
            continue
        ip = lst.spec.address
        host = ("::1" if ip.version == 6 else "127.0.0.1") if lst.wildcard else str(ip)
        ping = SelfPing((host, lst.port))
        try:
            await ping.start()
        except OSError as exc:
            log.debug("no self-ping through %s: %s", lst.name(), exc)
            continue
        pings.append(ping)

    def sample(now: float, delay: float) -> None:
        memory.settle()
        if lag.late >= LATE_TICK:
            log.info(
                "event loop %.3f s late (%.3f s of CPU in the loop since the tick before)",
                lag.late,
                lag.cpu_gap,
            )
        if admission.observe(now, delay):
            if admission.overloaded:
                log.warning("overload: %.3f s queued, shedding new requests (503)", delay)
            else:
                log.warning("overload over: %d new requests shed so far", admission.stats.shed)

    admission.quiet_until = clock() + STARTUP_GRACE
    lag = LagMonitor(on_sample=sample, pings=pings)
    gc_watch = memory.GcWatch(log.getChild("gc"))
    frozen = memory.tune()
    log.debug("gc: %d start-up objects frozen, thresholds %s", frozen, gc.get_threshold())
    keeper = memory.MemoryKeeper(
        lambda: len(layer),
        lambda: admission.overloaded,
        log.getChild("memory"),
        release=clear_caches,
    )

    async def upkeep() -> None:
        keeper.check(clock())

    spawner.every(10.0, upkeep)
    return LoadWatch(lag, gc_watch)
