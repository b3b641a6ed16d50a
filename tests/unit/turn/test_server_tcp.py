"""RFC 6062 TCP allocations: Connect, ConnectionBind, ConnectionAttempt, 30 s deadlines."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from rtc64.net.endpoint import Transport
from rtc64.stun.attributes import (
    CONNECTION_ID,
    LIFETIME,
    REQUESTED_TRANSPORT,
    XOR_PEER_ADDRESS,
)
from rtc64.stun.message import Class, Message, Method, decode
from rtc64.turn.events import CloseConnection, ConnectPeer, RelayClosed, SpliceData, ToClient
from tests.unit.turn.helpers import PEER4, RELAY4, Client, Harness, code

TCP = REQUESTED_TRANSPORT(6)
R4 = (RELAY4, 50000)


def control(h: Harness, user: str = "alice") -> Client:
    c = Client(h, h.flow(transport=Transport.TCP, connection=1), user)
    assert c.send(Method.ALLOCATE, TCP).cls is Class.SUCCESS
    return c


def reply_of(events: list[object]) -> Message:
    (event,) = [e for e in events if isinstance(e, ToClient)]
    return decode(event.data)


def test_connect_needs_permission_then_answers_with_connection_id() -> None:
    h = Harness()
    c = control(h)
    assert code(c.send(Method.CONNECT, XOR_PEER_ADDRESS(PEER4))) == 403
    c.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(PEER4))
    events = c.events(Method.CONNECT, XOR_PEER_ADDRESS(PEER4))
    (connect,) = events
    assert isinstance(connect, ConnectPeer) and connect.relay == R4 and connect.peer == PEER4
    assert h.server.peer_connected(connect.connection_id, True, h.now)
    reply = reply_of(h.server.events())
    assert reply.method == Method.CONNECT and reply.cls is Class.SUCCESS
    assert reply.get(CONNECTION_ID) == connect.connection_id
    # a second Connect to the same peer: 446
    assert code(c.send(Method.CONNECT, XOR_PEER_ADDRESS(PEER4))) == 446
    # ConnectionBind on a new connection splices it
    data = Client(h, h.flow(40001, transport=Transport.TCP, connection=2))
    events = data.events(Method.CONNECTION_BIND, CONNECTION_ID(connect.connection_id))
    assert decode(events[0].data).cls is Class.SUCCESS  # type: ignore[union-attr]
    assert events[1:] == [SpliceData(connect.connection_id, data.flow)]
    # the id cannot be bound twice
    again = Client(h, h.flow(40002, transport=Transport.TCP, connection=3))
    assert code(again.send(Method.CONNECTION_BIND, CONNECTION_ID(connect.connection_id))) == 400


@pytest.mark.parametrize("peer", ["127.0.0.1", "::ffff:127.0.0.1", "10.0.0.1", "::ffff:10.0.0.1"])
def test_connect_to_a_denied_peer_is_403_even_when_wrapped(peer: str) -> None:
    h = Harness()
    c = control(h)
    reply = c.send(Method.CONNECT, XOR_PEER_ADDRESS((ip_address(peer), 80)))
    assert code(reply) == 403  # an IPv4-mapped peer is judged as the IPv4 it names
    assert h.server.stats().tcp_connections == 0


def test_connect_failure_and_timeout_are_447() -> None:
    h = Harness()
    c = control(h)
    c.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(PEER4))
    (connect,) = c.events(Method.CONNECT, XOR_PEER_ADDRESS(PEER4))
    assert isinstance(connect, ConnectPeer)
    assert not h.server.peer_connected(connect.connection_id, False, h.now)
    assert code(reply_of(h.server.events())) == 447
    (connect,) = c.events(Method.CONNECT, XOR_PEER_ADDRESS(PEER4))
    assert isinstance(connect, ConnectPeer)
    events = h.tick(30)
    assert code(reply_of(events)) == 447
    assert CloseConnection(connect.connection_id) in events
    assert not h.server.peer_connected(connect.connection_id, True, h.now)  # too late


def test_connect_on_udp_allocation_is_400() -> None:
    h = Harness()
    c = Client(h, h.flow())
    c.send(Method.ALLOCATE, REQUESTED_TRANSPORT(17))
    c.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(PEER4))
    assert code(c.send(Method.CONNECT, XOR_PEER_ADDRESS(PEER4))) == 400


def test_incoming_peer_connection_needs_permission_and_sends_attempt() -> None:
    h = Harness()
    c = control(h)
    assert h.server.peer_connection_incoming(R4, PEER4, h.now) is None
    c.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(PEER4))
    cid = h.server.peer_connection_incoming(R4, PEER4, h.now)
    assert cid is not None
    attempt = reply_of(h.server.events())
    assert (attempt.method, attempt.cls) == (Method.CONNECTION_ATTEMPT, Class.INDICATION)
    assert attempt.get(XOR_PEER_ADDRESS) == PEER4 and attempt.get(CONNECTION_ID) == cid
    # unbound for 30 s: closed
    assert h.tick(29) == []
    assert h.tick(1) == [CloseConnection(cid)]
    data = Client(h, h.flow(40001, transport=Transport.TCP, connection=2))
    data.nonce = f"n-{h.now:.0f}"
    assert code(data.send(Method.CONNECTION_BIND, CONNECTION_ID(cid))) == 400


def test_connection_bind_by_another_user_is_441_and_on_udp_400() -> None:
    h = Harness()
    c = control(h)
    c.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(PEER4))
    cid = h.server.peer_connection_incoming(R4, PEER4, h.now)
    h.server.events()
    bob = Client(h, h.flow(40001, transport=Transport.TCP, connection=2), "bob")
    assert code(bob.send(Method.CONNECTION_BIND, CONNECTION_ID(cid))) == 441
    udp = Client(h, h.flow(40002))
    assert code(udp.send(Method.CONNECTION_BIND, CONNECTION_ID(cid))) == 400
    # the control connection itself cannot be spliced
    assert code(c.send(Method.CONNECTION_BIND, CONNECTION_ID(cid))) == 400
    # guessed ids
    guesser = Client(h, h.flow(40003, transport=Transport.TCP, connection=4))
    for guess in range(1, 20):
        if guess != cid:
            assert code(guesser.send(Method.CONNECTION_BIND, CONNECTION_ID(guess))) == 400
    assert code(guesser.send(Method.CONNECTION_BIND)) == 400


def test_closing_control_connection_deletes_allocation() -> None:
    h = Harness()
    c = control(h)
    h.server.client_closed(c.flow, h.now)
    assert h.server.events() == [RelayClosed(R4)]
    assert h.server.stats().allocations == 0


def test_refresh_zero_drops_pending_connections() -> None:
    h = Harness()
    c = control(h)
    c.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(PEER4))
    (connect,) = c.events(Method.CONNECT, XOR_PEER_ADDRESS(PEER4))
    assert isinstance(connect, ConnectPeer)
    c.send(Method.REFRESH, LIFETIME(0))
    assert h.server.stats().tcp_connections == 0
    assert not h.server.peer_connected(connect.connection_id, True, h.now)
    assert h.tick(60) == []
