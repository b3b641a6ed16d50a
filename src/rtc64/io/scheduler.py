"""Background tasks and load signals for the services, on the running event loop.

``Spawner`` starts coroutines as tasks, keeps a reference until they finish (asyncio
only holds weak ones) and logs any exception instead of losing it. ``LagMonitor`` and
``SelfPing`` measure how late the loop runs and how long datagrams wait in the receive
queue. Cores' timers are run by ``io.driver.Driver``; their ``now`` is ``io.driver.clock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import socket
import time
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from rtc64.net.address import format_hostport, parse_ip


class Spawner:
    """Start coroutines as tasks, keep them referenced, log their failures."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._tasks: set[asyncio.Task[Any]] = set()

    def __call__(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def eager(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` now, in the caller, up to its first suspension; if it suspends, a
        task runs the rest (as ``__call__``). Its failure is logged either way. The caller
        must expect ``coro`` to have run (or begun) when this returns."""
        try:
            waited = coro.send(None)
        except StopIteration:
            return
        except Exception:
            self._log.error("background task failed", exc_info=True)
            return
        self(_rest(coro, waited))

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("background task failed", exc_info=task.exception())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def every(self, seconds: float, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``job`` every ``seconds`` until closed."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await job()
                except Exception:
                    self._log.exception("periodic job failed")

        self(loop())


class _Resumed:
    """The rest of a coroutine that already yielded ``first``: ``yield from`` it, with
    every value sent and exception thrown in passed on (a task cancelled while it waits
    cancels the coroutine, as if the task had run it from the start)."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, None], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, None]:
        out, self.first = self.first, None
        while True:
            try:
                sent = yield out
            except BaseException as exc:  # handed to the coroutine
                try:
                    out = self.coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    out = self.coro.send(sent)
                except StopIteration:
                    return


async def _rest(coro: Coroutine[Any, Any, None], first: Any) -> None:
    await _Resumed(coro, first)


Sample = Callable[[float, float], None]
"""``(now, delay)``: one sample of the queueing delay, in seconds."""


class LagMonitor:
    """How late the event loop runs its callbacks, and how long the receive queues make
    new messages wait: the overload signals of the gateway.

    A callback is scheduled every ``interval`` seconds; the delay between when it was due
    and when it ran is smoothed (EWMA) into ``lag``. A loop that keeps up shows
    microseconds; one that is saturated shows the queueing delay every message suffers
    once its own callbacks queue up. The backlog in the kernel's socket buffers shows
    earlier in the ``pings`` (``SelfPing``): each tick hands ``on_sample`` the larger of
    this tick's lag and the pings' delay.
    """

    def __init__(
        self,
        interval: float = 0.05,
        alpha: float = 0.3,
        *,
        on_sample: Sample | None = None,
        pings: list[SelfPing] | None = None,
    ) -> None:
        self.interval = interval
        self.alpha = alpha
        self.lag = 0.0
        self.late = 0.0
        """How late the latest tick ran (seconds)."""
        self.cpu_gap = 0.0
        """CPU time this thread used between the two latest ticks: a late tick with little
        CPU between means the process waited for a core (a shared machine), not for its
        own work."""
        self._cpu = time.thread_time()
        self.share = 0.0
        """The share of a core the loop's thread used lately (CPU between ticks / time
        between ticks, smoothed like ``lag``): how busy this process is."""
        self.on_share: Callable[[float], None] | None = None
        """Told ``share`` at every tick (SIP workers publish it: ``sip.spread``)."""
        self.on_sample = on_sample
        self.pings = pings if pings is not None else []
        self._loop = asyncio.get_running_loop()
        self._due = self._loop.time() + interval
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        late = max(0.0, now - self._due)
        cpu = time.thread_time()
        self.late, self.cpu_gap, self._cpu = late, cpu - self._cpu, cpu
        self.lag += self.alpha * (late - self.lag)
        elapsed = now - self._due + self.interval
        if elapsed > 0:
            self.share += self.alpha * (min(1.0, self.cpu_gap / elapsed) - self.share)
        self._due = now + self.interval
        self._handle = self._loop.call_at(self._due, self._tick)
        delay = late
        for ping in self.pings:
            delay = max(delay, ping.tick(now))
        if self.on_sample is not None:
            self.on_sample(now, delay)
        if self.on_share is not None:
            self.on_share(self.share)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for ping in self.pings:
            ping.close()


_CALL_ID = re.compile(rb"\r\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)


class SelfPing(asyncio.DatagramProtocol):
    """How long a datagram waits in one UDP listener's receive queue before the gateway
    answers it: an OPTIONS to the gateway itself (``Max-Forwards: 0``, never forwarded)
    every ``every`` seconds from a socket connected to the listener.

    ``tick(now)`` sends when due and returns the current delay: the round trip of the
    latest answer, or the age of the oldest ping still unanswered if larger (the queue
    is at least that long now). Pings older than an answered one were lost (a full
    queue drops them; the kernel's FIFO order answers the rest in order) and are
    forgotten. A listener that has not answered for ``silent_after`` seconds (nothing
    ever answered, a policy drops loopback OPTIONS...) contributes nothing: a broken
    ping must never shed the gateway's traffic. Replies come only from the listener
    (connected socket) and must carry this ping's random token.
    """

    def __init__(self, target: tuple[str, int], every: float = 0.1, silent_after: float = 5.0):
        self.target = target
        self.every = every
        self.silent_after = silent_after
        self.sent = 0
        self.answered = 0
        self._token = secrets.token_hex(8)
        self._seq = 0
        self._outstanding: dict[int, float] = {}
        self._next = 0.0
        self._last_answer: float | None = None
        self._last_delay = 0.0
        self._transport: asyncio.DatagramTransport | None = None
        self._template = b""
        self._loop = asyncio.get_running_loop()

    async def start(self) -> None:
        host, port = self.target
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: self, remote_addr=(host, port), family=family
        )
        self._transport = transport
        lhost, lport = self._transport.get_extra_info("sockname")[:2]
        local = format_hostport(parse_ip(lhost), lport)
        uri = format_hostport(parse_ip(host), port)
        self._template = (
            f"OPTIONS sip:{uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local};branch=z9hG4bK-ping-{self._token}-%d;rport\r\n"
            "Max-Forwards: 0\r\n"
            f"From: <sip:ping@{local}>;tag={self._token}\r\n"
            f"To: <sip:{uri}>\r\n"
            f"Call-ID: {self._token}-%d\r\n"
            "CSeq: %d OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode("ascii")

    def tick(self, now: float) -> float:
        """Send a ping when due; the delay now seen through this listener (seconds)."""
        if self._transport is not None and now >= self._next:
            self._next = now + self.every
            self._seq += 1
            seq = self._seq
            self._outstanding[seq] = now
            self.sent += 1
            with contextlib.suppress(OSError):
                self._transport.sendto(self._template % (seq, seq, seq))
        outstanding = self._outstanding
        while outstanding:  # forget pings too old to be answered (bounded table)
            seq, sent = next(iter(outstanding.items()))
            if now - sent <= self.silent_after:
                break
            del outstanding[seq]
        last = self._last_answer
        if last is None or now - last > self.silent_after:
            return 0.0
        oldest = next(iter(outstanding.values()), now)
        return max(self._last_delay, now - oldest)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        m = _CALL_ID.search(data)
        if m is None:
            return
        token, _, seq_text = m.group(1).strip().partition(b"-")
        if token != self._token.encode("ascii") or not seq_text.isdigit():
            return
        seq = int(seq_text)
        sent = self._outstanding.pop(seq, None)
        if sent is None:
            return
        now = self._loop.time()
        for older in [s for s in self._outstanding if s < seq]:
            del self._outstanding[older]
        self.answered += 1
        self._last_answer = now
        self._last_delay = now - sent

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable: the listener is gone; ``silent_after`` handles it

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
