"""The retransmission cache and RFC 6062 connection state, with a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_address

from rtc64.net.endpoint import Transport
from rtc64.turn.cache import ResponseCache
from rtc64.turn.events import ClientFlow
from rtc64.turn.tcp import Connections, ConnState, PendingConnect

A = ClientFlow(Transport.UDP, (ip_address("192.0.2.1"), 1000), (ip_address("192.0.2.2"), 3478))
B = ClientFlow(Transport.UDP, (ip_address("192.0.2.1"), 1001), (ip_address("192.0.2.2"), 3478))
RELAY = (ip_address("192.0.2.2"), 50000)
PEER = (ip_address("198.51.100.1"), 80)


def test_cache_per_flow_and_40_s() -> None:
    cache = ResponseCache(10)
    cache.put(A, b"x" * 12, b"resp", 0.0)
    assert cache.get(A, b"x" * 12, 39.9) == b"resp"
    assert cache.get(B, b"x" * 12, 1.0) is None  # another 5-tuple never sees it
    assert cache.get(A, b"x" * 12, 40.0) is None
    assert cache.next_deadline() == 40.0
    cache.expire(40.0)
    assert len(cache) == 0
    assert cache.next_deadline() is None


def test_cache_is_bounded() -> None:
    cache = ResponseCache(3)
    for i in range(100):
        cache.put(A, i.to_bytes(12, "big"), b"r", float(i))
    assert len(cache) == 3
    assert cache.get(A, (99).to_bytes(12, "big"), 99.0) == b"r"
    assert cache.get(A, (0).to_bytes(12, "big"), 99.0) is None


def counter_random() -> Callable[[int], bytes]:
    values = iter([b"\0\0\0\0", b"\0\0\0\7", b"\0\0\0\7", b"\0\0\0\x08"])
    return lambda n: next(values)


def test_connection_ids_are_nonzero_and_unique() -> None:
    conns = Connections(counter_random())
    first = conns.open(A, RELAY, PEER, 0.0)
    second = conns.open(A, RELAY, (PEER[0], 81), 0.0)
    assert (first.id, second.id) == (7, 8)


def test_connection_lifecycle_and_timeouts() -> None:
    conns = Connections(lambda n: b"\x12\x34\x56\x78")
    pending = PendingConnect(A, b"t" * 12, None, False)
    conn = conns.open(A, RELAY, PEER, 0.0, pending)
    assert conn.state is ConnState.CONNECTING and conns.exists(RELAY, PEER)
    assert conns.next_deadline() == 30.0
    conns.connected(conn, 10.0)
    assert conn.state is ConnState.WAITING_BIND and conn.until == 40.0
    assert conns.expired(39.0) == []
    conns.bound(conn)
    assert conns.next_deadline() is None
    assert conns.expired(1e9) == []
    assert conns.remove(conn.id) is conn
    assert not conns.exists(RELAY, PEER)


def test_unbound_connection_expires() -> None:
    conns = Connections(lambda n: b"\0\0\1\0")
    conn = conns.open(A, RELAY, PEER, 0.0)
    assert conns.expired(30.0) == [conn]
    assert len(conns) == 0
