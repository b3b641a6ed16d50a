"""The relay for real: UDP sockets on loopback (ports 41000-41999), in-process and workers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from ipaddress import ip_address, ip_network
from typing import TypeVar

import pytest

from rtc64.io.media_workers import WorkerPool
from rtc64.net.address import Family
from rtc64.relay.options import RelayOptions, RelaySettings
from rtc64.relay.service import RunningRelay, start_relay
from rtc64.sdp import parse

from .helpers import sdp

T = TypeVar("T")
L4 = ip_address("127.0.0.1")
L6 = ip_address("::1")
BASE = RelaySettings(addresses=(L4, L6), ports=(41000, 41999), learning_window=0.3)
DEFAULTS = RelayOptions()
TRUSTED = (ip_network("127.0.0.0/8"), ip_network("::1/128"))


def run(main: Callable[[], Awaitable[T]], *, uv: bool = False) -> T:
    factory = None
    if uv:
        uvloop = pytest.importorskip("uvloop")
        factory = uvloop.new_event_loop

    async def wrapper() -> T:
        return await main()

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(wrapper())


def udp(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.setblocking(False)
    return s


def rtp(seq: int, ts: int | None = None, ssrc: int = 0x1234) -> bytes:
    ts = 160 * seq if ts is None else ts
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts, ssrc) + b"\xd5" * 160


async def recv(s: socket.socket, timeout: float = 1.0) -> tuple[bytes, tuple[object, ...]] | None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            data, addr = s.recvfrom(4096)
        except BlockingIOError:
            await asyncio.sleep(0.005)
            continue
        return data, addr
    return None


async def drain(s: socket.socket) -> int:
    n = 0
    while await recv(s, 0.05) is not None:
        n += 1
    return n


class Party:
    def __init__(self, host: str) -> None:
        self.host = host
        self.sock = udp(host)
        self.rtcp = udp(host)
        self.port = self.sock.getsockname()[1]

    def sdp(self, host: str | None = None, extra: str = "") -> bytes:
        rtcp_port = self.rtcp.getsockname()[1]
        return sdp(host or self.host, self.port, media_extra=f"a=rtcp:{rtcp_port}\r\n{extra}")

    def close(self) -> None:
        self.sock.close()
        self.rtcp.close()


def target(sd: bytes) -> tuple[str, int]:
    d = parse(sd)
    assert d.connection is not None
    return (str(d.connection.address), d.media[0].port)


async def setup(
    relay: RunningRelay,
    caller: Party,
    callee: Party,
    *,
    cid: bytes = b"call",
    caller_sdp: bytes | None = None,
    to_family: Family = Family.INET,
    options: RelayOptions = DEFAULTS,
) -> tuple[tuple[str, int], tuple[str, int]]:
    """Offer/answer; returns (A-facing, B-facing) relay addresses."""
    offer = relay.offer(
        cid,
        b"A",
        caller_sdp or caller.sdp(),
        to_family=to_family,
        from_source=ip_address(caller.host),
        options=options,
    )
    answer = relay.answer(
        cid,
        b"A",
        b"B",
        callee.sdp(),
        to_family=Family.INET6 if ":" in caller.host else Family.INET,
        from_source=ip_address(callee.host),
        options=options,
    )
    await asyncio.sleep(0.02)  # datagram endpoints start
    return target(answer), target(offer)


def test_ipv6_caller_reaches_ipv4_callee_and_back() -> None:
    for uv in (False, True):

        async def main() -> None:
            relay = start_relay(BASE)
            caller, callee = Party("::1"), Party("127.0.0.1")
            try:
                offer = relay.offer(b"c", b"A", caller.sdp(), to_family=Family.INET, from_source=L6)
                assert b"IP6" not in offer and b"::1" not in offer
                answer = relay.answer(
                    b"c", b"A", b"B", callee.sdp(), to_family=Family.INET6, from_source=L4
                )
                assert b"IP4" not in answer and b"127.0.0.1" not in answer
                a_side, b_side = target(answer), target(offer)
                await asyncio.sleep(0.02)
                for seq in range(5):
                    caller.sock.sendto(rtp(seq), a_side)
                    got = await recv(callee.sock)
                    assert got is not None and got[0] == rtp(seq)
                    assert got[1][:2] == b_side  # from the B-facing port
                    callee.sock.sendto(rtp(100 + seq), b_side)
                    back = await recv(caller.sock)
                    assert back is not None and back[0] == rtp(100 + seq)
                    assert back[1][:2] == a_side
                # RTCP on the odd ports, both ways
                caller.rtcp.sendto(b"\x80\xc9\x00\x01\x00\x00\x12\x34", (a_side[0], a_side[1] + 1))
                got = await recv(callee.rtcp)
                assert got is not None and got[1][:2] == (b_side[0], b_side[1] + 1)
                stats = relay.query(b"c")
                assert stats is not None
                a = stats.leg(b"A")
                assert a is not None and a.packets == 5 and a.forwarded == 5
                assert a.latched == (L6, caller.port)
                assert a.reception is not None and a.reception.lost == 0
                final = relay.delete(b"c")
                assert final is not None and final.packets >= 11
            finally:
                relay.close()
                caller.close()
                callee.close()

        run(main, uv=uv)


def test_rtp_bleed_foreign_source_dropped_during_and_after_window() -> None:
    async def main() -> None:
        relay = start_relay(replace(BASE, trusted_networks=TRUSTED))
        caller, callee = Party("127.0.0.1"), Party("127.0.0.1")
        foreign = udp("127.0.0.2")
        try:
            a_side, _ = await setup(relay, caller, callee)
            foreign.sendto(rtp(1), a_side)  # during the window, before the caller
            assert await recv(callee.sock, 0.2) is None
            caller.sock.sendto(rtp(2), a_side)
            assert (await recv(callee.sock)) is not None
            await asyncio.sleep(0.35)  # window over
            foreign.sendto(rtp(3), a_side)
            assert await recv(callee.sock, 0.2) is None
            stats = relay.query(b"call")
            assert stats is not None
            leg = stats.leg(b"A")
            assert leg is not None and leg.dropped == 2 and leg.latched == (L4, caller.port)
        finally:
            relay.close()
            for p in (caller, callee):
                p.close()
            foreign.close()

    run(main)


def test_clat_address_latches_first_packet_from_anywhere() -> None:
    async def main() -> None:
        relay = start_relay(replace(BASE, trusted_networks=TRUSTED))
        caller, callee = Party("127.0.0.1"), Party("127.0.0.1")
        try:
            a_side, b_side = await setup(relay, caller, callee, caller_sdp=caller.sdp("192.0.0.2"))
            caller.sock.sendto(rtp(1), a_side)
            assert (await recv(callee.sock)) is not None
            callee.sock.sendto(rtp(2), b_side)
            back = await recv(caller.sock)  # sent to the learned source, not 192.0.0.2
            assert back is not None and back[1][:2] == a_side
            leg = relay.query(b"call").leg(b"A")  # type: ignore[union-attr]
            assert leg is not None and leg.latched == (L4, caller.port)
        finally:
            relay.close()
            caller.close()
            callee.close()

    run(main)


def test_strict_source_after_latching() -> None:
    for strict in (True, False):

        async def main(strict: bool = strict) -> None:
            relay = start_relay(replace(BASE, strict_source=strict))
            caller, callee = Party("127.0.0.1"), Party("127.0.0.1")
            other = udp("127.0.0.1")
            try:
                a_side, _ = await setup(relay, caller, callee)
                caller.sock.sendto(rtp(1), a_side)
                assert (await recv(callee.sock)) is not None
                await asyncio.sleep(0.35)
                other.sendto(rtp(2), a_side)
                got = await recv(callee.sock, 0.2)
                leg = relay.query(b"call").leg(b"A")  # type: ignore[union-attr]
                assert leg is not None
                if strict:
                    assert got is None and leg.dropped == 1
                else:  # untrusted (loopback) SDP address, not strict: forwarded
                    assert got is not None and leg.dropped == 0
                assert leg.latched == (L4, caller.port)  # no re-latch after the window
            finally:
                relay.close()
                caller.close()
                callee.close()
                other.close()

        run(main)


def test_loss_and_jitter_statistics_over_real_sockets() -> None:
    async def main() -> None:
        relay = start_relay(BASE)
        caller, callee = Party("::1"), Party("127.0.0.1")
        try:
            a_side, _ = await setup(relay, caller, callee)
            for seq in [*range(10), *range(13, 20)]:  # 10, 11, 12 never sent
                caller.sock.sendto(rtp(seq), a_side)
                await asyncio.sleep(0.002)
            assert await drain(callee.sock) == 17
            leg = relay.query(b"call").leg(b"A")  # type: ignore[union-attr]
            assert leg is not None and leg.reception is not None
            assert leg.reception.lost == 3
            assert leg.reception.extended_highest_sequence == 19
            assert leg.jitter_ms > 0  # 2 ms spacing against a 20 ms timestamp step
        finally:
            relay.close()
            caller.close()
            callee.close()

    run(main)


def test_reoffer_family_switch_keeps_audio() -> None:
    async def main() -> None:
        relay = start_relay(BASE)
        caller4, caller6, callee = Party("127.0.0.1"), Party("::1"), Party("127.0.0.1")
        try:
            a_side, b_side = await setup(relay, caller4, callee)
            caller4.sock.sendto(rtp(1), a_side)
            assert (await recv(callee.sock)) is not None
            # the caller moves to IPv6: re-INVITE, same tags
            offer = relay.offer(b"call", b"A", caller6.sdp(), to_family=Family.INET)
            assert target(offer) == b_side
            answer = relay.answer(b"call", b"A", b"B", callee.sdp(), to_family=Family.INET6)
            a6 = target(answer)
            assert a6[0] == "::1"
            await asyncio.sleep(0.02)
            caller6.sock.sendto(rtp(2), a6)
            got = await recv(callee.sock)
            assert got is not None and got[1][:2] == b_side
            callee.sock.sendto(rtp(3), b_side)
            back = await recv(caller6.sock)
            assert back is not None and back[1][:2] == a6
        finally:
            relay.close()
            for p in (caller4, caller6, callee):
                p.close()

    run(main)


def test_forked_early_media_reaches_caller_from_both_forks() -> None:
    async def main() -> None:
        relay = start_relay(BASE)
        caller, fork1, fork2 = Party("::1"), Party("127.0.0.1"), Party("127.0.0.1")
        try:
            offer = relay.offer(b"c", b"A", caller.sdp(), to_family=Family.INET)
            b_side = target(offer)
            relay.answer(b"c", b"A", b"F1", fork1.sdp(), to_family=Family.INET6)
            ans = relay.answer(b"c", b"A", b"F2", fork2.sdp(), to_family=Family.INET6)
            a_side = target(ans)
            await asyncio.sleep(0.02)
            fork1.sock.sendto(rtp(1, ssrc=1), b_side)
            fork2.sock.sendto(rtp(1, ssrc=2), b_side)
            got = [await recv(caller.sock), await recv(caller.sock)]
            assert all(g is not None for g in got)
            caller.sock.sendto(rtp(5), a_side)
            assert (await recv(fork2.sock)) is not None  # the latest answer
            assert await recv(fork1.sock, 0.1) is None
            stats = relay.query(b"c")
            assert stats is not None
            f1, f2 = stats.leg(b"F1"), stats.leg(b"F2")
            assert f1 is not None and f2 is not None
            assert f1.packets == 1 and f2.packets == 1
            assert f1.latched == (L4, fork1.port) and f2.latched == (L4, fork2.port)
        finally:
            relay.close()
            for p in (caller, fork1, fork2):
                p.close()

    run(main)


def test_real_media_timeout_and_hold_timeout() -> None:
    async def main() -> None:
        timed_out: list[bytes] = []
        settings = replace(BASE, timeout=0.3, hold_timeout=1.5)
        relay = start_relay(settings, on_timeout=timed_out.append)
        caller, callee = Party("127.0.0.1"), Party("127.0.0.1")
        try:
            a_side, _ = await setup(relay, caller, callee, cid=b"active")
            await setup(
                relay, caller, callee, cid=b"held", caller_sdp=caller.sdp(extra="a=inactive\r\n")
            )
            for seq in range(8):  # media keeps "active" alive past its timeout
                caller.sock.sendto(rtp(seq), a_side)
                await asyncio.sleep(0.06)
            assert timed_out == []
            await asyncio.sleep(0.5)
            assert timed_out == [b"active"]
            assert relay.calls() == [b"held"]
            await asyncio.sleep(0.8)
            assert timed_out == [b"active", b"held"]
            assert relay.calls() == [] and relay.pool.in_use == 0
        finally:
            relay.close()
            caller.close()
            callee.close()

    run(main)


def test_two_worker_processes_relay_for_real() -> None:
    async def main() -> None:
        settings = replace(BASE, workers=2, stats_interval=0.1)
        relay = start_relay(settings)
        parties = [Party("::1"), Party("127.0.0.1"), Party("::1"), Party("127.0.0.1")]
        try:
            sides = []
            for n in range(2):
                caller, callee = parties[2 * n], parties[2 * n + 1]
                sides.append(await setup(relay, caller, callee, cid=b"w%d" % n))
            workers = {relay.pool.worker_of(a[1]) for a, _ in sides}
            assert workers == {0, 1}  # one call per worker
            for n, (a_side, b_side) in enumerate(sides):
                caller, callee = parties[2 * n], parties[2 * n + 1]
                got = None
                for seq in range(40):  # the worker may still be starting up
                    caller.sock.sendto(rtp(seq), a_side)
                    got = await recv(callee.sock, 0.1)
                    if got is not None:
                        break
                assert got is not None and got[1][:2] == b_side
                callee.sock.sendto(rtp(1), b_side)
                back = await recv(caller.sock)
                assert back is not None and back[1][:2] == a_side
            await asyncio.sleep(0.3)
            stats = relay.query(b"w1")
            assert stats is not None
            b = stats.leg(b"B")
            assert b is not None and b.packets == 1 and b.latched is not None
        finally:
            relay.close()
            for p in parties:
                p.close()

    run(main)


def test_worker_crash_is_detected_and_the_worker_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        relay = start_relay(replace(BASE, workers=2, stats_interval=0.1))
        pool = relay.forwarder
        assert isinstance(pool, WorkerPool)
        try:
            pid = pool.pids()[1]
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                await asyncio.sleep(0.02)
                if pool.restarts:
                    break
            assert pool.restarts == 1
            assert pool.pids()[1] != pid
            # the restarted worker relays new calls
            caller, callee = Party("::1"), Party("127.0.0.1")
            try:
                sides = [await setup(relay, caller, callee, cid=b"w%d" % n) for n in range(2)]
                for a_side, _ in sides:
                    got = None
                    for seq in range(40):
                        caller.sock.sendto(rtp(seq), a_side)
                        got = await recv(callee.sock, 0.1)
                        if got is not None:
                            break
                    assert got is not None
            finally:
                caller.close()
                callee.close()
        finally:
            relay.close()

    with caplog.at_level(logging.ERROR):
        run(main)
    assert any("media worker 1 exited" in r.getMessage() for r in caplog.records)
