"""The registrar's answers written from the request's lines (``sip.reply``) are byte for
byte what the model path wrote: ``serialize(make_response(with_stamped_via(...)))``."""

from __future__ import annotations

from ipaddress import ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtc64.errors import LocalProtocolError
from rtc64.gateway.location.register import RegisterReply
from rtc64.gateway.proxy import hops
from rtc64.net.endpoint import Flow, Transport
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import make_response
from rtc64.sip.reply import response_bytes
from rtc64.sip.serializer import serialize

GW = (ip_address("192.0.2.1"), 5060)


def register(
    vias: list[bytes], *, to: bytes = b"<sip:bob@example.com>", extra: bytes = b""
) -> bytes:
    head = b"".join(b"Via: %s\r\n" % v for v in vias)
    return (
        b"REGISTER sip:example.com SIP/2.0\r\n" + head + b"Max-Forwards: 70\r\n"
        b"From: <sip:bob@example.com>;tag=f1\r\nTo: " + to + b"\r\n"
        b"Call-ID: c1@h\r\nCSeq: 7 REGISTER\r\n"
        b"Contact: <sip:bob@198.51.100.7:5070>\r\n" + extra + b"Content-Length: 0\r\n\r\n"
    )


def old_path(
    data: bytes, flow: Flow, status: int, headers: tuple[tuple[bytes, bytes], ...]
) -> bytes:
    req = parse_datagram(data)
    stamped = hops.with_stamped_via(req, flow)
    return serialize(make_response(stamped, status, None, to_tag=b"t9", headers=headers))


def new_path(
    data: bytes, flow: Flow, status: int, headers: tuple[tuple[bytes, bytes], ...]
) -> bytes:
    req = parse_datagram(data)
    return RegisterReply(status, None, headers).wire(req, b"t9", hops.stamp_top_via(req, flow))


SENT_BY = [b"198.51.100.7:5070", b"198.51.100.7", b"[2001:db8::7]:5070", b"phone.example.com"]
PARAMS = [
    b";branch=z9hG4bK1",
    b";rport;branch=z9hG4bK1",
    b";branch=z9hG4bK1;rport",
    b";received=10.0.0.1;branch=z9hG4bK1",
    b";rport=1;branch=z9hG4bK1",
    b" ; rport ; branch=z9hG4bKx",
]
MORE = [b"SIP/2.0/UDP p.example;branch=z9hG4bK2", b"SIP/2.0/TCP [2001:db8::9];branch=z9hG4bK3"]
SOURCES = [
    ("198.51.100.7", 5070),
    ("203.0.113.9", 40000),
    ("2001:db8::7", 5070),
    ("::ffff:198.51.100.7", 9),
]
HEADERS = [
    (),
    ((b"Contact", b"<sip:bob@198.51.100.7:5070>;expires=3600"), (b"Date", b"x")),
    ((b"Min-Expires", b"60"),),
    ((b"Content-Length", b"99"), (b"Retry-After", b"1")),
]


@settings(max_examples=300, deadline=None)
@given(
    sent_by=st.sampled_from(SENT_BY),
    params=st.sampled_from(PARAMS),
    more=st.lists(st.sampled_from(MORE), max_size=2),
    one_line=st.booleans(),
    source=st.sampled_from(SOURCES),
    status=st.sampled_from([100, 200, 401, 423, 500]),
    tagged=st.booleans(),
    headers=st.sampled_from(HEADERS),
)  # fmt: skip
def test_same_bytes_as_the_model_path(
    sent_by: bytes, params: bytes, more: list[bytes], one_line: bool, source: tuple[str, int],
    status: int, tagged: bool, headers: tuple[tuple[bytes, bytes], ...],
) -> None:  # fmt: skip
    top = b"SIP/2.0/UDP " + sent_by + params
    vias = [b", ".join([top, *more])] if one_line else [top, *more]
    to = b"<sip:bob@example.com>;tag=old" if tagged else b"<sip:bob@example.com>"
    data = register(vias, to=to)
    flow = Flow(Transport.UDP, GW, (ip_address(source[0]), source[1]))
    assert new_path(data, flow, status, headers) == old_path(data, flow, status, headers)


def test_the_stamped_via_and_the_tag_are_written() -> None:
    data = register(
        [b"SIP/2.0/UDP 198.51.100.7:5070;rport;branch=z9hG4bK1", b"SIP/2.0/UDP h;branch=z9hG4bK2"]
    )
    flow = Flow(Transport.UDP, GW, (ip_address("203.0.113.9"), 40000))
    out = new_path(data, flow, 200, ((b"Contact", b"<sip:a@b>;expires=60"),))
    assert out.startswith(b"SIP/2.0 200 OK\r\n")
    assert (
        b"Via: SIP/2.0/UDP 198.51.100.7:5070;rport=40000;branch=z9hG4bK1;received=203.0.113.9\r\n"
        in out
    )
    assert b"Via: SIP/2.0/UDP h;branch=z9hG4bK2\r\n" in out
    assert b"To: <sip:bob@example.com>;tag=t9\r\n" in out
    assert out.endswith(b"Contact: <sip:a@b>;expires=60\r\nContent-Length: 0\r\n\r\n")
    assert parse_datagram(out).status == 200  # type: ignore[union-attr]


def test_a_copied_name_among_the_extra_lines_takes_the_full_path() -> None:
    """A Via/From/To/Call-ID/CSeq among the extras is refused as ``make_response``
    refuses it (the whole response is checked), whichever path writes it."""
    req = parse_datagram(register([b"SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK1"]))
    with pytest.raises(LocalProtocolError):
        response_bytes(req, 200, headers=[(b"CSeq", b"8 REGISTER")], to_tag=b"t")
    with pytest.raises(LocalProtocolError):
        response_bytes(
            req, 200, headers=[(b"cseq", b"8 REGISTER")], to_tag=b"t", top_via=b"SIP/2.0/UDP x"
        )


@pytest.mark.parametrize(
    "line", [(b"Bad Name", b"v"), (b"X-Ok", b"a\r\nInjected: 1"), (b"X-Ok", b" padded")]
)
def test_extra_lines_are_checked(line: tuple[bytes, bytes]) -> None:
    """A header name that is not a token or a value that would inject a line is our bug,
    never written (``LocalProtocolError``, as ``make_response``)."""
    req = parse_datagram(register([b"SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK1"]))
    with pytest.raises(LocalProtocolError):
        response_bytes(req, 200, headers=[line], to_tag=b"t")


def test_a_reason_with_a_line_break_is_refused() -> None:
    req = parse_datagram(register([b"SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK1"]))
    with pytest.raises(LocalProtocolError):
        response_bytes(req, 403, b"Forbidden\r\nX: 1", to_tag=b"t")
