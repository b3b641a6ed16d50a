# Rules: RFC 8200 §3 (the fixed IPv6 header), RFC 4443 (ICMPv6):
# - a packet is accepted only with version 6 and a payload length that matches the
#   datagram exactly (no trailing bytes hidden behind the header);
# - §2.3 checksum over the pseudo-header (source, destination, length, next header 58);
# - §2.4 (e): never an ICMPv6 error about an ICMPv6 error, nor about a packet whose
#   source is not a unicast address (multicast, unspecified);
# - §2.4 (c): an error carries as much of the offending packet as fits in 1280 bytes;
# - §3.1 Destination Unreachable (type 1), §3.2 Packet Too Big (type 2, MTU),
#   §3.3 Time Exceeded (type 3, code 0: hop limit exceeded in transit),
#   §4.1/§4.2 Echo Request/Reply (types 128/129) for the tunnel keepalive;
# - RFC 8200 §3: a node that forwards a packet decrements its hop limit and discards it
#   when the result would be zero (``forwarded``).
"""IPv6 header reading and ICMPv6 construction with checksums."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address

from rtc64.errors import RemoteProtocolError

HEADER = 40
MIN_MTU = 1280
ICMPV6 = 58
DEST_UNREACHABLE = 1
PACKET_TOO_BIG = 2
TIME_EXCEEDED = 3
ECHO_REQUEST = 128
ECHO_REPLY = 129
# Destination Unreachable codes (RFC 4443 §3.1)
NO_ROUTE = 0
PROHIBITED = 1
ADDRESS_UNREACHABLE = 3
SOURCE_POLICY = 5  # source address failed ingress/egress policy


@dataclass(frozen=True, slots=True)
class Ipv6Header:
    """The fields of the fixed IPv6 header the tunnel looks at."""

    source: IPv6Address
    destination: IPv6Address
    next_header: int
    hop_limit: int
    payload_length: int


def parse_header(packet: bytes) -> Ipv6Header:
    """Read the fixed header; raise RemoteProtocolError unless it is a sound IPv6 packet."""
    if len(packet) < HEADER:
        raise RemoteProtocolError("IPv6 packet shorter than its header")
    if packet[0] >> 4 != 6:
        raise RemoteProtocolError("not an IPv6 packet")
    length, next_header, hop_limit = struct.unpack_from("!HBB", packet, 4)
    if length != len(packet) - HEADER:
        raise RemoteProtocolError("IPv6 payload length does not match the datagram")
    return Ipv6Header(
        IPv6Address(packet[8:24]), IPv6Address(packet[24:40]), next_header, hop_limit, length
    )


def checksum(source: IPv6Address, destination: IPv6Address, proto: int, data: bytes) -> int:
    """The Internet checksum of ``data`` under the IPv6 pseudo-header."""
    pseudo = source.packed + destination.packed + struct.pack("!I3xB", len(data), proto)
    blob = pseudo + data + (b"\x00" if len(data) % 2 else b"")
    total: int = sum(struct.unpack(f"!{len(blob) // 2}H", blob))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmpv6(
    source: IPv6Address, destination: IPv6Address, kind: int, code: int, body: bytes
) -> bytes:
    """A whole IPv6 packet carrying one ICMPv6 message, checksum filled in."""
    message = bytearray(struct.pack("!BBH", kind, code, 0) + body)
    struct.pack_into("!H", message, 2, checksum(source, destination, ICMPV6, bytes(message)))
    head = struct.pack("!IHBB", 6 << 28, len(message), ICMPV6, 255)
    return head + source.packed + destination.packed + bytes(message)


def is_icmp_error(packet: bytes, header: Ipv6Header) -> bool:
    """True when the packet is an ICMPv6 error (type < 128) with no extension header."""
    return header.next_header == ICMPV6 and len(packet) > HEADER and packet[HEADER] < 128


def may_answer(packet: bytes, header: Ipv6Header) -> bool:
    """RFC 4443 §2.4 (e): an error may be sent about this packet."""
    src = header.source
    return not (src.is_multicast or src.is_unspecified or is_icmp_error(packet, header))


def _quote(packet: bytes, size: int) -> bytes:
    return packet[: min(size, MIN_MTU) - HEADER - 8]


def destination_unreachable(
    me: IPv6Address, packet: bytes, header: Ipv6Header, code: int, size: int = MIN_MTU
) -> bytes:
    """Destination Unreachable about ``packet`` from ``me``, at most ``size`` bytes."""
    body = b"\x00" * 4 + _quote(packet, size)
    return icmpv6(me, header.source, DEST_UNREACHABLE, code, body)


def packet_too_big(
    me: IPv6Address, packet: bytes, header: Ipv6Header, mtu: int, size: int = MIN_MTU
) -> bytes:
    """Packet Too Big about ``packet`` announcing ``mtu``, at most ``size`` bytes."""
    body = struct.pack("!I", mtu) + _quote(packet, size)
    return icmpv6(me, header.source, PACKET_TOO_BIG, 0, body)


def time_exceeded(me: IPv6Address, packet: bytes, header: Ipv6Header, size: int = MIN_MTU) -> bytes:
    """Time Exceeded (hop limit exceeded in transit) about ``packet``, at most ``size``."""
    body = b"\x00" * 4 + _quote(packet, size)
    return icmpv6(me, header.source, TIME_EXCEEDED, 0, body)


def forwardable(destination: IPv6Address) -> bool:
    """False for destinations a router never forwards a packet to (RFC 4291 §2.5.2,
    §2.5.3, §2.5.5.2, §2.5.6): unspecified, loopback, IPv4-mapped, link-local."""
    return not (
        destination.is_unspecified
        or destination.is_loopback
        or destination.ipv4_mapped is not None
        or destination.is_link_local
    )


def forwarded(packet: bytes) -> bytes | None:
    """``packet`` with its hop limit decremented, or None when it must not be forwarded
    (hop limit 0 or 1: RFC 8200 §3). The packet is assumed parsed already."""
    hop_limit = packet[7]
    if hop_limit <= 1:
        return None
    return packet[:7] + bytes((hop_limit - 1,)) + packet[8:]


def echo(
    source: IPv6Address, destination: IPv6Address, ident: int, seq: int, data: bytes, *, reply: bool
) -> bytes:
    """An Echo Request (or Reply) packet."""
    kind = ECHO_REPLY if reply else ECHO_REQUEST
    return icmpv6(source, destination, kind, 0, struct.pack("!HH", ident, seq) + data)


@dataclass(frozen=True, slots=True)
class Icmp:
    """An ICMPv6 message read from a packet (checksum verified)."""

    kind: int
    code: int
    body: bytes


def read_icmp(packet: bytes, header: Ipv6Header) -> Icmp | None:
    """The ICMPv6 message of a packet, or None (not ICMPv6, short, bad checksum)."""
    if header.next_header != ICMPV6 or header.payload_length < 4:
        return None
    data = packet[HEADER:]
    if checksum(header.source, header.destination, ICMPV6, data) != 0:
        return None
    return Icmp(data[0], data[1], data[4:])
