"""The io driver: one loop timer follows a core's earliest deadline."""

from __future__ import annotations

import asyncio
import logging
import math

import pytest

from rtc64.io.driver import RESOLUTION, Driver, clock


class Core:
    """A core with a list of deadlines; records when it fired."""

    def __init__(self, deadlines: list[float]) -> None:
        self.deadlines = sorted(deadlines)
        self.fired: list[float] = []
        self.wakeups: list[float] = []  # the ``now`` of every handle_timer call
        self.fail = False

    def get_timer(self) -> float | None:
        return self.deadlines[0] if self.deadlines else None

    def handle_timer(self, now: float) -> None:
        self.wakeups.append(now)
        if self.fail:
            self.fail = False
            self.deadlines.pop(0)
            raise ValueError("boom")
        while self.deadlines and self.deadlines[0] <= now:
            self.fired.append(self.deadlines.pop(0))


def test_fires_each_deadline_in_order_and_not_early() -> None:
    async def main() -> tuple[list[float], list[float]]:
        start = clock()
        core = Core([start + 0.03, start + 0.01, start + 0.02])
        Driver(core).update()
        await asyncio.sleep(0.1)
        return core.fired, core.deadlines

    fired, left = asyncio.run(main())
    assert fired == sorted(fired) and len(fired) == 3
    assert left == []


def test_deadlines_in_one_grid_cell_share_one_wakeup_and_none_fires_early() -> None:
    """A burst of transactions started together (deadlines microseconds apart) ends in one
    wake-up, not one per deadline; every deadline is due at the ``now`` it fires with."""

    async def main() -> Core:
        cell = (math.ceil(clock() / RESOLUTION) + 2) * RESOLUTION  # a grid point ahead
        core = Core([cell + RESOLUTION * k / 40 for k in range(1, 40)])
        driver = Driver(core)
        for _ in range(3):
            driver.update()  # fed input again: the same grid point, no re-arm
        await asyncio.sleep(6 * RESOLUTION)
        return core

    core = asyncio.run(main())
    assert len(core.fired) == 39 and core.deadlines == []
    assert len(core.wakeups) == 1
    assert core.wakeups[0] >= core.fired[-1]


def test_wakeups_follow_the_grid_not_each_deadline() -> None:
    """Deadlines spread over several cells wake the core at most once per cell, and never
    before one is due (each wake-up fires at least one deadline)."""

    async def main() -> Core:
        start = clock()
        core = Core([start + 0.001 * k for k in range(1, 60)])  # 59 deadlines over 59 ms
        Driver(core, resolution=0.02).update()
        await asyncio.sleep(0.2)
        return core

    core = asyncio.run(main())
    assert len(core.fired) == 59
    assert 1 <= len(core.wakeups) <= 4  # 59 ms touch at most 4 cells of 20 ms
    for before, now in zip([-math.inf, *core.wakeups], core.wakeups, strict=False):
        assert any(before < d <= now for d in core.fired)  # no wake-up with nothing due


def test_resolution_must_be_positive() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="resolution"):
            Driver(resolution=0.0)

    asyncio.run(main())


def test_update_follows_a_deadline_moved_earlier_or_removed() -> None:
    async def main() -> list[float]:
        start = clock()
        core = Core([start + 10.0])
        driver = Driver(core)
        driver.update()
        core.deadlines = [start + 0.01]
        driver.update()  # moved earlier: must fire now, not in 10 s
        await asyncio.sleep(0.05)
        core.deadlines = [clock() + 0.01]
        driver.update()
        core.deadlines = []
        driver.update()  # removed: nothing fires
        await asyncio.sleep(0.05)
        return core.fired

    assert len(asyncio.run(main())) == 1


def test_a_failing_core_is_logged_and_keeps_its_timers(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> list[float]:
        start = clock()
        core = Core([start + 0.01, start + 0.02])
        core.fail = True
        Driver(core).update()
        await asyncio.sleep(0.08)
        return core.fired

    with caplog.at_level(logging.ERROR):
        fired = asyncio.run(main())
    assert len(fired) == 1
    assert "timer of Core failed" in caplog.text


def test_drive_late_and_close() -> None:
    async def main() -> list[float]:
        driver = Driver()
        driver.update()  # no core yet: nothing to do
        core = Core([clock() + 0.01])
        driver.drive(core)
        with pytest.raises(RuntimeError):
            driver.drive(core)
        driver.close()
        await asyncio.sleep(0.05)
        return core.fired

    assert asyncio.run(main()) == []


class CountingCore(Core):
    """A ``Core`` that counts how often its deadline is asked for."""

    def __init__(self, deadlines: list[float]) -> None:
        super().__init__(deadlines)
        self.asked = 0

    def get_timer(self) -> float | None:
        self.asked += 1
        return super().get_timer()


def test_soon_asks_the_core_once_per_loop_iteration_and_still_fires() -> None:
    """Many ``soon`` calls in one iteration (the proxy's wakes for one datagram) cost one
    ``get_timer``; the deadline learnt that way fires, not early; a closed driver's
    queued ``soon`` does nothing."""

    async def main() -> tuple[CountingCore, int, list[float]]:
        core = CountingCore([])
        driver = Driver(log=logging.getLogger("test.driver"))
        driver.drive(core)
        core.asked = 0
        deadline = clock() + 0.02
        core.deadlines.append(deadline)
        for _ in range(5):
            driver.soon()
        assert core.asked == 0  # nothing asked yet: after the queued callbacks
        await asyncio.sleep(0)
        asked = core.asked
        await asyncio.sleep(0.1)
        closed = CountingCore([clock() + 0.01])
        other = Driver(closed)
        other.soon()
        other.close()
        await asyncio.sleep(0.05)
        assert closed.asked == 0 and closed.fired == []
        return core, asked, [deadline]

    core, asked, due = asyncio.run(main())
    assert asked == 1
    assert core.fired == due
    assert all(now >= due[0] for now in core.wakeups)
