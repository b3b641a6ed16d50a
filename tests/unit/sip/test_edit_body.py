"""Edit.set_body: the body is replaced and Content-Length follows, other lines untouched."""

from __future__ import annotations

from rtc64.sip.edit import Edit
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request

INVITE = (
    b"INVITE sip:bob@example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK776\r\n"
    b"To: <sip:bob@example.net>\r\nFrom: <sip:a@example.net>;tag=1\r\n"
    b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
    b"Content-Type: application/sdp\r\nl: 9\r\n\r\nv=0\r\nx=1\r\n"
)


def test_set_body_rewrites_every_content_length_and_keeps_the_rest() -> None:
    req = parse_datagram(INVITE)
    assert isinstance(req, Request)
    out = Edit(req).set_body(b"v=0\r\no=longer body\r\n").decrement_max_forwards().to_bytes()
    again = parse_datagram(out)
    assert again.body == b"v=0\r\no=longer body\r\n"
    assert b"l: 20\r\n" in out, "the compact name is kept"
    assert b"Max-Forwards: 69\r\n" in out
    assert out.startswith(INVITE.split(b"Max-Forwards")[0])


def test_set_body_on_a_message_without_content_length_adds_one() -> None:
    data = INVITE.replace(b"l: 9\r\n", b"")
    req = parse_datagram(data)
    out = Edit(req).set_body(b"abc").to_bytes()
    assert parse_datagram(out).body == b"abc"
    assert b"Content-Length: 3\r\n" in out
