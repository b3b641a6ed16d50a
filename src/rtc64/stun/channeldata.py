# ChannelData messages and stream framing (RFC 8656 §12, §12.4, §12.5; RFC 8489 §6.2.2).
#
# Rules:
# - A ChannelData message is a 4-byte header (channel number, length) and the payload.
#   Channel numbers 0x4000-0x7FFF are accepted: RFC 8656 §12 lets clients pick only
#   0x4000-0x4FFF, but RFC 5766 clients (coturn's turnutils_uclient) still use up to 0x7FFF,
#   and coturn, restund and pion accept them; 0x8000+ is not ChannelData.
# - Over UDP the payload may be followed by padding to a multiple of 4 (ignored); any other
#   extra byte or a short payload is malformed. Over TCP/TLS the padding is mandatory, so a
#   frame is 4 + the length rounded up to 4.
# - On a stream the first two bits tell the frames apart: 00 is STUN (20 + length bytes,
#   length a multiple of 4), 01 is ChannelData; 10 and 11 are not TURN and end the stream.
"""ChannelData pack/parse and TURN stream framing."""

from __future__ import annotations

import struct
from typing import Final

from rtc64.errors import LocalProtocolError
from rtc64.stun.reader import StunError

CHANNEL_MIN: Final = 0x4000
CHANNEL_MAX: Final = 0x7FFF
HEADER: Final = struct.Struct("!HH")
HEADER_LENGTH: Final = 4
MAX_PAYLOAD: Final = 0xFFFF


def valid_channel(number: int) -> bool:
    """True for a channel number a client may bind (RFC 8656 §12, RFC 5766 §11 range)."""
    return CHANNEL_MIN <= number <= CHANNEL_MAX


def pack_header(channel: int, length: int) -> bytes:
    """The 4-byte ChannelData header for ``length`` bytes of payload."""
    if not valid_channel(channel):
        raise LocalProtocolError(f"channel 0x{channel:04X} not in 0x4000-0x7FFF")
    if not 0 <= length <= MAX_PAYLOAD:
        raise LocalProtocolError(f"ChannelData length {length} not 0-65535")
    return HEADER.pack(channel, length)


def pack(channel: int, payload: bytes, *, stream: bool = False) -> bytes:
    """A whole ChannelData message; padded to 4 for a stream (TCP/TLS)."""
    pad = bytes(-len(payload) & 3) if stream else b""
    return pack_header(channel, len(payload)) + payload + pad


def parse(data: bytes | memoryview) -> tuple[int, memoryview]:
    """``(channel, payload view)`` of one ChannelData message (datagram or stream frame);
    raises ``StunError`` for a bad channel number or length."""
    size = len(data)
    if size < HEADER_LENGTH:
        raise StunError("ChannelData: shorter than a header")
    channel, length = HEADER.unpack_from(data)
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise StunError(f"ChannelData: channel 0x{channel:04X} not in 0x4000-0x7FFF")
    extra = size - HEADER_LENGTH - length
    if extra < 0 or extra > (-length & 3):
        raise StunError(f"ChannelData: length {length} but {size - HEADER_LENGTH} bytes follow")
    return channel, memoryview(data)[HEADER_LENGTH : HEADER_LENGTH + length]


def frame_length(buf: bytes | bytearray | memoryview) -> int | None:
    """Length of the STUN or ChannelData frame that starts ``buf`` on a TCP/TLS stream.

    ``None`` until the 4 bytes that carry the length have arrived; the caller waits for
    that many bytes. Raises ``StunError`` when the stream holds neither (close it).
    """
    if len(buf) < HEADER_LENGTH:
        return None
    first: int
    length: int
    first, length = HEADER.unpack_from(buf)
    kind = first >> 14
    if kind == 0:
        if length & 3:
            raise StunError("STUN: length not a multiple of 4")
        return 20 + length
    if kind == 1:
        if first > CHANNEL_MAX:
            raise StunError(f"ChannelData: channel 0x{first:04X} not in 0x4000-0x7FFF")
        return HEADER_LENGTH + length + (-length & 3)
    raise StunError("stream: neither STUN nor ChannelData")
