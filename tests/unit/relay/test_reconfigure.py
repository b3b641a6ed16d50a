"""A reload of the relay: new addresses, ports and timeouts for new calls; calls in
progress keep theirs and their ports are never handed out twice."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address

import pytest

from rtc64.errors import LocalProtocolError
from rtc64.net.address import Family
from rtc64.relay.engine import MediaRelay
from rtc64.relay.options import RelaySettings
from rtc64.relay.ports import PortPool, RelayUnavailableError
from rtc64.sdp import parse

from .helpers import V4, V6, Clock, FakeForwarder, sdp

OTHER6 = ip_address("2001:db8::2")
CALLER6 = "2001:db8:1::10"
CALLEE4 = "203.0.113.20"


def _call(relay: MediaRelay, cid: bytes) -> tuple[int, int]:
    """A call from an IPv6 caller to an IPv4 callee: (port offered to the callee, port
    answered to the caller)."""
    offer = relay.offer(cid, b"A", sdp(CALLER6), to_family=Family.INET)
    answer = relay.answer(cid, b"A", b"B", sdp(CALLEE4, 6000), to_family=Family.INET6)
    return parse(offer).media[0].port, parse(answer).media[0].port


def test_pairs_in_use_are_kept_out_of_the_new_range() -> None:
    pool = PortPool([V4], 30000, 30010)
    held = [pool.allocate(V4) for _ in range(3)]  # 30000, 30002, 30004
    pool.reconfigure([V4, V6], 30002, 30020)
    given = {pool.allocate(V4).port for _ in range(pool.free(V4))}
    assert given.isdisjoint({p.port for p in held})
    assert given == set(range(30006, 30020, 2))
    with pytest.raises(RelayUnavailableError):
        pool.allocate(V4)
    for pair in held:  # 30000 left the range: gone; the others come back
        pool.release(pair)
    assert pool.free(V4) == 2 and pool.allocate(V4).port in (30002, 30004)
    assert pool.allocate(V6).port == 30002


def test_a_pair_of_a_removed_address_is_dropped_when_released() -> None:
    pool = PortPool([V4, V6], 30000, 30010)
    pair = pool.allocate(V6)
    pool.reconfigure([V4, OTHER6], 30000, 30010)
    pool.release(pair)
    assert pool.free(V6) == 0 and pool.in_use == 0
    assert pool.addresses(Family.INET6) == (OTHER6,)


def test_a_bad_range_changes_nothing() -> None:
    pool = PortPool([V4], 30000, 30010, workers=2)
    pair = pool.allocate(V4, 1)
    with pytest.raises(LocalProtocolError):
        pool.reconfigure([V4], 30000, 30001)
    assert pool.high == 30010 and pool.in_use == 1
    pool.release(pair)
    assert pool.free(V4) == 5


def test_relay_reload_new_calls_get_new_ports_calls_in_progress_keep_theirs() -> None:
    settings = RelaySettings(addresses=(V4, V6), ports=(30000, 30099), timeout=60.0)
    fwd, clock, ended = FakeForwarder(), Clock(), []
    relay = MediaRelay(settings, fwd, clock=clock, on_timeout=ended.append)
    before = _call(relay, b"old")
    relay.reconfigure(replace(settings, addresses=(V4, OTHER6), ports=(40000, 40099), timeout=5.0))
    # the call in progress: a re-offer keeps its ports (and its IPv6 address)
    again = relay.offer(b"old", b"A", sdp(CALLER6), to_family=Family.INET)
    assert parse(again).media[0].port == before[0]
    back = relay.offer(b"old", b"B", sdp(CALLEE4, 6000), to_family=Family.INET6)
    assert parse(back).media[0].port == before[1]
    assert parse(back).connection.address == V6  # type: ignore[union-attr]
    # a new call: the new range and the new IPv6 address
    offer = relay.offer(b"new", b"A", sdp(CALLER6), to_family=Family.INET)
    answer = relay.answer(b"new", b"A", b"B", sdp(CALLEE4, 6000), to_family=Family.INET6)
    assert 40000 <= parse(offer).media[0].port < 40100
    assert parse(answer).connection.address == OTHER6  # type: ignore[union-attr]
    # the new timeout applies to the calls' next deadlines
    relay.answer(b"old", b"A", b"B", sdp(CALLEE4, 6000), to_family=Family.INET6)
    clock.now += 6.0
    relay.handle_timer(clock.now)
    assert sorted(ended) == [b"new", b"old"]
    with pytest.raises(LocalProtocolError):
        relay.reconfigure(replace(settings, workers=2))


def test_the_pair_of_an_old_call_is_not_given_to_a_new_one() -> None:
    settings = RelaySettings(addresses=(V4, V6), ports=(30000, 30003))  # one pair each
    relay = MediaRelay(settings, FakeForwarder(), clock=Clock())
    _call(relay, b"old")
    relay.reconfigure(replace(settings, ports=(30000, 30007)))
    offer = relay.offer(b"new", b"A", sdp(CALLER6), to_family=Family.INET)
    assert parse(offer).media[0].port == 30002
    relay.delete(b"old")
    assert relay.pool.free(V4) == 3  # 30000 back, 30004 and 30006 unused; 30002 in use
