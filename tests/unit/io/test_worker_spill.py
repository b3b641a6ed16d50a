"""``sip.spread = "busy"``: a trusted source's new calls stay on the worker the kernel
picked unless it is busier than another (io.worker_owners ``spill``, io.worker_link LOAD,
io.scheduler ``LagMonitor.share``)."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import pytest

from rtc64.io import worker_owners
from rtc64.io.scheduler import LagMonitor
from rtc64.io.worker_conns import SentFor
from rtc64.io.worker_link import _HEAD, LOAD, LOAD_FRESH
from rtc64.io.worker_owners import Owners, aor_owner
from rtc64.net.endpoint import Flow, Transport
from rtc64.sip.framing import parse_datagram
from tests.unit.io.test_worker_link import FakeLayer, _until, two_links
from tests.unit.io.test_worker_spread import PHONE, PRIVATE, SHARED, TRUNK, invite


def call_ids(owner: int, count: int) -> list[bytes]:
    """``count`` Call-IDs that CRC-32 puts on ``owner`` of two workers."""
    found = [b"c%d@x" % n for n in range(200)]
    return [c for c in found if worker_owners.call_id_owner(c, 2) == owner][:count]


class Busy:
    """What ``spill`` answers, switched by the test."""

    def __init__(self) -> None:
        self.now = False

    def __call__(self) -> bool:
        return self.now


def owners(busy: Busy, index: int = 0) -> Owners:
    found = Owners(index, 2, PRIVATE, SentFor())
    found.spread = lambda source: source == TRUNK[0]
    found.spill = busy
    return found


def decide(o: Owners, data: bytes, source: tuple = TRUNK) -> tuple[int | None, int | None]:  # type: ignore[type-arg]
    """(raw_owner, the parsed rules' owner) for ``data`` from ``source`` on the shared port."""
    flow = Flow(Transport.UDP, SHARED, source)
    return o.raw_owner(data, flow), o.of(parse_datagram(data), flow)


def cancel(call_id: bytes) -> bytes:
    return (
        invite(call_id)
        .replace(b"INVITE sip:", b"CANCEL sip:")
        .replace(b"CSeq: 1 INVITE", b"CSeq: 1 CANCEL")
    )


def test_a_new_call_stays_here_while_this_worker_is_not_busy() -> None:
    busy = Busy()
    o = owners(busy)
    elsewhere, other = call_ids(1, 2)  # the hash names worker 1
    assert decide(o, invite(elsewhere)) == (None, 0), "kept: no crossing"
    busy.now = True  # the worker got busy: the call's CANCEL and retransmissions stay
    assert decide(o, cancel(elsewhere)) == (None, 0)
    assert decide(o, invite(elsewhere)) == (None, 0)
    # a new call while busy goes where its Call-ID names, and stays there once idle
    assert decide(o, invite(other)) == (1, 1)
    busy.now = False
    assert decide(o, cancel(other)) == (1, 1), "the CANCEL follows its INVITE"
    # a Call-ID the hash puts here stays here either way
    (here,) = call_ids(0, 1)
    busy.now = True
    assert decide(o, invite(here)) == (None, 0)


def test_untrusted_sources_register_and_routes_are_not_placed() -> None:
    busy = Busy()
    o = owners(busy)
    (elsewhere,) = call_ids(1, 1)
    assert decide(o, invite(elsewhere), PHONE) == (None, None), "untrusted: never spread"
    register = (
        b"REGISTER sip:example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-r\r\n"
        b"From: <sip:alice@example.net>;tag=1\r\nTo: <sip:alice@example.net>\r\n"
        b"Call-ID: " + elsewhere + b"\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
    )
    keeper = aor_owner(b"<sip:alice@example.net>", 2)
    assert keeper is not None
    raw, parsed = decide(o, register)
    assert parsed == keeper and raw == (None if keeper == 0 else keeper), "by AOR, idle or not"
    # a Route naming worker 1's own port decides, whatever the load
    routed = invite(call_ids(0, 1)[0], b"Route: <sip:192.0.2.1:41001;lr>\r\n")
    assert decide(o, routed) == (1, 1)
    assert len(o._placed) == 0


def test_the_memory_is_bounded_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_owners, "PLACED", 3)
    busy = Busy()
    o = owners(busy)
    first, *later = call_ids(1, 4)
    decide(o, invite(first))  # kept here
    for call_id in later:
        decide(o, invite(call_id))
    assert len(o._placed) == 3
    busy.now = True  # forgotten: decided again, by the hash now
    assert decide(o, cancel(first)) == (1, 1)


