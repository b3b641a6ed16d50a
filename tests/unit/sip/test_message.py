"""Parser, model, header lookups and builders."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from rtc64.errors import LocalProtocolError, RemoteProtocolError
from rtc64.sip.framing import parse_datagram
from rtc64.sip.headers import (
    STAR,
    Header,
    contact_q,
    contacts,
    content_type,
    date,
    expires,
    header_key,
    record_routes,
    routes,
    tokens,
    validate,
    wire_name,
)
from rtc64.sip.message import (
    Request,
    Response,
    build_request,
    make_request,
    make_response,
    new_branch,
)
from rtc64.sip.nameaddr import NameAddr, parse_name_addr
from rtc64.sip.serializer import serialize
from rtc64.sip.uri import SipUri, TelUri, format_uri, parse_uri, uri_equal
from rtc64.sip.via import Via, parse_via

from .helpers import INVITE, RESPONSE, SDP


def _replace(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new, 1)


def test_invite_essentials() -> None:
    msg = parse_datagram(INVITE)
    assert isinstance(msg, Request)
    assert msg.method == b"INVITE" and msg.body == SDP
    assert [(v.transport, v.host, v.port) for v in msg.vias] == [
        (b"UDP", IPv6Address("2001:db8::10"), 5060),
        (b"TCP", "pc33.atlanta.example.com", None),
        (b"UDP", IPv4Address("192.0.2.4"), None),
    ]
    assert msg.via.has_rport and msg.via.branch == b"z9hG4bK776asdhds"
    assert msg.max_forwards == 70 and msg.cseq.seq == 314159
    assert msg.from_.tag == b"1928301774" and msg.to.tag is None
    assert msg.from_.display_name == b"Alice" and msg.to.display == b"Bob"
    assert msg.get(b"x-unknown") == b"odd   value ;; ,,"
    assert msg.headers[1] == Header(
        b"v",
        b"SIP/2.0/TCP pc33.atlanta.example.com;"
        b"branch=z9hG4bK4b43c2ff8.1 , SIP/2.0/UDP 192.0.2.4;"
        b"branch=z9hG4bK2",
    )
    assert msg.headers[1].key == b"via"
    assert [r.uri for r in routes(msg)] == [
        parse_uri(b"sip:p1.example.com;lr"),
        parse_uri(b"sip:p2.example.com;lr"),
    ]
    assert record_routes(msg) == ()
    assert content_type(msg) == b"application/sdp"


def test_response_essentials() -> None:
    msg = parse_datagram(RESPONSE)
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (180, b"Ringing")
    assert msg.vias[1].rport == 5060
    assert msg.vias[1].received == IPv6Address("2001:db8::99")
    assert msg.to.tag == b"a6c85cf"


def test_compact_names() -> None:
    table = {
        b"i": b"call-id",
        b"m": b"contact",
        b"e": b"content-encoding",
        b"l": b"content-length",
        b"c": b"content-type",
        b"f": b"from",
        b"s": b"subject",
        b"k": b"supported",
        b"t": b"to",
        b"v": b"via",
        b"o": b"event",
        b"u": b"allow-events",
        b"r": b"refer-to",
        b"b": b"referred-by",
        b"x": b"session-expires",
        b"y": b"identity",
        b"n": b"identity-info",
        b"a": b"accept-contact",
        b"j": b"reject-contact",
        b"d": b"request-disposition",
    }
    for compact, key in table.items():
        assert header_key(compact) == key == header_key(compact.upper())
        assert header_key(wire_name(key)) == key
    assert wire_name(b"call-id") == b"Call-ID" and wire_name(b"x-foo-bar") == b"X-Foo-Bar"
    with pytest.raises(RemoteProtocolError):
        header_key(b"bad name")


@pytest.mark.parametrize(
    ("old", "new", "status", "words"),
    [
        (b"CSeq: 314159 INVITE", b"CSeq: 2147483648 INVITE", 400, "CSeq number out of range"),
        (b"CSeq: 314159 INVITE", b"CSeq: 2147483647 INVITE", 0, ""),
        (b"CSeq: 314159 INVITE", b"CSeq: 1 BYE", 400, "CSeq method"),
        (b"CSeq: 314159 INVITE", b"CSeq: x INVITE", 400, "CSeq"),
        (b"Max-Forwards: 70", b"Max-Forwards: 256", 400, "Max-Forwards out of range"),
        (b"Max-Forwards: 70", b"Max-Forwards: 255", 0, ""),
        (b"Max-Forwards: 70", b"Max-Forwards: -1", 400, "Max-Forwards"),
        (b"Call-ID: a84b", b"Call-ID: a 84b", 400, "Call-ID"),
        (b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n", b"", 400, "missing Call-ID"),
        (
            b"INVITE sip:bob@biloxi.example.com SIP/2.0",
            b"INVITE sip:bob@biloxi.example.com SIP/3.0",
            505,
            "Version Not Supported",
        ),
        (b"INVITE sip:", b"INVITE\tsip:", 400, "Request-Line"),
        (b"INVITE sip:bob@biloxi.example.com", b"INVITE sip:bob@[::1", 400, "IPv6"),
        (b"INVITE sip:bob@biloxi.example.com", b"INVITE sip:bob@", 400, "host"),
        (b"To: Bob <sip:bob@biloxi.example.com>", b"To: Bob sip:bob@biloxi.example.com", 400, "To"),
        (b"To: Bob <sip:", b"To: Bob <sips:%zz@", 400, "%-escape"),
        (b"SIP/2.0/UDP [2001:db8::10]:5060", b"SIP/2.0/UDP [2001:db8::10]:99999", 400, "port"),
        (b";rport\r\n", b";ttl=300\r\n", 400, "ttl"),
        (b";rport\r\n", b";received=example.com\r\n", 400, "received"),
        (b";rport\r\n", b";rport=x\r\n", 400, "rport"),
        (b"Via: SIP/2.0/UDP", b"Via: SIP/2.1/UDP", 505, "Via protocol"),
        (b"Via: SIP/2.0/UDP", b"Via: SIP/2.0/U;DP", 400, "transport"),
        (b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nBroken header\r\n", 400, "':'"),
        (b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nBad\x00Name: x\r\n", 400, "header name"),
        (b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\nX: y\r\n", 400, "bare CR or LF"),
        (b"Content-Length: ", b"Content-Length: 1", 400, "larger than body"),
        (b"Content-Length: ", b"Content-Length: 0x", 400, "Content-Length"),
    ],
)
def test_invalid_values(old: bytes, new: bytes, status: int, words: str) -> None:
    data = _replace(INVITE, old, new)
    if status == 0:
        parse_datagram(data)
        return
    with pytest.raises(RemoteProtocolError) as info:
        parse_datagram(data)
    assert info.value.status == status
    assert words in info.value.reason


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (b"SIP/2.0 99 Low", 400),
        (b"SIP/2.0 700 High", 400),
        (b"SIP/2.0 200", 400),
        (b"SIP/2.0 200 OK ", 0),
        (b"SIP/2.1 200 OK", 505),
        (b"sip/2.0 200 OK", 0),
    ],
)
def test_status_line(line: bytes, status: int) -> None:
    data = _replace(RESPONSE, b"SIP/2.0 180 Ringing", line)
    if status == 0:
        assert isinstance(parse_datagram(data), Response)
    else:
        with pytest.raises(RemoteProtocolError) as info:
            parse_datagram(data)
        assert info.value.status == status


def test_uris() -> None:
    u = parse_uri(b"sips:Alice:secret@[2001:db8::1]:5061;transport=tcp;lr?Subject=hi&X=%20")
    assert isinstance(u, SipUri) and u.secure
    assert (u.user, u.password, u.host, u.port) == (
        b"Alice",
        b"secret",
        IPv6Address("2001:db8::1"),
        5061,
    )
    assert u.param(b"transport") == b"tcp" and u.has_param(b"lr") and not u.has_param(b"maddr")
    assert u.headers == ((b"Subject", b"hi"), (b"X", b"%20"))
    assert parse_uri(format_uri(u)) == u
    assert parse_uri(b"SIP:Example.COM") == SipUri("example.com")
    tel = parse_uri(b"tel:+1-201-555-0123;ext=12")
    assert tel == TelUri(b"+1-201-555-0123", ((b"ext", b"12"),))
    assert format_uri(tel) == b"tel:+1-201-555-0123;ext=12"
    for bad in (
        b"sip:",
        b"sip:user@",
        b"sip:a b",
        b"x y:z",
        b":x",
        b"sip:h;",
        b"sip:h?x",
        b"tel:",
        b"urn:",
        b"sip:2001:db8::1",
        b"sip:h:70000",
    ):
        with pytest.raises(RemoteProtocolError):
            parse_uri(bad)


def test_uri_equal_rfc3261() -> None:
    def eq(a: bytes, b: bytes) -> bool:
        return uri_equal(parse_uri(a), parse_uri(b))

    assert eq(b"sip:%61lice@atlanta.com;transport=TCP", b"sip:alice@AtLanTa.CoM;Transport=tcp")
    assert eq(b"sip:carol@chicago.com", b"sip:carol@chicago.com;newparam=5")
    assert eq(b"sip:[2001:db8::1]", b"sip:[2001:DB8:0::1]")
    assert not eq(b"sip:ALICE@atlanta.com", b"sip:alice@atlanta.com")
    assert not eq(b"sip:bob@biloxi.com", b"sip:bob@biloxi.com:5060")
    assert not eq(b"sip:bob@biloxi.com", b"sip:bob@biloxi.com;transport=udp")
    assert not eq(b"sip:carol@chicago.com;security=on", b"sip:carol@chicago.com;security=off")
    assert not eq(b"sip:a@b.com?x=1", b"sip:a@b.com")
    assert not eq(b"sip:a@b.com", b"sips:a@b.com")


def test_name_addr_forms() -> None:
    na = parse_name_addr(b'"A \\"B\\"" <sip:a@b.com;lr>;tag=1;x="y;z"', "To")
    assert na.display_name == b'A "B"' and na.tag == b"1" and na.param(b"x") == b'"y;z"'
    assert parse_name_addr(bytes(na), "To") == na
    na = parse_name_addr(b"sip:a@b.com;tag=2", "To")
    assert na.display is None and na.tag == b"2"
    assert isinstance(na.uri, SipUri) and na.uri.params == ()
    for bad in (
        b'"open <sip:a@b>',
        b"< sip:a@b>",
        b"A, B <sip:a@b>",
        b"<sip:a@b",
        b"<>",
        b"sip:a@b?x=y",
        b'"x" sip:a@b',
        b"<sip:a@b> junk",
        b"<sip:a@b>;;",
    ):
        with pytest.raises(RemoteProtocolError):
            parse_name_addr(bad, "To")
    with pytest.raises(RemoteProtocolError):
        parse_name_addr(b"sip:p1.example.com;lr", "Route", angle=True)


def test_via_lws_and_params() -> None:
    v = parse_via(b"SIP / 2.0 / tcp  host.example.com : 5070 ; branch = z9hG4bKx ; maddr=[::1]")
    assert (v.transport, v.host, v.port, v.branch) == (
        b"TCP",
        "host.example.com",
        5070,
        b"z9hG4bKx",
    )
    assert v.maddr == IPv6Address("::1") and v.ttl is None
    assert parse_via(bytes(v)) == v
    assert parse_via(b"SIP/2.0/UDP h;ttl=16;rport").ttl == 16
    for bad in (
        b"SIP/2.0/UDP",
        b"SIP/2.0 UDP h",
        b"SIP/2.0/UDP h 5060",
        b"SIP/2.0/UDP h;",
        b"SIP/2.0/UDP h;branch",
        b"HTTP/2.0/UDP h",
        b"SIP/2.0/UDP h;maddr",
    ):
        with pytest.raises(RemoteProtocolError):
            parse_via(bad)


def test_typed_headers() -> None:
    base = INVITE.replace(b"Content-Type: application/sdp\r\n", b"")
    extra = (
        b"Expires: 3600\r\nDate: Sat, 13 Nov 2010 23:29:00 GMT\r\nRequire: 100rel, timer\r\n"
        b"Contact: <sip:b@c.com>;q=0.5;expires=60\r\n"
    )
    msg = parse_datagram(_replace(base, b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\n" + extra))
    validate(msg)
    assert expires(msg) == 3600
    found = contacts(msg)
    assert found is not STAR and len(found) == 2 and contact_q(found[0]) == 0.5
    assert tokens(msg, b"require") == (b"100rel", b"timer")
    d = date(msg)
    assert d is not None and (d.year, d.hour) == (2010, 23)
    star = parse_datagram(_replace(INVITE, b"<sip:alice@[2001:db8::10]:5060;transport=udp>", b"*"))
    assert contacts(star) is STAR
    for old, new in [
        (b"Expires: 3600", b"Expires: 4294967296"),
        (b"q=0.5", b"q=1.5"),
        (b"Date: Sat,", b"Date: Fri,"),
        (b"Require: 100rel, timer", b"Require: 100rel,,timer"),
    ]:
        with pytest.raises(RemoteProtocolError):
            validate(parse_datagram(_replace(msg.wire or b"", old, new)))


def test_builders_and_response_to_request() -> None:
    req = make_request(
        b"OPTIONS",
        b"sip:bob@[2001:db8::2]",
        via=Via(b"UDP", IPv6Address("2001:db8::1"), 5060, ((b"branch", new_branch()),)),
        from_=NameAddr(SipUri("example.com", user=b"alice"), params=((b"tag", b"x1"),)),
        to=NameAddr(SipUri("example.com", user=b"bob")),
        call_id=b"abc@example.com",
        cseq=7,
        headers=[(b"Accept", b"application/sdp")],
    )
    assert req.get(b"content-length") == b"0" and req.max_forwards == 70
    assert parse_datagram(serialize(req)) == req
    resp = make_response(req, 200, to_tag=b"t9")
    assert isinstance(resp, Response) and resp.reason == b"OK"
    assert resp.to.tag == b"t9" and resp.vias == req.vias and resp.cseq == req.cseq
    assert resp.call_id == req.call_id and resp.from_ == req.from_
    assert make_response(req, 100).to.tag is None
    assert make_response(req, 180).to.tag is not None
    assert parse_datagram(serialize(resp)) == resp
    with pytest.raises(LocalProtocolError):
        build_request(b"OPTIONS", b"sip:a@b", [(b"Via", b"SIP/2.0/UDP h")])
    with pytest.raises(LocalProtocolError):
        build_request(b"BAD METHOD", b"sip:a@b", [])
    with pytest.raises(LocalProtocolError):
        build_request(b"OPTIONS", b"sip:a@b", [(b"X", b"a\r\nb")])


def test_serialize_fixes_content_length() -> None:
    msg = parse_datagram(INVITE)
    out = serialize(msg)
    assert out.endswith(b"\r\n\r\n" + SDP)
    assert b"\r\n v" not in out  # folding collapsed
    assert parse_datagram(out) == msg


_MULTI_VIA = (
    b"REGISTER sip:example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK-a;rport, SIP/2.0/TCP p.example.net"
    b";branch=z9hG4bK-b\r\n"
    b"v: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK-c;received=192.0.2.8\r\n"
    b'f: "Al" <sip:al@example.net>;tag=x1\r\n'
    b"t: <sip:al@example.net>\r\n"
    b"i: multi@x\r\n"
    b"CSeq: 7 REGISTER\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:al@[2001:db8::9]:5070>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize(
    ("status", "extra"),
    [
        (100, ()),
        (200, ((b"Contact", b"<sip:al@[2001:db8::9]:5070>;expires=60"), (b"Date", b"x"))),
        (401, ((b"WWW-Authenticate", b'Digest realm="r", nonce="n"'),)),
        (400, ((b"Max-Forwards", b"5"),)),  # a copied name in the extra lines: full check
    ],
)
def test_make_response_reuses_the_request_values_exactly(
    status: int, extra: tuple[tuple[bytes, bytes], ...]
) -> None:
    """The response's parsed Via, From, To, Call-ID and CSeq are what parsing its own
    bytes gives, though make_response does not parse the copied lines again."""
    req = parse_datagram(_MULTI_VIA)
    assert isinstance(req, Request)
    resp = make_response(req, status, headers=extra, to_tag=b"t9")
    again = parse_datagram(serialize(resp))
    assert isinstance(again, Response)
    fields = ("vias", "call_id", "cseq", "from_", "to", "max_forwards", "headers", "body")
    assert [getattr(resp, f) for f in fields] == [getattr(again, f) for f in fields]
    assert resp.index == again.index
    assert (resp.to.tag is None) == (status == 100)


def test_make_response_refuses_what_build_response_refuses() -> None:
    req = parse_datagram(_MULTI_VIA)
    assert isinstance(req, Request)
    with pytest.raises(LocalProtocolError):
        make_response(req, 700)
    with pytest.raises(LocalProtocolError):
        make_response(req, 200, b"OK\r\nX: y")
    with pytest.raises(LocalProtocolError):
        make_response(req, 200, headers=[(b"X", b"a\r\nb")])
    with pytest.raises(LocalProtocolError):
        make_response(req, 200, headers=[(b"bad name", b"v")])
