"""Loop helpers: the lag monitor sees a blocked loop, deadlines fire and move."""

from __future__ import annotations

import asyncio
import time

from rtc64.io.scheduler import LagMonitor, SelfPing


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
