"""HEPv3 encoding (chunks per Homer's HEP3 spec) and the non-blocking capture sender."""

from __future__ import annotations

import logging
import socket
import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from rtc64.io import hep
from rtc64.net.endpoint import Flow, ListenSpec, Transport

SIP = b"OPTIONS sip:a@example.net SIP/2.0\r\nCall-ID: x\r\n\r\n"


def _decode(packet: bytes) -> dict[int, bytes]:
    """A reader written from the spec: header, then (vendor, type, length) chunks."""
    magic, total = struct.unpack_from("!4sH", packet)
    assert magic == b"HEP3" and total == len(packet)
    chunks: dict[int, bytes] = {}
    offset = 6
    while offset < total:
        vendor, kind, length = struct.unpack_from("!HHH", packet, offset)
        assert vendor == 0 and length >= 6
        chunks[kind] = packet[offset + 6 : offset + length]
        offset += length
    assert offset == total
    return chunks


def test_ipv6_packet_carries_ipv6_chunks() -> None:
    src, dst = IPv6Address("2001:db8::1"), IPv6Address("2001:db8::2")
    packet = hep.encode(
        SIP, transport=Transport.UDP, src=(src, 5060), dst=(dst, 5070),
        timestamp=1700000000.25, capture_id=7,
    )  # fmt: skip
    assert packet is not None
    c = _decode(packet)
    assert c[1] == b"\x0a" and c[2] == b"\x11"
    assert c[5] == src.packed and c[6] == dst.packed
    assert 3 not in c and 4 not in c
    assert struct.unpack("!H", c[7]) == (5060,) and struct.unpack("!H", c[8]) == (5070,)
    assert struct.unpack("!I", c[9]) == (1700000000,)
    assert struct.unpack("!I", c[10]) == (250000,)
    assert c[11] == b"\x01" and struct.unpack("!I", c[12]) == (7,)
    assert c[15] == SIP


def test_ipv4_and_mapped_addresses_carry_ipv4_chunks_tcp_for_streams() -> None:
    mapped = IPv6Address("::ffff:192.0.2.1")
    packet = hep.encode(
        SIP, transport=Transport.TLS, src=(mapped, 5061), dst=(IPv4Address("192.0.2.2"), 1),
        timestamp=0.0, capture_id=0,
    )  # fmt: skip
    assert packet is not None
    c = _decode(packet)
    assert c[1] == b"\x02" and c[2] == b"\x06"
    assert c[3] == IPv4Address("192.0.2.1").packed and c[4] == IPv4Address("192.0.2.2").packed
    assert 5 not in c and 6 not in c


def test_oversize_and_mixed_families_are_refused() -> None:
    v4, v6 = (IPv4Address("192.0.2.1"), 1), (IPv6Address("2001:db8::1"), 1)
    big = b"x" * 65_535
    assert (
        hep.encode(big, transport=Transport.TCP, src=v4, dst=v4, timestamp=0, capture_id=1) is None
    )
    assert (
        hep.encode(SIP, transport=Transport.UDP, src=v4, dst=v6, timestamp=0, capture_id=1) is None
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_capture_reaches_a_collector_over_either_family(host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    collector = socket.socket(family, socket.SOCK_DGRAM)
    collector.bind((host, 0))
    collector.settimeout(2)
    port = collector.getsockname()[1]
    spec = ListenSpec(Transport.UDP, ip_address(host), port)
    capture = hep.HepCapture(spec, 42, log=logging.getLogger("test"))
    a, b = IPv6Address("2001:db8::a"), IPv6Address("2001:db8::b")
    try:
        capture.received(SIP, Flow(Transport.UDP, (b, 5060), (a, 5062)), 1.5)
        capture.sent(SIP, Flow(Transport.UDP, (b, 5060), (a, 5062)), 2.5)
        first, second = _decode(collector.recv(70_000)), _decode(collector.recv(70_000))
    finally:
        capture.close()
        collector.close()
    assert (first[5], first[6]) == (a.packed, b.packed)  # received: from the remote
    assert (second[5], second[6]) == (b.packed, a.packed)  # sent: from us
    assert capture.stats.sent == 2 and capture.stats.dropped == 0


def test_a_refusing_collector_is_counted_never_raised() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there: ICMP port unreachable, then ECONNREFUSED
    capture = hep.HepCapture(
        ListenSpec(Transport.UDP, IPv4Address("127.0.0.1"), port), 1, log=logging.getLogger("t")
    )
    flow = Flow(Transport.UDP, (IPv4Address("127.0.0.1"), 5060), (IPv4Address("127.0.0.2"), 1))
    try:
        for _ in range(20):
            capture.sent(SIP, flow, 0.0)
    finally:
        capture.close()
    assert capture.stats.sent + capture.stats.dropped == 20
    assert capture.stats.errors >= 1
    huge = b"x" * 70_000
    capture2 = hep.HepCapture(
        ListenSpec(Transport.UDP, IPv4Address("127.0.0.1"), port), 1, log=logging.getLogger("t")
    )
    try:
        capture2.sent(huge, flow, 0.0)
    finally:
        capture2.close()
    assert capture2.stats.too_large == 1 and capture2.stats.sent == 0
