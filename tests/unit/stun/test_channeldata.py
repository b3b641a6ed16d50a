"""ChannelData pack/parse, channel range, UDP padding, TCP stream framing."""

from __future__ import annotations

import pytest

from rtc64.errors import LocalProtocolError
from rtc64.stun import StunError
from rtc64.stun import attributes as a
from rtc64.stun.channeldata import (
    CHANNEL_MAX,
    CHANNEL_MIN,
    frame_length,
    pack,
    pack_header,
    parse,
    valid_channel,
)
from rtc64.stun.message import Class, Method, build, encode


def test_range() -> None:
    assert (CHANNEL_MIN, CHANNEL_MAX) == (0x4000, 0x7FFF)  # RFC 5766 range (coturn clients)
    assert valid_channel(0x4000)
    assert valid_channel(0x7FFF)
    assert not valid_channel(0x3FFF)
    assert not valid_channel(0x8000)
    for bad in (0x3FFF, 0x8000, 0xFFFF, 0):
        with pytest.raises(LocalProtocolError):
            pack_header(bad, 0)
    with pytest.raises(LocalProtocolError):
        pack_header(0x4000, 65536)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 7, 8, 1200])
def test_round_trip_udp_and_stream(size: int) -> None:
    payload = bytes(range(256)) * (size // 256 + 1)
    payload = payload[:size]
    udp = pack(0x4001, payload)
    assert len(udp) == 4 + size
    channel, data = parse(udp)
    assert (channel, bytes(data)) == (0x4001, payload)
    tcp = pack(0x4FFF, payload, stream=True)
    assert len(tcp) % 4 == 0
    assert frame_length(tcp) == len(tcp)
    channel, data = parse(tcp)
    assert (channel, bytes(data)) == (0x4FFF, payload)


def test_parse_refuses() -> None:
    for bad in (
        b"\x40\x00\x00",  # short header
        b"\x80\x00\x00\x00",  # beyond the channel range (RFC 5766: up to 0x7FFF)
        b"\x3f\xff\x00\x00",  # STUN range
        b"\x40\x00\x00\x05abcd",  # short payload
        b"\x40\x00\x00\x01abcde",  # more than padding
        b"\x40\x00\x00\x04abcd\0",  # length multiple of 4: no padding allowed
    ):
        with pytest.raises(StunError):
            parse(bad)
    assert bytes(parse(b"\x40\x00\x00\x01a\0\0\0")[1]) == b"a"  # UDP padding ignored


def test_frame_length() -> None:
    stun = encode(build(Method.BINDING, Class.REQUEST, bytes(12), a.SOFTWARE("x")))
    for n in range(4):
        assert frame_length(stun[:n]) is None
    assert frame_length(stun[:4]) == len(stun)
    assert frame_length(memoryview(stun + b"\x40\x00")) == len(stun)
    assert frame_length(bytearray(b"\x40\x00\x00\x05")) == 12
    assert frame_length(b"\x40\x00\x00\x00") == 4
    assert frame_length(b"\x4f\xff\xff\xff") == 4 + 65536
    for bad in (b"\x80\x00\x00\x00", b"\xc0\x00\x00\x00", b"\x00\x01\x00\x03"):
        with pytest.raises(StunError):
            frame_length(bad)
