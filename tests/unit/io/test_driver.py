"""The io driver: one loop timer follows a core's earliest deadline."""

from __future__ import annotations

import asyncio
import logging

import pytest

from rtc64.io.driver import Driver, clock


class Core:
    """A core with a list of deadlines; records when it fired."""

    def __init__(self, deadlines: list[float]) -> None:
        self.deadlines = sorted(deadlines)
        self.fired: list[float] = []
        self.fail = False

    def get_timer(self) -> float | None:
        return self.deadlines[0] if self.deadlines else None

    def handle_timer(self, now: float) -> None:
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
