"""Loop helpers: the lag monitor sees a blocked loop, deadlines fire and move."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from rtc64.io.scheduler import LagMonitor, SelfPing, Spawner


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


def test_lag_monitor_tells_own_work_from_waiting() -> None:
    """A tick late because the loop computed shows that CPU; one late because the
    process did not run (here: slept) shows almost none."""

    async def late_by(block: object) -> tuple[float, float]:
        monitor = LagMonitor(interval=0.01, alpha=1.0)
        await asyncio.sleep(0.03)
        assert callable(block)
        block()
        await asyncio.sleep(0.001)
        monitor.close()
        return monitor.late, monitor.cpu_gap

    def compute() -> None:
        start = time.thread_time()
        while time.thread_time() - start < 0.2:
            pass

    late, cpu = asyncio.run(late_by(compute))
    assert late >= 0.15 and cpu >= 0.2
    late, cpu = asyncio.run(late_by(lambda: time.sleep(0.2)))
    assert late >= 0.15 and cpu < 0.1


class _Listener(asyncio.DatagramProtocol):
    """Stands in for a SIP UDP listener: answers each OPTIONS after ``delay`` seconds."""

    def __init__(self, delay: float, token: bytes | None = None) -> None:
        self.delay = delay
        self.token = token
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        call_id = next(line for line in data.split(b"\r\n") if line.startswith(b"Call-ID:"))
        if self.token is not None:  # a forger who does not know the token
            call_id = b"Call-ID: " + self.token + b"-" + call_id.rpartition(b"-")[2]
        reply = b"SIP/2.0 200 OK\r\n" + call_id + b"\r\nContent-Length: 0\r\n\r\n"
        loop = asyncio.get_running_loop()
        assert self.transport is not None
        loop.call_later(self.delay, self.transport.sendto, reply, addr)


async def _pinged(listener: _Listener, seconds: float) -> tuple[list[float], SelfPing]:
    loop = asyncio.get_running_loop()
    server, _ = await loop.create_datagram_endpoint(lambda: listener, local_addr=("127.0.0.1", 0))
    port = server.get_extra_info("sockname")[1]
    ping = SelfPing(("127.0.0.1", port), every=0.02)
    await ping.start()
    samples: list[float] = []
    monitor = LagMonitor(interval=0.02, on_sample=lambda _now, d: samples.append(d), pings=[ping])
    await asyncio.sleep(seconds)
    monitor.close()
    server.close()
    return samples, ping


def test_self_ping_measures_the_queueing_delay_of_the_listener() -> None:
    samples, ping = asyncio.run(_pinged(_Listener(0.15), 0.6))
    assert ping.answered > 0
    assert max(samples[-5:]) >= 0.12, samples  # the listener answers 150 ms late


def test_self_ping_of_a_prompt_listener_shows_no_delay() -> None:
    samples, ping = asyncio.run(_pinged(_Listener(0.0), 0.4))
    assert ping.answered > 5
    assert max(samples[-5:]) < 0.1, samples


def test_self_ping_ignores_forged_replies_and_silent_listeners() -> None:
    samples, ping = asyncio.run(_pinged(_Listener(0.0, token=b"0123456789abcdef"), 0.4))
    assert ping.answered == 0 and ping.sent > 5
    assert max(samples) < 0.1, "a ping never answered never reads as overload"


def test_eager_spawn_runs_work_that_never_waits_without_a_task() -> None:
    ran: list[str] = []

    async def work() -> None:
        ran.append("done")

    async def main() -> tuple[list[str], int]:
        spawner = Spawner(logging.getLogger("test"))
        before = len(asyncio.all_tasks())
        spawner.eager(work())
        seen = list(ran)  # before any task could have run
        return seen, len(asyncio.all_tasks()) - before

    seen, new_tasks = asyncio.run(main())
    assert seen == ["done"]
    assert new_tasks == 0


def test_eager_spawn_hands_the_rest_to_a_task_with_results_and_errors() -> None:
    """The part before the first await runs at once; the awaited future's result and
    then its exception reach the coroutine as if a task had run it all along."""
    steps: list[object] = []

    async def work(first: asyncio.Future[int], second: asyncio.Future[int]) -> None:
        steps.append("start")
        steps.append(await first)
        try:
            await second
        except ValueError as exc:
            steps.append(f"caught {exc}")
        await asyncio.sleep(0)  # a bare yield to the loop
        steps.append("end")

    async def main() -> list[object]:
        spawner = Spawner(logging.getLogger("test"))
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        spawner.eager(work(first, second))
        assert steps == ["start"]
        first.set_result(7)
        await asyncio.sleep(0)
        second.set_exception(ValueError("boom"))
        for _ in range(5):
            await asyncio.sleep(0)
        return steps

    assert asyncio.run(main()) == ["start", 7, "caught boom", "end"]


def test_eager_spawn_logs_failures_before_and_after_waiting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails_at_once() -> None:
        raise RuntimeError("at once")

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("later")

    async def main() -> None:
        spawner = Spawner(logging.getLogger("test.eager"))
        spawner.eager(fails_at_once())  # does not raise into the caller
        spawner.eager(fails_later())
        for _ in range(3):
            await asyncio.sleep(0)

    with caplog.at_level(logging.ERROR, logger="test.eager"):
        asyncio.run(main())
    errors = [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    assert errors == ["at once", "later"]


def test_eager_spawn_close_cancels_a_waiting_coroutine() -> None:
    steps: list[str] = []

    async def work(never: asyncio.Future[None]) -> None:
        try:
            await never
        except asyncio.CancelledError:
            steps.append("cancelled")
            raise
        finally:
            steps.append("finally")

    async def main() -> None:
        spawner = Spawner(logging.getLogger("test"))
        spawner.eager(work(asyncio.get_running_loop().create_future()))
        await asyncio.sleep(0)
        await spawner.close()

    asyncio.run(main())
    assert steps == ["cancelled", "finally"]
