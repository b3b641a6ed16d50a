"""Mapping, egress filter, ICMPv6 construction, token buckets."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtc64.errors import LocalProtocolError, RemoteProtocolError
from rtc64.tunnel import packet as ip
from rtc64.tunnel.mapping import Mapping, routable
from rtc64.tunnel.ratelimit import TokenBuckets

PREFIX = IPv6Network("fd00:64::/64")
MAP = Mapping(PREFIX)


def test_mapping_vector() -> None:
    addr = MAP.client_address(IPv4Address("198.51.100.7"), 12345)
    assert addr == IPv6Address("fd00:64::c633:6407:3039:1")
    assert MAP.endpoint(addr) == (IPv4Address("198.51.100.7"), 12345)
    assert MAP.server_address == IPv6Address("fd00:64::1")
    assert MAP.endpoint(MAP.server_address) is None


@given(st.ip_addresses(v=4), st.integers(1, 65535), st.integers(0, 65535))
def test_mapping_round_trip(v4: IPv4Address, port: int, local: int) -> None:
    addr = MAP.client_address(v4, port, local)
    assert MAP.contains(addr)
    assert MAP.endpoint(addr) == ((v4, port) if routable(v4) else None)
    assert MAP.embeds(addr, v4, port) == routable(v4)
    assert not MAP.embeds(addr, v4, port % 65535 + 1)


@pytest.mark.parametrize(
    "v4", ["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255", "169.254.1.1", "240.0.0.1"]
)
def test_no_reflection_to_special_ipv4(v4: str) -> None:
    assert MAP.endpoint(MAP.client_address(IPv4Address(v4), 5060)) is None


def test_outside_prefix_and_port_zero() -> None:
    assert MAP.endpoint(IPv6Address("2001:db8::1")) is None
    assert MAP.endpoint(MAP.client_address(IPv4Address("192.0.2.1"), 0)) is None
    with pytest.raises(LocalProtocolError):
        Mapping(IPv6Network("fd00:64::/48"))


A = IPv6Address("fd00:64::c633:6407:3039:1")
B = IPv6Address("2001:db8::2")


def test_echo_checksum_vector() -> None:
    pkt = ip.echo(A, B, 0x1234, 1, b"abcd", reply=False)
    header = ip.parse_header(pkt)
    assert (header.source, header.destination, header.next_header) == (A, B, 58)
    icmp = ip.read_icmp(pkt, header)
    assert icmp is not None and icmp.kind == ip.ECHO_REQUEST
    # the checksum covers the pseudo-header: another destination breaks it
    forged = pkt[:8] + A.packed + IPv6Address("2001:db8::3").packed + pkt[40:]
    assert ip.read_icmp(forged, ip.parse_header(forged)) is None
    # independent RFC 1071 sum of the whole thing is 0xFFFF (one's complement)
    data = A.packed + B.packed + struct.pack("!I3xB", len(pkt) - 40, 58) + pkt[40:]
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF


def test_packet_too_big_and_unreachable() -> None:
    big = ip.echo(B, A, 1, 1, b"x" * 1400, reply=False)
    header = ip.parse_header(big)
    me = IPv6Address("fd00:64::1")
    ptb = ip.packet_too_big(me, big, header, 1280)
    assert len(ptb) == 1280
    h = ip.parse_header(ptb)
    icmp = ip.read_icmp(ptb, h)
    assert h.destination == B and icmp is not None
    assert (icmp.kind, icmp.code, icmp.body[:4]) == (2, 0, struct.pack("!I", 1280))
    assert icmp.body[4:] == big[: 1280 - 48]
    du = ip.destination_unreachable(me, big, header, ip.ADDRESS_UNREACHABLE, size=200)
    assert len(du) == 200
    icmp = ip.read_icmp(du, ip.parse_header(du))
    assert icmp is not None and (icmp.kind, icmp.code) == (1, 3)
    # never an error about an error, nor to a multicast source
    assert not ip.may_answer(ptb, ip.parse_header(ptb))
    mcast = ip.echo(IPv6Address("ff02::1"), A, 1, 1, b"", reply=False)
    assert not ip.may_answer(mcast, ip.parse_header(mcast))


@pytest.mark.parametrize(
    "data",
    [b"", b"\x60" * 39, b"\x40" + b"\x00" * 39, ip.echo(A, B, 1, 1, b"ab", reply=False) + b"x"],
)
def test_bad_ipv6(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        ip.parse_header(data)


@given(st.binary(max_size=200))
def test_fuzz_ipv6_header(data: bytes) -> None:
    try:
        header = ip.parse_header(data)
    except RemoteProtocolError:
        return
    ip.read_icmp(data, header)


def test_token_bucket() -> None:
    buckets = TokenBuckets(rate=1.0, burst=3, max_keys=2)
    assert [buckets.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert buckets.allow("b", 0.0)
    assert not buckets.allow("a", 0.5)
    assert buckets.allow("a", 1.6)  # refilled one token
    assert buckets.allow("c", 1.6)  # evicts b (least recently used)
    assert len(buckets) == 2
    assert buckets.allow("a", 1.0) is False  # time going backwards grants nothing
    with pytest.raises(ValueError):
        TokenBuckets(rate=0, burst=1)
