"""Permissions, channels, Send/Data and ChannelData through the TURN core."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from rtc64.net.address import Family
from rtc64.net.endpoint import Transport
from rtc64.stun import channeldata
from rtc64.stun.attributes import (
    ADDITIONAL_ADDRESS_FAMILY,
    CHANNEL_NUMBER,
    DATA,
    LIFETIME,
    REQUESTED_TRANSPORT,
    XOR_PEER_ADDRESS,
)
from rtc64.stun.message import Class, Method, decode
from rtc64.turn.events import Bind, Permit, ToClient, ToPeer, Unbind, Unpermit
from tests.unit.turn.helpers import PEER4, PEER6, RELAY4, RELAY6, Client, Harness, code

UDP = REQUESTED_TRANSPORT(17)
R4 = (RELAY4, 50000)


def allocated(h: Harness, *fields: object, port: int = 40000, user: str = "alice") -> Client:
    c = Client(h, h.flow(port), user)
    assert c.send(Method.ALLOCATE, UDP, *fields).cls is Class.SUCCESS  # type: ignore[arg-type]
    return c


def test_create_permission_emits_permit_and_expires_after_300_s() -> None:
    h = Harness()
    c = allocated(h)
    events = c.events(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(PEER4))
    # the fast path learns the permission before the client hears of it
    assert decode(events[-1].data).cls is Class.SUCCESS  # type: ignore[union-attr]
    assert events[:-1] == [Permit(R4, PEER4[0], 1300.0)]
    assert h.tick(299) == []
    assert h.tick(1) == [Unpermit(R4, PEER4[0])]


def test_several_peers_in_one_request_all_or_nothing() -> None:
    h = Harness()
    c = allocated(h)
    denied = (ip_address("10.1.2.3"), 1)
    reply = c.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(PEER4), XOR_PEER_ADDRESS(denied))
    assert code(reply) == 403
    assert h.server.stats().permissions == 0


def test_create_permission_without_peer_is_400() -> None:
    h = Harness()
    assert code(allocated(h).send(Method.CREATE_PERMISSION)) == 400


@pytest.mark.parametrize(
    "peer",
    ["127.0.0.1", "::1", "::ffff:127.0.0.1", "10.0.0.1", "::ffff:10.0.0.1"],
)
def test_forbidden_peer_is_403(peer: str) -> None:
    h = Harness()
    fields = (ADDITIONAL_ADDRESS_FAMILY(Family.INET6),)
    c = allocated(h, *fields)
    reply = c.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS((ip_address(peer), 80)))
    assert code(reply) == 403
    reply = c.send(
        Method.CHANNEL_BIND, CHANNEL_NUMBER(0x4000), XOR_PEER_ADDRESS((ip_address(peer), 80))
    )
    assert code(reply) == 403
    assert h.server.stats().permissions == 0


def test_peer_family_mismatch_is_443() -> None:
    h = Harness()
    c = allocated(h)  # IPv4 relay only
    assert code(c.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(PEER6))) == 443
    assert code(c.send(Method.CHANNEL_BIND, CHANNEL_NUMBER(0x4000), XOR_PEER_ADDRESS(PEER6))) == 443
    # an IPv4-mapped peer is an IPv4 peer: no IPv6-only relay may take it
    h6 = Harness(keep_client_family=True)
    c6 = allocated(h6)
    mapped = (ip_address("::ffff:198.51.100.20"), 80)
    assert code(c6.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(mapped))) == 443


def test_dual_allocation_permits_on_the_right_relay() -> None:
    h = Harness()
    c = allocated(h, ADDITIONAL_ADDRESS_FAMILY(Family.INET6))
    events = c.events(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(PEER4), XOR_PEER_ADDRESS(PEER6))
    assert events[:-1] == [
        Permit(R4, PEER4[0], 1300.0),
        Permit((RELAY6, 50000), PEER6[0], 1300.0),
    ]


def test_permission_limit_is_508() -> None:
    h = Harness(max_permissions=2)
    c = allocated(h)
    peers = [(ip_address(f"198.51.100.{i}"), 1) for i in (1, 2, 3)]
    assert c.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(peers[0])).cls is Class.SUCCESS
    assert c.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(peers[1])).cls is Class.SUCCESS
    assert c.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(peers[0])).cls is Class.SUCCESS
    assert code(c.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(peers[2]))) == 508


def test_channel_bind_events_refresh_and_expiry() -> None:
    h = Harness()
    c = allocated(h)
    events = c.events(Method.CHANNEL_BIND, CHANNEL_NUMBER(0x4001), XOR_PEER_ADDRESS(PEER4))
    assert decode(events[-1].data).cls is Class.SUCCESS  # type: ignore[union-attr]
    assert events[:-1] == [Permit(R4, PEER4[0], 1300.0), Bind(R4, c.flow, 0x4001, PEER4)]
    h.tick(250)
    c.nonce = f"n-{h.now:.0f}"
    events = c.events(Method.CHANNEL_BIND, CHANNEL_NUMBER(0x4001), XOR_PEER_ADDRESS(PEER4))
    assert events[:-1] == [Permit(R4, PEER4[0], 1550.0)]  # re-bind refreshes, no new Bind
    # allocation lifetime 600 s ends first: refresh it so the channel can expire
    c.send(Method.REFRESH, LIFETIME(3600))
    assert h.tick(300) == [Unpermit(R4, PEER4[0])]  # 300 s after the re-bind
    assert h.tick(299) == []
    assert h.tick(1) == [Unbind(R4, 0x4001)]  # 600 s after the re-bind


@pytest.mark.parametrize("number", [0x3FFF, 0x8000, 0x0000, 0xFFFF])  # 0x5000-0x7FFF: RFC 5766
def test_channel_number_out_of_range_is_400(number: int) -> None:
    h = Harness()
    reply = allocated(h).send(Method.CHANNEL_BIND, CHANNEL_NUMBER(number), XOR_PEER_ADDRESS(PEER4))
    assert code(reply) == 400


def test_channel_bind_missing_attributes_is_400() -> None:
    h = Harness()
    c = allocated(h)
    assert code(c.send(Method.CHANNEL_BIND, CHANNEL_NUMBER(0x4000))) == 400
    assert code(c.send(Method.CHANNEL_BIND, XOR_PEER_ADDRESS(PEER4))) == 400


def test_channel_number_reuse_for_another_peer_is_400() -> None:
    h = Harness()
    c = allocated(h)
    other = (PEER4[0], PEER4[1] + 1)
    c.send(Method.CHANNEL_BIND, CHANNEL_NUMBER(0x4000), XOR_PEER_ADDRESS(PEER4))
    assert code(c.send(Method.CHANNEL_BIND, CHANNEL_NUMBER(0x4000), XOR_PEER_ADDRESS(other))) == 400
    assert code(c.send(Method.CHANNEL_BIND, CHANNEL_NUMBER(0x4002), XOR_PEER_ADDRESS(PEER4))) == 400


def test_channel_limit_is_508() -> None:
    h = Harness(max_channels=1)
    c = allocated(h)
    c.send(Method.CHANNEL_BIND, CHANNEL_NUMBER(0x4000), XOR_PEER_ADDRESS(PEER4))
    other = (PEER4[0], 9)
    assert code(c.send(Method.CHANNEL_BIND, CHANNEL_NUMBER(0x4001), XOR_PEER_ADDRESS(other))) == 508


def test_requests_on_someone_elses_allocation() -> None:
    h = Harness()
    allocated(h)
    intruder = Client(h, h.flow(40001), "bob")
    assert code(intruder.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(PEER4))) == 437
    victim_tuple = Client(h, h.flow(40000), "bob")
    victim_tuple.tids = iter(range(100, 200))  # type: ignore[assignment]
    assert code(victim_tuple.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(PEER4))) == 441
    reply = victim_tuple.send(Method.CHANNEL_BIND, CHANNEL_NUMBER(0x4000), XOR_PEER_ADDRESS(PEER4))
    assert code(reply) == 441
    assert h.server.stats().permissions == 0


def send_indication(c: Client, peer: tuple[object, int], data: bytes) -> list[object]:
    raw = c.raw(
        Method.SEND,
        XOR_PEER_ADDRESS(peer),
        DATA(data),
        signed=False,  # type: ignore[arg-type]
        cls=Class.INDICATION,
    )
    return c.h.feed(c.flow, raw)  # type: ignore[return-value]


def test_send_indication_needs_a_permission() -> None:
    h = Harness()
    c = allocated(h)
    assert send_indication(c, PEER4, b"hello") == []
    assert h.server.stats().dropped == {"no-permission": 1}
    c.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(PEER4))
    assert send_indication(c, PEER4, b"hello") == [ToPeer(R4, PEER4, b"hello")]
    # the permission is per IP: another port of the same peer passes
    assert send_indication(c, (PEER4[0], 1), b"x") == [ToPeer(R4, (PEER4[0], 1), b"x")]


def test_send_indication_forged_peer_of_a_denied_address_is_dropped() -> None:
    h = Harness()
    c = allocated(h)
    c.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(PEER4))
    for peer in ("127.0.0.1", "10.0.0.1"):
        assert send_indication(c, (ip_address(peer), 80), b"x") == []
    assert send_indication(c, PEER6, b"x") == []  # family the allocation lacks
    assert h.server.stats().dropped == {"no-permission": 2, "family": 1}


def test_send_indication_from_another_five_tuple_is_dropped() -> None:
    h = Harness()
    c = allocated(h)
    c.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(PEER4))
    assert send_indication(Client(h, h.flow(999)), PEER4, b"x") == []
    assert h.server.stats().dropped == {"no-allocation": 1}


def test_peer_datagram_becomes_data_indication_then_channel_data() -> None:
    h = Harness()
    c = allocated(h)
    h.server.receive_peer(R4, b"early", PEER4, h.now)
    assert h.server.events() == []
    c.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(PEER4))
    h.server.receive_peer(R4, b"data", PEER4, h.now)
    (event,) = h.server.events()
    assert isinstance(event, ToClient) and event.client == c.flow
    msg = decode(event.data)
    assert (msg.method, msg.cls) == (Method.DATA, Class.INDICATION)
    assert msg.get(XOR_PEER_ADDRESS) == PEER4 and msg.get(DATA) == b"data"
    c.send(Method.CHANNEL_BIND, CHANNEL_NUMBER(0x4000), XOR_PEER_ADDRESS(PEER4))
    h.server.receive_peer(R4, b"abcde", PEER4, h.now)
    (event,) = h.server.events()
    assert event == ToClient(c.flow, channeldata.pack(0x4000, b"abcde"))


def test_channel_data_padded_for_stream_clients() -> None:
    h = Harness()
    tcp = h.flow(transport=Transport.TCP, connection=5)
    c = Client(h, tcp)
    c.send(Method.ALLOCATE, UDP)
    c.send(Method.CHANNEL_BIND, CHANNEL_NUMBER(0x4000), XOR_PEER_ADDRESS(PEER4))
    h.server.receive_peer(R4, b"abcde", PEER4, h.now)
    (event,) = h.server.events()
    assert event == ToClient(tcp, channeldata.pack(0x4000, b"abcde", stream=True))
    assert len(event.data) == 12  # type: ignore[union-attr]


def test_client_channel_data_goes_to_the_bound_peer_only() -> None:
    h = Harness()
    c = allocated(h)
    assert h.feed(c.flow, channeldata.pack(0x4000, b"x")) == []
    c.send(Method.CHANNEL_BIND, CHANNEL_NUMBER(0x4000), XOR_PEER_ADDRESS(PEER4))
    assert h.feed(c.flow, channeldata.pack(0x4000, b"x")) == [ToPeer(R4, PEER4, b"x")]
    # another 5-tuple using the same channel number reaches nobody
    assert h.feed(h.flow(41000), channeldata.pack(0x4000, b"x")) == []
    assert h.feed(c.flow, b"\x40\x00\x00\x09abc") == []  # lying length
    dropped = h.server.stats().dropped
    assert dropped == {"no-channel": 1, "no-allocation": 1, "malformed": 1}


def test_peer_data_for_unknown_relay_dropped() -> None:
    h = Harness()
    h.server.receive_peer((RELAY4, 1), b"x", PEER4, h.now)
    assert h.server.events() == []


def test_stats_snapshot_is_frozen() -> None:
    h = Harness()
    allocated(h)
    stats = h.server.stats()
    with pytest.raises(AttributeError):
        stats.allocations = 5  # type: ignore[misc]
    assert stats.allocations == 1 and stats.requests == 1


def test_mapped_peer_is_relayed_as_ipv4() -> None:
    h = Harness()
    c = allocated(h)
    mapped = (ip_address("::ffff:198.51.100.20"), 5000)
    events = c.events(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(mapped))
    assert events[0] == Permit(R4, PEER4[0], 1300.0)
    assert send_indication(c, mapped, b"x") == [ToPeer(R4, PEER4, b"x")]


def test_send_indication_with_unknown_required_attribute_is_dropped() -> None:
    h = Harness()
    c = allocated(h)
    c.send(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(PEER4))
    raw = c.raw(
        Method.SEND,
        XOR_PEER_ADDRESS(PEER4),
        DATA(b"x"),
        (0x7FF0, b""),
        signed=False,
        cls=Class.INDICATION,
    )
    assert h.feed(c.flow, raw) == []
    assert h.server.stats().dropped == {"bad-indication": 1}


def test_quota_table_keeps_no_empty_users() -> None:
    h = Harness()
    for user in ("alice", "bob"):
        c = allocated(h, user=user, port=40000 + len(user))
        c.send(Method.REFRESH, LIFETIME(0))
    assert h.server.per_user == {}
