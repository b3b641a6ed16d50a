"""The stateless server core: signalling, egress filter, reflection, amplification."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtc64.errors import RemoteProtocolError
from rtc64.tunnel import packet as ip
from rtc64.tunnel import tsp
from rtc64.tunnel.server import ServerSettings, ToTun, ToUdp, TunnelServer

SETTINGS = ServerSettings(IPv6Network("fd00:64::/64"), IPv4Address("192.0.2.1"))
CLIENT = (IPv4Address("198.51.100.7"), 40000)
ME = IPv6Address("fd00:64::c633:6407:9c40:1")
PEER = IPv6Address("2001:db8::5")


def _req(message: bytes, seq: int = 7, padded: bool = True) -> bytes:
    body = tsp.pad(message) if padded else message
    return tsp.Header(seq, 1).encode() + body


def _answer(server: TunnelServer, data: bytes) -> tsp.Response:
    (action,) = server.from_udp(data, CLIENT, 0.0)
    assert isinstance(action, ToUdp) and action.addr == CLIENT
    assert len(action.data) <= len(data)
    header, message = tsp.split_header(action.data)
    assert header.sequence == 7
    return tsp.parse_response(message)


def test_exchange() -> None:
    server = TunnelServer(SETTINGS)
    cap = _answer(server, _req(b"VERSION=2.0.0\r\n"))
    assert cap.capability == tsp.CAPABILITY
    assert _answer(server, _req(b"AUTHENTICATE ANONYMOUS\r\n")).status == 200
    create = tsp.Request(tsp.Kind.TUNNEL, document=tsp.TunnelDoc(action="create"))
    info = _answer(server, _req(tsp.encode_request(create)))
    doc = info.document
    assert info.status == 200 and doc is not None
    assert doc.client_ipv6 == ME and doc.client_ipv4 == CLIENT[0]
    assert doc.server_ipv6 == doc.keepalive_ipv6 == IPv6Address("fd00:64::1")
    assert (doc.lifetime, doc.keepalive_interval) == (604800, 30)
    accept = tsp.Request(tsp.Kind.TUNNEL, document=tsp.TunnelDoc(action="accept"))
    assert server.from_udp(_req(tsp.encode_request(accept)), CLIENT, 0.0) == []
    assert server.counters.tunnels_created == 1


def test_profile_errors() -> None:
    server = TunnelServer(SETTINGS)
    assert _answer(server, _req(b"VERSION=1.0.0\r\n")).status == 302
    assert _answer(server, _req(b"AUTHENTICATE PLAIN\r\n")).status == 300
    other = tsp.TunnelDoc(action="create", type="v6v4")
    doc = tsp.encode_request(tsp.Request(tsp.Kind.TUNNEL, document=other))
    assert _answer(server, _req(doc)).status == 303
    assert _answer(server, _req(b"GET / HTTP/1.1\r\n")).status == 500
    assert server.counters.signalling_errors == 1


def test_no_amplification_without_padding() -> None:
    server = TunnelServer(SETTINGS)
    create = tsp.Request(tsp.Kind.TUNNEL, document=tsp.TunnelDoc(action="create"))
    assert server.from_udp(_req(tsp.encode_request(create), padded=False), CLIENT, 0.0) == []
    assert server.counters.amplification_refused == 1


@given(st.binary(max_size=700).map(lambda b: tsp.Header(1, 2).encode() + b))
def test_fuzzed_signalling_never_amplifies(data: bytes) -> None:
    for action in TunnelServer(SETTINGS).from_udp(data, CLIENT, 0.0):
        assert isinstance(action, ToUdp) and len(action.data) <= len(data)


def _pkt(src: IPv6Address, dst: IPv6Address, size: int = 0) -> bytes:
    return ip.echo(src, dst, 1, 1, b"p" * size, reply=False)


def test_upstream_egress_filter() -> None:
    server = TunnelServer(SETTINGS)
    good = _pkt(ME, PEER)
    assert server.from_udp(good, CLIENT, 0.0) == [ToTun(good)]
    # spoofed inner source outside the prefix: dropped and counted, no answer
    assert server.from_udp(_pkt(IPv6Address("2001:db8::66"), PEER), CLIENT, 0.0) == []
    # another client's address (or a stale mapping): dropped, counted, code 5 back
    other = server.mapping.client_address(IPv4Address("203.0.113.9"), 1234)
    (err,) = server.from_udp(_pkt(other, PEER, 64), CLIENT, 0.0)
    assert isinstance(err, ToUdp) and err.addr == CLIENT
    icmp = ip.read_icmp(err.data, ip.parse_header(err.data))
    assert icmp is not None and (icmp.kind, icmp.code) == (1, 5)
    assert len(err.data) <= len(_pkt(other, PEER, 64))
    assert server.counters.dropped_spoofed == 2 and server.counters.up_packets == 1


def test_keepalive_echo() -> None:
    server = TunnelServer(SETTINGS)
    request = _pkt(ME, server.mapping.server_address, 8)
    (reply,) = server.from_udp(request, CLIENT, 0.0)
    assert isinstance(reply, ToUdp) and len(reply.data) == len(request)
    icmp = ip.read_icmp(reply.data, ip.parse_header(reply.data))
    assert icmp is not None and icmp.kind == ip.ECHO_REPLY


def test_client_to_client_and_unroutable() -> None:
    server = TunnelServer(SETTINGS)
    other_ep = (IPv4Address("203.0.113.9"), 1234)
    other = server.mapping.client_address(*other_ep)
    assert server.from_udp(_pkt(ME, other), CLIENT, 0.0) == [ToUdp(_pkt(ME, other), other_ep)]
    loop = server.mapping.client_address(IPv4Address("127.0.0.1"), 53)
    (err,) = server.from_udp(_pkt(ME, loop, 64), CLIENT, 0.0)
    assert isinstance(err, ToUdp) and err.addr == CLIENT  # never to 127.0.0.1


def test_downstream() -> None:
    server = TunnelServer(SETTINGS)
    pkt = _pkt(PEER, ME)
    assert server.from_tun(pkt, 0.0) == [ToUdp(pkt, CLIENT)]
    # a second, fresh instance does the same (no state)
    assert TunnelServer(SETTINGS).from_tun(pkt, 0.0) == [ToUdp(pkt, CLIENT)]
    # outside the prefix: nothing (no reflection)
    assert server.from_tun(_pkt(PEER, IPv6Address("2001:db8::9")), 0.0) == []
    # inside but not a host: Destination Unreachable back into the IPv6 side
    bad = server.mapping.client_address(IPv4Address("224.0.0.1"), 5060)
    (err,) = server.from_tun(_pkt(PEER, bad), 0.0)
    assert isinstance(err, ToTun)
    assert ip.parse_header(err.packet).destination == PEER
    # larger than the tunnel MTU: Packet Too Big (MTU 1280)
    (ptb,) = server.from_tun(_pkt(PEER, ME, 1300), 0.0)
    assert isinstance(ptb, ToTun)
    icmp = ip.read_icmp(ptb.packet, ip.parse_header(ptb.packet))
    assert icmp is not None and icmp.kind == 2 and icmp.body[:4] == b"\x00\x00\x05\x00"
    # a prefix source from the IPv6 side is spoofed
    assert server.from_tun(_pkt(ME, ME), 0.0) == []
    assert server.counters.down_packets == 1


def test_rate_limit_per_source() -> None:
    settings = ServerSettings(SETTINGS.prefix, SETTINGS.server_ipv4, rate=1, burst=2)
    server = TunnelServer(settings)
    pkt = _pkt(ME, PEER)
    results = [server.from_udp(pkt, CLIENT, 0.0) for _ in range(4)]
    assert results == [[ToTun(pkt)], [ToTun(pkt)], [], []]
    other = (IPv4Address("198.51.100.8"), 40000)
    other_pkt = _pkt(server.mapping.client_address(*other), PEER)
    assert server.from_udp(other_pkt, other, 0.0) == [ToTun(other_pkt)]
    assert server.counters.dropped_rate_limited == 2


def test_unroutable_udp_source_ignored() -> None:
    server = TunnelServer(SETTINGS)
    assert server.from_udp(_req(b"VERSION=2.0.0\r\n"), (IPv4Address("0.0.0.0"), 1), 0.0) == []
    assert server.counters.dropped_unroutable == 1


@given(st.binary(max_size=1500))
def test_fuzz_data_path(data: bytes) -> None:
    server = TunnelServer(SETTINGS)
    for action in server.from_udp(data, CLIENT, 0.0):
        if isinstance(action, ToUdp):
            assert len(action.data) <= len(data)
    server.from_tun(data, 0.0)


def test_rate_limit_per_destination_and_no_self_target() -> None:
    settings = ServerSettings(SETTINGS.prefix, SETTINGS.server_ipv4, rate=1, burst=2)
    server = TunnelServer(settings)
    pkt = _pkt(PEER, ME)
    results = [server.from_tun(pkt, 0.0) for _ in range(3)]
    assert results == [[ToUdp(pkt, CLIENT)], [ToUdp(pkt, CLIENT)], []]
    assert server.from_tun(pkt, 1.0) == [ToUdp(pkt, CLIENT)]  # refilled
    own = server.mapping.client_address(SETTINGS.server_ipv4, 3653)
    assert server.from_tun(_pkt(PEER, own), 2.0) == []
    assert server.from_udp(_pkt(ME, own), CLIENT, 2.0) == []
    assert server.counters.dropped_unroutable == 2


def test_foreign_error_status_answers_500(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(message: bytes) -> tsp.Request:
        raise RemoteProtocolError("odd", 400)

    monkeypatch.setattr(tsp, "parse_request", boom)
    assert _answer(TunnelServer(SETTINGS), _req(b"VERSION=2.0.0\r\n")).status == 500
