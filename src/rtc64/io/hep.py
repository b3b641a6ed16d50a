# HEPv3 capture (Homer's HEP3 specification, no RFC): every SIP message the gateway
# receives or sends is copied, one UDP datagram per message, to a collector over IPv4 or
# IPv6.
#
# Rules:
# - Packet: "HEP3", total length (16 bits), then chunks of vendor 0: (vendor 16, type 16,
#   length 16 including these 6 bytes, value). Chunks: 1 IP family (2 = IPv4, 10 = IPv6),
#   2 IP protocol (17 UDP, 6 TCP for TCP/TLS/WS/WSS), 3/4 IPv4 source/destination or 5/6
#   IPv6 source/destination (the family of the SIP packet, not of the collector), 7/8
#   source/destination ports, 9/10 timestamp seconds/microseconds, 11 protocol type
#   (1 = SIP), 12 capture agent id, 15 payload.
# - An IPv4-mapped IPv6 address is captured as the IPv4 address it carries.
# - Capture never slows the SIP path: one non-blocking connected socket; a send that would
#   block, fails (ICMP unreachable from the collector) or a message too large for one HEP
#   packet is dropped and counted, never retried, never raised.
"""HEPv3 encoding and the non-blocking sender that copies SIP traffic to a collector."""

from __future__ import annotations

import logging
import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from rtc64.net.address import IPAddress
from rtc64.net.endpoint import Flow, ListenSpec, Transport

MAGIC = b"HEP3"
HEADER = struct.Struct("!4sH")
CHUNK = struct.Struct("!HHH")
MAX_PACKET = 65_535
OVERHEAD = 6 + 11 * 6 + 1 + 1 + 16 + 16 + 2 + 2 + 4 + 4 + 1 + 4  # header, chunk heads, IPv6

FAMILY_IPV4 = 2
FAMILY_IPV6 = 10
PROTO_UDP = 17
PROTO_TCP = 6
PROTO_TYPE_SIP = 1

IP_FAMILY = 1
IP_PROTO = 2
IPV4_SRC = 3
IPV4_DST = 4
IPV6_SRC = 5
IPV6_DST = 6
SRC_PORT = 7
DST_PORT = 8
TIME_SEC = 9
TIME_USEC = 10
PROTO_TYPE = 11
CAPTURE_ID = 12
PAYLOAD = 15


def _chunk(kind: int, value: bytes) -> bytes:
    return CHUNK.pack(0, kind, CHUNK.size + len(value)) + value


def _plain(address: IPAddress) -> IPAddress:
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def encode(
    payload: bytes,
    *,
    transport: Transport,
    src: tuple[IPAddress, int],
    dst: tuple[IPAddress, int],
    timestamp: float,
    capture_id: int,
) -> bytes | None:
    """One HEPv3 packet carrying ``payload`` (a SIP message); None when it cannot fit in
    one packet or the two addresses are of different families."""
    src_ip, dst_ip = _plain(src[0]), _plain(dst[0])
    if src_ip.version != dst_ip.version or len(payload) > MAX_PACKET - OVERHEAD:
        return None
    if isinstance(src_ip, IPv4Address):
        family, kinds = FAMILY_IPV4, (IPV4_SRC, IPV4_DST)
    else:
        family, kinds = FAMILY_IPV6, (IPV6_SRC, IPV6_DST)
    seconds = int(timestamp)
    micros = min(int((timestamp - seconds) * 1_000_000), 999_999)
    body = b"".join(
        (
            _chunk(IP_FAMILY, bytes((family,))),
            _chunk(IP_PROTO, bytes((PROTO_UDP if transport is Transport.UDP else PROTO_TCP,))),
            _chunk(kinds[0], src_ip.packed),
            _chunk(kinds[1], dst_ip.packed),
            _chunk(SRC_PORT, struct.pack("!H", src[1])),
            _chunk(DST_PORT, struct.pack("!H", dst[1])),
            _chunk(TIME_SEC, struct.pack("!I", seconds & 0xFFFFFFFF)),
            _chunk(TIME_USEC, struct.pack("!I", micros)),
            _chunk(PROTO_TYPE, bytes((PROTO_TYPE_SIP,))),
            _chunk(CAPTURE_ID, struct.pack("!I", capture_id)),
            _chunk(PAYLOAD, payload),
        )
    )
    total = HEADER.size + len(body)
    if total > MAX_PACKET:
        return None
    return HEADER.pack(MAGIC, total) + body


@dataclass(slots=True)
class HepStats:
    """What the capture did: packets sent, dropped (would block, refused, too large)."""

    sent: int = 0
    dropped: int = 0
    too_large: int = 0
    errors: int = 0


class HepCapture:
    """Copies SIP messages to a HEP collector (a ``Tap`` of the SIP transport layer)."""

    def __init__(
        self,
        collector: ListenSpec,
        capture_id: int,
        *,
        log: logging.Logger,
    ) -> None:
        self.collector = collector
        self.capture_id = capture_id
        self.log = log
        self.stats = HepStats()
        family = socket.AF_INET6 if collector.address.version == 6 else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._sock.connect((str(collector.address), collector.port))
        self._warned = False

    def close(self) -> None:
        self._sock.close()

    def received(self, data: bytes, flow: Flow, now: float) -> None:
        self._capture(data, flow.transport, flow.remote, flow.local, now)

    def sent(self, data: bytes, flow: Flow, now: float) -> None:
        self._capture(data, flow.transport, flow.local, flow.remote, now)

    def _capture(
        self,
        data: bytes,
        transport: Transport,
        src: tuple[IPAddress, int],
        dst: tuple[IPAddress, int],
        now: float,
    ) -> None:
        packet = encode(
            data, transport=transport, src=src, dst=dst, timestamp=now, capture_id=self.capture_id
        )
        if packet is None:
            self.stats.too_large += 1
            self.stats.dropped += 1
            return
        try:
            self._sock.send(packet)
        except BlockingIOError:
            self.stats.dropped += 1
        except OSError as exc:
            self.stats.dropped += 1
            self.stats.errors += 1
            if not self._warned:
                self._warned = True
                self.log.warning("HEP capture to %s failing: %s (counted)", self.collector, exc)
        else:
            self.stats.sent += 1
