"""Forwarding edits spliced into received bytes."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from rtc64.errors import LocalProtocolError, RemoteProtocolError
from rtc64.sip.edit import Edit, forward_request, forward_response, line_starts
from rtc64.sip.framing import parse_datagram
from rtc64.sip.headers import record_routes, routes
from rtc64.sip.message import Request, make_request
from rtc64.sip.nameaddr import NameAddr
from rtc64.sip.uri import SipUri, parse_uri
from rtc64.sip.via import Via

from .helpers import INVITE, RESPONSE, SDP

NEW_VIA = Via(b"UDP", IPv6Address("2001:db8::1"), None, ((b"branch", b"z9hG4bKnew"),))


def _request(data: bytes = INVITE) -> Request:
    msg = parse_datagram(data)
    assert isinstance(msg, Request)
    return msg


def test_forward_request() -> None:
    req = _request(INVITE + b"trailing junk")
    rr = NameAddr(SipUri(IPv6Address("2001:db8::1"), params=((b"lr", None),)))
    out = forward_request(
        req, via=NEW_VIA, record_route=rr, request_uri=b"sip:bob@[2001:db8::2]", pop_route=True
    )
    fwd = _request(out)
    assert fwd.uri == parse_uri(b"sip:bob@[2001:db8::2]")
    assert fwd.vias == (NEW_VIA, *req.vias)
    assert fwd.max_forwards == 69
    assert record_routes(fwd) == (rr,)
    assert [r.uri for r in routes(fwd)] == [parse_uri(b"sip:p2.example.com;lr")]
    assert fwd.body == SDP and not out.endswith(b"junk")
    # Untouched lines stay byte-exact, folding included.
    assert b"v: SIP/2.0/TCP pc33.atlanta.example.com;branch=z9hG4bK4b43c2ff8.1 ,\r\n SIP" in out
    assert b"X-Unknown:  odd   value ;; ,,\r\n" in out


def test_forward_response_removes_top_via_value() -> None:
    fwd = parse_datagram(forward_response(parse_datagram(RESPONSE)))
    assert len(fwd.vias) == 1 and fwd.via.host == IPv6Address("2001:db8::10")
    # The last Via goes too (a proxy checks first that the response is not its own).
    assert b"Via" not in forward_response(fwd)


def test_remove_whole_via_line_and_folded_value() -> None:
    req = _request()
    once = _request(Edit(req).remove_top_via().to_bytes())
    assert once.vias == req.vias[1:]
    twice = _request(Edit(once).remove_top_via().to_bytes())
    assert twice.vias == req.vias[2:]
    assert b"v: SIP/2.0/UDP 192.0.2.4" in (twice.wire or b"")


def test_max_forwards_rules() -> None:
    zero = _request(INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 0"))
    with pytest.raises(RemoteProtocolError) as info:
        Edit(zero).decrement_max_forwards()
    assert info.value.status == 483
    none = _request(INVITE.replace(b"Max-Forwards: 70\r\n", b""))
    assert _request(Edit(none).decrement_max_forwards().to_bytes()).max_forwards == 70


def test_edit_misuse() -> None:
    resp = parse_datagram(RESPONSE)
    with pytest.raises(LocalProtocolError):
        Edit(resp).decrement_max_forwards()  # type: ignore[arg-type]
    e = Edit(_request()).remove_top_via()
    with pytest.raises(LocalProtocolError):
        e.remove_top_via()
    with pytest.raises(LocalProtocolError):
        Edit(_request()).add_header(b"X", b"a\r\nb")


def test_edit_built_message_and_no_content_length() -> None:
    req = make_request(
        b"OPTIONS",
        b"sip:a@example.com",
        via=NEW_VIA,
        from_=NameAddr(SipUri("example.com", user=b"b"), params=((b"tag", b"1"),)),
        to=NameAddr(SipUri("example.com", user=b"a")),
        call_id=b"c1",
        cseq=1,
    )
    out = Edit(req).add_header(b"X-Added", b"yes").remove_headers(b"max-forwards").to_bytes()
    again = _request(out)
    assert again.get(b"x-added") == b"yes" and again.max_forwards is None
    no_cl = INVITE.replace(b"Content-Length: %d\r\n" % len(SDP), b"")
    out = Edit(_request(no_cl)).to_bytes()
    assert _request(out).get(b"content-length") == b"%d" % len(SDP)


def test_line_starts() -> None:
    starts = line_starts(INVITE)
    req = _request()
    assert len(starts) == len(req.headers) + 1
    assert INVITE[starts[1] : starts[1] + 2] == b"v:"
