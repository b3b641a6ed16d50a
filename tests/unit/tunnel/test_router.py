"""The core as the router hop (routed backend) and the server's own address."""

from __future__ import annotations

import dataclasses
import struct
from ipaddress import IPv4Address, IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtc64.tunnel import packet as ip
from rtc64.tunnel.server import ServerSettings, ToTun, ToUdp, TunnelServer

SETTINGS = ServerSettings(IPv6Network("fd00:64::/64"), IPv4Address("192.0.2.1"))
ROUTER = dataclasses.replace(SETTINGS, router=True)
CLIENT = (IPv4Address("198.51.100.7"), 40000)
ME = IPv6Address("fd00:64::c633:6407:9c40:1")
SERVER6 = IPv6Address("fd00:64::1")
PEER = IPv6Address("2001:db8::5")


def _pkt(src: IPv6Address, dst: IPv6Address, hop_limit: int = 64, size: int = 16) -> bytes:
    packet = ip.echo(src, dst, 1, 1, b"p" * size, reply=False)
    return packet[:7] + bytes((hop_limit,)) + packet[8:]


def test_time_exceeded_vector() -> None:
    offending = _pkt(ME, PEER, hop_limit=1)
    packet = ip.time_exceeded(SERVER6, offending, ip.parse_header(offending))
    header = ip.parse_header(packet)
    assert (header.source, header.destination) == (SERVER6, ME)
    icmp = ip.read_icmp(packet, header)  # checksum verified
    assert icmp is not None and (icmp.kind, icmp.code) == (3, 0)
    assert icmp.body == b"\x00" * 4 + offending


@pytest.mark.parametrize(("hop", "after"), [(0, None), (1, None), (2, 1), (255, 254)])
def test_forwarded_decrements(hop: int, after: int | None) -> None:
    original = _pkt(ME, PEER, hop_limit=hop)
    out = ip.forwarded(original)
    assert (None if out is None else out[7]) == after
    if out is not None:  # nothing else changes
        assert out[:7] + out[8:] == original[:7] + original[8:]


def test_router_decrements_upstream_and_answers_time_exceeded() -> None:
    server = TunnelServer(ROUTER)
    (out,) = server.from_udp(_pkt(ME, PEER, hop_limit=64), CLIENT, 0.0)
    assert isinstance(out, ToTun) and ip.parse_header(out.packet).hop_limit == 63
    expired = _pkt(ME, PEER, hop_limit=1, size=64)  # errors quote at least a header
    (err,) = server.from_udp(expired, CLIENT, 0.0)
    assert isinstance(err, ToUdp) and err.addr == CLIENT and len(err.data) <= len(expired)
    icmp = ip.read_icmp(err.data, ip.parse_header(err.data))
    assert icmp is not None and (icmp.kind, icmp.code) == (ip.TIME_EXCEEDED, 0)
    assert server.counters.dropped_hop_limit == 1


def test_behind_tun_the_kernel_decrements() -> None:
    packet = _pkt(ME, PEER, hop_limit=1)
    assert TunnelServer(SETTINGS).from_udp(packet, CLIENT, 0.0) == [ToTun(packet)]


def test_time_exceeded_is_rate_limited() -> None:
    server = TunnelServer(dataclasses.replace(ROUTER, icmp_rate=1.0))
    expired = _pkt(ME, PEER, hop_limit=1, size=64)  # errors quote at least a header
    assert len(server.from_udp(expired, CLIENT, 0.0)) == 1
    assert server.from_udp(expired, CLIENT, 0.0) == []
    assert server.counters.icmp_rate_limited == 1 and server.counters.dropped_hop_limit == 2


@pytest.mark.parametrize("settings", [SETTINGS, ROUTER])
def test_replies_to_the_server_address_reach_the_host(settings: ServerSettings) -> None:
    """The host's own sockets use prefix::1 toward clients: what comes back to it (not
    an echo request, which the core answers itself) is for the host, never expired."""
    server = TunnelServer(settings)
    reply = ip.echo(ME, SERVER6, 1, 1, b"x" * 16, reply=True)
    last_hop = reply[:7] + b"\x01" + reply[8:]
    assert server.from_udp(last_hop, CLIENT, 0.0) == [ToTun(last_hop)]
    assert server.counters.keepalives == 0 and server.counters.dropped_unroutable == 0


def test_the_host_reaches_clients_from_the_server_address() -> None:
    server = TunnelServer(ROUTER)
    packet = _pkt(SERVER6, ME)
    assert server.from_tun(packet, 0.0) == [ToUdp(packet, CLIENT)]
    other_prefix_source = IPv6Address("fd00:64::2")
    assert server.from_tun(_pkt(other_prefix_source, ME), 0.0) == []
    assert server.counters.dropped_spoofed == 1


def test_the_hosts_link_chatter_is_not_a_drop() -> None:
    """MLD reports and router solicitations the host sends on the server's device."""
    server = TunnelServer(SETTINGS)
    for group in ("ff02::16", "ff02::2", "ff02::1:ff00:1"):
        assert server.from_tun(_pkt(IPv6Address("fe80::1"), IPv6Address(group)), 0.0) == []
    assert server.counters.ignored_multicast == 3
    assert server.counters.dropped_unroutable == server.counters.icmp_sent == 0


@pytest.mark.parametrize("settings", [SETTINGS, ROUTER])
@pytest.mark.parametrize("destination", ["::1", "::", "fe80::1", "::ffff:127.0.0.1"])
def test_never_forwarded_upstream(settings: ServerSettings, destination: str) -> None:
    """A raw socket would hand ::1 to this host's loopback services (the web console)."""
    server = TunnelServer(settings)
    assert server.from_udp(_pkt(ME, IPv6Address(destination)), CLIENT, 0.0) == []
    assert server.counters.dropped_unroutable == 1 and server.counters.up_packets == 0


def test_client_multicast_is_ignored_not_forwarded() -> None:
    server = TunnelServer(ROUTER)
    assert server.from_udp(_pkt(ME, IPv6Address("ff02::2")), CLIENT, 0.0) == []
    assert server.from_udp(_pkt(ME, IPv6Address("ff0e::1")), CLIENT, 0.0) == []
    assert server.counters.ignored_multicast == 2 and server.counters.up_packets == 0


DESTINATIONS = [
    "::1", "::", "fe80::1", "ff02::1", "ff0e::1", "::ffff:10.0.0.1", "fd00:64::1",
    "fd00:64::cb00:7109:4d2:1", "fd00:64::7f00:1:35:1", "2001:db8::5",
]  # fmt: skip


@given(
    st.sampled_from(DESTINATIONS),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=1300),
)
def test_fuzzed_upstream_through_the_router(
    destination: str, hop_limit: int, next_header: int, payload: bytes
) -> None:
    """Attacker-chosen upstream packets that pass the egress filter: no exception, only
    forwardable destinations leave toward the IPv6 side, each with one hop less, and
    nothing sent back is larger than what came in."""
    server = TunnelServer(ROUTER)
    dst = IPv6Address(destination)
    head = struct.pack("!IHBB", 6 << 28, len(payload), next_header, hop_limit)
    packet = head + ME.packed + dst.packed + payload
    for action in server.from_udp(packet, CLIENT, 0.0):
        if isinstance(action, ToTun):
            out = ip.parse_header(action.packet)
            assert ip.forwardable(out.destination) and not out.destination.is_multicast
            if out.destination == SERVER6:  # for this host: not forwarded
                assert out.hop_limit == hop_limit
            else:
                assert out.hop_limit == hop_limit - 1 >= 1
        else:
            assert len(action.data) <= len(packet)
