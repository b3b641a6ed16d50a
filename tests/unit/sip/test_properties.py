"""Property tests: generated values and messages round-trip parse -> serialise -> parse."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtc64.sip.framing import StreamFramer, parse_datagram
from rtc64.sip.grammar import TOKEN_CHARS
from rtc64.sip.message import Request, make_request, make_response
from rtc64.sip.nameaddr import NameAddr, format_name_addr, parse_name_addr
from rtc64.sip.serializer import serialize
from rtc64.sip.uri import Uri, format_uri, parse_uri, uri_equal
from rtc64.sip.via import Via, format_via, parse_via

from .strategies import (
    call_ids,
    chars,
    extension_headers,
    name_addrs,
    request_uris,
    uris,
    vias,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(uris)
def test_uri_round_trip(uri: Uri) -> None:
    again = parse_uri(format_uri(uri))
    assert again == uri
    assert uri_equal(again, uri)


@SETTINGS
@given(vias)
def test_via_round_trip(via: Via) -> None:
    assert parse_via(format_via(via)) == via


@SETTINGS
@given(name_addrs)
def test_name_addr_round_trip(na: NameAddr) -> None:
    assert parse_name_addr(format_name_addr(na), "To") == na


requests = st.builds(
    lambda method, uri, vs, f, t, cid, seq, mf, extra, body: make_request(
        method,
        uri,
        via=vs,
        from_=f,
        to=t,
        call_id=cid,
        cseq=seq,
        max_forwards=mf,
        headers=extra,
        body=body,
    ),
    chars(TOKEN_CHARS),
    request_uris,
    st.lists(vias, min_size=1, max_size=3),
    name_addrs,
    name_addrs,
    call_ids,
    st.integers(0, 2**31 - 1),
    st.integers(0, 255),
    extension_headers,
    st.binary(max_size=64),
)


@SETTINGS
@given(requests)
def test_request_round_trip(req: Request) -> None:
    wire = serialize(req)
    parsed = parse_datagram(wire)
    assert parsed == req
    assert parse_datagram(serialize(parsed)) == parsed
    framer = StreamFramer()
    framer.receive_data(wire)
    assert framer.next_event() == req


@SETTINGS
@given(requests, st.integers(100, 699), chars(TOKEN_CHARS + b" ", max_size=20))
def test_response_round_trip(req: Request, status: int, reason: bytes) -> None:
    resp = make_response(req, status, reason.strip(b" ") or None, to_tag=b"t1")
    parsed = parse_datagram(serialize(resp))
    assert parsed == resp
    assert parsed.vias == req.vias and parsed.cseq == req.cseq