def test_without_spill_every_new_call_goes_where_its_call_id_names() -> None:
    o = owners(Busy())
    o.spill = None  # sip.spread = "always"
    assert decide(o, invite(call_ids(1, 1)[0])) == (1, 1)
    assert decide(o, invite(call_ids(0, 1)[0])) == (None, 0)


def test_workers_hear_each_others_load_and_spill_only_to_a_less_busy_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        with two_links(tmp_path, PRIVATE) as links:
            for link in links:
                link.attach(FakeLayer(), lambda m, f: None)  # type: ignore[arg-type]
            zero, one = links
            assert not zero.spill_wanted(), "idle, nothing heard"
            zero.publish_load(0.9)
            assert not zero.spill_wanted(), "busy, but nobody known to take more"
            one.publish_load(0.2)
            await _until(zero.spill_wanted)
            one.publish_load(0.8)  # as busy (within the margin): keep the calls
            await _until(lambda: not zero.spill_wanted())
            one.publish_load(0.1)
            await _until(zero.spill_wanted)
            zero.publish_load(0.4)  # not busy itself
            assert not zero.spill_wanted()
            zero.publish_load(0.9)
            assert zero.spill_wanted()
            # a worker not heard from lately takes nothing
            later = time.monotonic() + LOAD_FRESH + 1
            monkeypatch.setattr(time, "monotonic", lambda: later)
            assert not zero.spill_wanted()
            monkeypatch.undo()
            # malformed reports are dropped and counted; the last good one stands
            out = one._channel.ends[0]
            assert out is not None
            dropped = zero.dropped
            for junk in (
                _HEAD.pack(LOAD, 1, 0, 0) + b"\x40\x00\x00\x00",  # 2.0: more than a core
                _HEAD.pack(LOAD, 1, 0, 0) + b"\x7f\xc0\x00\x00",  # NaN
                _HEAD.pack(LOAD, 0, 0, 0) + b"\x00\x00\x00\x00",  # in worker 0's own name
                _HEAD.pack(LOAD, 1, 0, 0) + b"\x00",  # cut short
            ):
                out.send(junk)
            await _until(lambda: zero.dropped == dropped + 4)
            assert zero.spill_wanted()

    asyncio.run(main())


def test_a_reported_load_is_not_repeated_until_it_moves_or_ages(tmp_path: Path) -> None:
    async def main() -> None:
        with two_links(tmp_path, PRIVATE) as links:
            heard: list[float] = []
            for link in links:
                link.attach(FakeLayer(), lambda m, f: None)  # type: ignore[arg-type]
            original = links[1]._handle

            def spy(data: bytes) -> None:
                if data[:1] == LOAD:
                    heard.append(round(_load(data), 2))
                original(data)

            links[1]._handle = spy  # type: ignore[method-assign]
            for share in (0.5, 0.51, 0.52, 0.6, 0.61):
                links[0].publish_load(share)
            await _until(lambda: len(heard) >= 2)
            await asyncio.sleep(0.05)
            assert heard == [0.5, 0.6]

    asyncio.run(main())


def _load(data: bytes) -> float:
    import struct  # noqa: PLC0415

    return float(struct.unpack_from("!f", data, _HEAD.size)[0])


class FakeLoop:
    def __init__(self) -> None:
        self.now = 100.0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: object) -> None:
        return None


def test_the_lag_monitor_smooths_the_share_of_a_core_its_thread_uses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CPU between ticks over time between ticks, smoothed; told to ``on_share``."""
    cpu = [0.0]
    monkeypatch.setattr(time, "thread_time", lambda: cpu[0])

    async def main() -> tuple[list[float], LagMonitor]:
        monitor = LagMonitor(interval=0.05)
        monitor.close()
        loop = FakeLoop()
        monitor._loop = loop  # type: ignore[assignment]
        monitor._due = loop.now + 0.05
        told: list[float] = []
        monitor.on_share = told.append
        for _ in range(40):  # a busy thread: 40 ms of CPU in every 50 ms
            loop.now += 0.05
            cpu[0] += 0.04
            monitor._tick()
        return told, monitor

    told, monitor = asyncio.run(main())
    assert math.isclose(monitor.share, 0.8, abs_tol=0.01) and told[-1] == monitor.share
    assert told[0] < told[-1], "smoothed: it rises over several ticks"
