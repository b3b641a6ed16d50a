"""Loop helpers: the lag monitor sees a blocked loop, deadlines fire and move."""

from __future__ import annotations

import asyncio
import time

from rtc64.io.scheduler import Deadline, LagMonitor


def test_lag_monitor_reports_a_blocked_loop_and_recovers() -> None:
    async def main() -> tuple[float, float]:
        monitor = LagMonitor(interval=0.01, alpha=1.0)
        await asyncio.sleep(0.05)
        time.sleep(0.2)  # the loop is stuck: callbacks run late
        await asyncio.sleep(0.001)  # the overdue tick runs; the next is 10 ms away
        blocked = monitor.lag
        await asyncio.sleep(0.1)
        recovered = monitor.lag
        monitor.close()
        return blocked, recovered

    blocked, recovered = asyncio.run(main())
    assert blocked > 0.1
    assert recovered < 0.05


def test_deadline_fires_once_and_can_be_moved_or_cancelled() -> None:
    async def main() -> list[str]:
        fired: list[str] = []
        loop = asyncio.get_running_loop()
        deadline = Deadline(lambda: fired.append("x"))
        deadline.schedule(loop.time() + 0.5)
        deadline.schedule(loop.time() + 0.01)  # moved earlier
        await asyncio.sleep(0.05)
        deadline.schedule(loop.time() + 0.01)
        deadline.schedule(None)  # cancelled
        await asyncio.sleep(0.05)
        return fired

    assert asyncio.run(main()) == ["x"]
