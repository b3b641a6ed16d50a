"""Datagram and stream framing."""

from __future__ import annotations

import pytest

from rtc64.errors import RemoteProtocolError
from rtc64.sip.framing import (
    CLOSED,
    NEED_DATA,
    KeepAlive,
    StreamFramer,
    is_keepalive,
    parse_datagram,
)
from rtc64.sip.message import Request, Response

from .helpers import INVITE, RESPONSE, SDP


def test_datagram_rules() -> None:
    assert parse_datagram(INVITE + b"junk after body").body == SDP
    no_cl = INVITE.replace(b"Content-Length: %d\r\n" % len(SDP), b"")
    assert parse_datagram(no_cl + b"tail").body == SDP + b"tail"
    assert isinstance(parse_datagram(b"\r\n" + RESPONSE), Response)
    for data, words in [
        (b"", "empty"),
        (INVITE[:-1], "larger than body"),
        (RESPONSE[:-2], "empty line"),
        (INVITE.replace(b"Content-Length: ", b"Content-Length: -"), "Content-Length"),
        (b"INVITE sip:a@b SIP/2.0", "empty line"),
    ]:
        with pytest.raises(RemoteProtocolError) as info:
            parse_datagram(data)
        assert words in info.value.reason and info.value.status == 400
    assert is_keepalive(b"\r\n\r\n") and is_keepalive(b"\r\n") and not is_keepalive(b"")


def _events(framer: StreamFramer) -> list[object]:
    out: list[object] = []
    while True:
        ev = framer.next_event()
        if ev is NEED_DATA or ev is CLOSED:
            return out
        out.append(ev)


def test_stream_whole_and_byte_by_byte() -> None:
    stream = b"\r\n\r\n" + INVITE + RESPONSE + b"\r\n\r\n" + INVITE
    whole = StreamFramer()
    whole.receive_data(stream)
    events = _events(whole)
    assert [type(e) for e in events] == [KeepAlive, Request, Response, KeepAlive, Request]
    assert events[0] is KeepAlive.PING
    slow = StreamFramer()
    got: list[object] = []
    for i in range(len(stream)):
        slow.receive_data(stream[i : i + 1])
        got += _events(slow)
    assert [e for e in got if not isinstance(e, KeepAlive)] == [
        e for e in events if not isinstance(e, KeepAlive)
    ]
    slow.receive_data(b"")
    assert slow.next_event() is CLOSED


def test_stream_pong_and_eof() -> None:
    f = StreamFramer()
    f.receive_data(b"\r\n")
    assert f.next_event() is KeepAlive.PONG
    assert f.next_event() is NEED_DATA
    f.receive_data(INVITE[:100])
    assert f.next_event() is NEED_DATA
    f.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        f.next_event()


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (INVITE.replace(b"Content-Length: %d\r\n" % len(SDP), b""), 400),
        (INVITE.replace(b"Content-Length: ", b"Content-Length: x"), 400),
        (b"garbage without colon\r\nfoo\r\n\r\n", 400),
        (INVITE.replace(b"Content-Length: %d" % len(SDP), b"Content-Length: 99999"), 513),
        (b"X" * 5000, 513),
    ],
)
def test_stream_framing_errors_break_the_framer(data: bytes, status: int) -> None:
    f = StreamFramer(max_size=4096)
    f.receive_data(data)
    with pytest.raises(RemoteProtocolError) as info:
        f.next_event()
    assert info.value.status == status
    assert f.broken
    with pytest.raises(RemoteProtocolError):
        f.next_event()


def test_stream_message_error_keeps_framing() -> None:
    bad = INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE")
    f = StreamFramer()
    f.receive_data(bad + RESPONSE)
    with pytest.raises(RemoteProtocolError):
        f.next_event()
    assert not f.broken
    assert isinstance(f.next_event(), Response)
