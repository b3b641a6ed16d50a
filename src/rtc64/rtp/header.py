# RTP/RTCP header reading for statistics (RFC 3550 §5.1, §6.1, §6.4, §A.2; RFC 5761 §4;
# RFC 3551 §6 static payload types).
#
# Rules:
# - Nothing here builds a per-packet object: fields come from ``struct.unpack_from`` on the
#   datagram as received; callers get plain ints (or ``None`` for a packet that is not RTP).
# - rtcp-mux demultiplexing (RFC 5761 §4): the second octet with the marker bit masked off
#   in 64..95 is RTCP (packet types 192..223); anything else with version 2 is RTP.
# - A short packet, a version other than 2, or an RTCP compound whose lengths do not add up
#   (RFC 3550 §A.2) is malformed: reported as ``None``, never raised.
# - Clock rates: the RFC 3551 table for static payload types, ``a=rtpmap`` for dynamic
#   ones; G.722 is 8000 on the wire whatever its sampling rate (RFC 3551 §4.5.2).
"""Read RTP and RTCP headers without building packet objects."""

from __future__ import annotations

import struct
from collections.abc import Iterable

RTP_VERSION = 2
RTP_HEADER = struct.Struct("!BBHII")
"""V/P/X/CC, M/PT, sequence number, timestamp, SSRC (RFC 3550 §5.1)."""
RTP_HEADER_LENGTH = RTP_HEADER.size
RTCP_HEADER = struct.Struct("!BBHI")
"""V/P/RC, packet type, length in 32-bit words minus one, SSRC of sender (RFC 3550 §6.4)."""
RTCP_HEADER_LENGTH = RTCP_HEADER.size

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
RTCP_RTPFB = 205
RTCP_PSFB = 206
RTCP_XR = 207

RTCP_MUX_LOW = 64
RTCP_MUX_HIGH = 95
"""RFC 5761 §4: RTP payload types 64..95 collide with RTCP 192..223 and are never RTP."""

STATIC_CLOCK_RATES: dict[int, int] = {
    0: 8000,  # PCMU
    3: 8000,  # GSM
    4: 8000,  # G723
    5: 8000,  # DVI4
    6: 16000,  # DVI4
    7: 8000,  # LPC
    8: 8000,  # PCMA
    9: 8000,  # G722 (RFC 3551 §4.5.2)
    10: 44100,  # L16 stereo
    11: 44100,  # L16 mono
    12: 8000,  # QCELP
    13: 8000,  # CN
    14: 90000,  # MPA
    15: 8000,  # G728
    16: 11025,  # DVI4
    17: 22050,  # DVI4
    18: 8000,  # G729
    25: 90000,  # CelB
    26: 90000,  # JPEG
    28: 90000,  # nv
    31: 90000,  # H261
    32: 90000,  # MPV
    33: 90000,  # MP2T
    34: 90000,  # H263
}
"""RFC 3551 §6 table 4 and 5: clock rate of each static payload type."""


def is_rtcp(data: bytes) -> bool:
    """True if a datagram on an rtcp-mux port is RTCP (RFC 5761 §4)."""
    return len(data) >= 2 and RTCP_MUX_LOW <= (data[1] & 0x7F) <= RTCP_MUX_HIGH


def read_rtp(data: bytes) -> tuple[int, int, int, int] | None:
    """``(payload type, sequence number, timestamp, SSRC)`` of an RTP packet, else ``None``."""
    if len(data) < RTP_HEADER_LENGTH:
        return None
    first, second, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
    pt = second & 0x7F
    if first >> 6 != RTP_VERSION or RTCP_MUX_LOW <= pt <= RTCP_MUX_HIGH:
        return None
    return pt, seq, ts, ssrc


def rtcp_packet_types(data: bytes) -> list[int] | None:
    """Packet types of an RTCP compound packet, in order; ``None`` if malformed (§A.2)."""
    out: list[int] = []
    offset = 0
    size = len(data)
    while offset < size:
        if size - offset < 4:
            return None
        first, pt, length = struct.unpack_from("!BBH", data, offset)
        if first >> 6 != RTP_VERSION:
            return None
        out.append(pt)
        offset += (length + 1) * 4
    if offset != size or not out:
        return None
    return out


def rtcp_sender_ssrc(data: bytes) -> int | None:
    """SSRC of the sender of the first RTCP packet of a compound, if present."""
    if len(data) < RTCP_HEADER_LENGTH or data[0] >> 6 != RTP_VERSION:
        return None
    return int(RTCP_HEADER.unpack_from(data)[3])


def clock_rates(
    rtpmaps: Iterable[tuple[int, str, int]], formats: Iterable[str] = ()
) -> dict[int, int]:
    """Payload type → RTP clock rate from ``(pt, encoding, rate)`` rtpmaps and static types.

    ``formats`` (the ``m=`` format list) adds the static types it names without rtpmap.
    """
    out: dict[int, int] = {}
    for fmt in formats:
        if fmt.isdigit() and int(fmt) in STATIC_CLOCK_RATES:
            out[int(fmt)] = STATIC_CLOCK_RATES[int(fmt)]
    for pt, encoding, rate in rtpmaps:
        if 0 <= pt <= 127 and rate > 0:
            out[pt] = 8000 if encoding.upper() == "G722" else rate
    return out
