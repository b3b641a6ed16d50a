"""TSP codec: vectors for every message of the profile, and fuzzing."""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtc64.errors import RemoteProtocolError
from rtc64.tunnel import tsp

INFO = (
    b'<tunnel action="info" type="v6udpv4" lifetime="604800">'
    b'<server><address type="ipv4">192.0.2.1</address>'
    b'<address type="ipv6">fd00:64::1</address></server>'
    b'<client><address type="ipv4">198.51.100.7</address>'
    b'<address type="ipv6">fd00:64::c633:6407:3039:1</address>'
    b'<keepalive interval="30"><address type="ipv6">fd00:64::1</address></keepalive>'
    b"</client></tunnel>"
)


def test_header_vector() -> None:
    header = tsp.Header(sequence=0x0ABCDEF, timestamp=0x01020304)
    assert header.encode() == bytes.fromhex("f0abcdef01020304")
    assert tsp.split_header(header.encode() + b"x") == (header, b"x")


@pytest.mark.parametrize("data", [b"", b"\xf0\x00\x00", bytes.fromhex("6000000001020304")])
def test_header_rejects(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        tsp.split_header(data)


def test_version_and_authenticate_vectors() -> None:
    version = tsp.Request(tsp.Kind.VERSION, version=b"2.0.0")
    assert tsp.encode_request(version) == b"VERSION=2.0.0\r\n"
    assert tsp.parse_request(tsp.pad(b"VERSION=2.0.0\r\n")) == version
    auth = tsp.Request(tsp.Kind.AUTHENTICATE, mechanism=b"ANONYMOUS")
    assert tsp.encode_request(auth) == b"AUTHENTICATE ANONYMOUS\r\n"
    assert tsp.parse_request(b"AUTHENTICATE ANONYMOUS\r\n") == auth
    cap = tsp.parse_response(b"CAPABILITY TUNNEL=V6UDPV4 AUTH=ANONYMOUS\r\n")
    assert tsp.capabilities(cap.capability) == {b"TUNNEL=V6UDPV4", b"AUTH=ANONYMOUS"}
    ok = tsp.parse_response(b"200 Success\r\n")
    assert (ok.status, ok.reason, ok.document) == (200, "Success", None)


def test_create_vector() -> None:
    doc = tsp.TunnelDoc(action="create", client_ipv4=IPv4Address("10.0.0.2"), keepalive_interval=30)
    wire = tsp.encode_request(tsp.Request(tsp.Kind.TUNNEL, document=doc))
    body = (
        b'<tunnel action="create" type="v6udpv4"><client>'
        b'<address type="ipv4">10.0.0.2</address><keepalive interval="30"></keepalive>'
        b"</client></tunnel>\r\n"
    )
    assert wire == b"Content-length: %d\r\n" % len(body) + body
    assert tsp.parse_request(tsp.pad(wire)).document == doc


def test_info_vector() -> None:
    content = b"200 Success\r\n" + INFO + b"\r\n"
    wire = b"Content-length: %d\r\n" % len(content) + content
    response = tsp.parse_response(wire)
    doc = response.document
    assert response.status == 200 and doc is not None
    assert doc.lifetime == 604800 and doc.keepalive_interval == 30
    assert doc.client_ipv6 == IPv6Address("fd00:64::c633:6407:3039:1")
    assert doc.server_ipv4 == IPv4Address("192.0.2.1")
    assert doc.keepalive_ipv6 == IPv6Address("fd00:64::1")
    assert tsp.encode_response(response) == wire
    assert doc.encode() == INFO


def test_error_status_vectors() -> None:
    for status in tsp.Status:
        text = tsp.encode_response(tsp.Response(int(status), status.reason))
        assert tsp.parse_response(text) == tsp.Response(int(status), status.reason)
    assert tsp.encode_response(tsp.Response(302, tsp.Status.UNSUPPORTED_CLIENT_VERSION.reason)) == (
        b"302 Unsupported client version\r\n"
    )


@pytest.mark.parametrize(
    "doc",
    [
        b'<!DOCTYPE x [<!ENTITY a "b">]><tunnel action="create"></tunnel>',
        b'<tunnel action="create">&a;</tunnel>',
        b'<tunnel action="create"><client>text</client></tunnel>',
        b'<tunnel action="create"><client></tunnel>',
        b'<tunnel action="create"></tunnel><tunnel action="create"></tunnel>',
        b'<tunnel action="destroy"></tunnel>',
        b'<tunnel action="create"><evil></evil></tunnel>',
        b'<tunnel action="create"><client><address type="ipv4">1.2.3</address></client></tunnel>',
        b'<tunnel action="create"><client><keepalive interval="-1"></keepalive></client></tunnel>',
        b'<tunnel action="info" lifetime="99999999999"></tunnel>',
        b'<tunnel action="create"><server><server><server><server><server>'
        + b"</server>" * 5
        + b"</tunnel>",
        b'<tunnel action="create">' + b" " * 3000 + b"</tunnel>",
    ],
)
def test_hostile_documents(doc: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        tsp.parse_document(doc)
    assert info.value.status == 500


@pytest.mark.parametrize(
    "message",
    [
        b"VERSION=2.0.0",  # no CRLF
        b"AUTHENTICATE \r\n",
        b"AUTHENTICATE PL\x00AIN\r\n",
        b"HELLO\r\n",
        b"Content-length: 50\r\n<tunnel/>",
        b"Content-length: x\r\n",
        b"\x00" * 10,
    ],
)
def test_bad_requests(message: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        tsp.parse_request(message)


def test_padding_strips_only_trailing_nuls() -> None:
    assert len(tsp.pad(b"VERSION=2.0.0\r\n")) == tsp.REQUEST_SIZE
    assert tsp.pad(b"x" * 700) == b"x" * 700


@given(st.binary(max_size=3000))
def test_fuzz_request_only_documented_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        tsp.parse_request(data)


@given(st.binary(max_size=3000))
def test_fuzz_response_only_documented_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        tsp.parse_response(data)


def _mutations() -> st.SearchStrategy[bytes]:
    content = b"200 Success\r\n" + INFO + b"\r\n"
    wire = b"Content-length: %d\r\n" % len(content) + content
    return st.tuples(st.integers(0, len(wire) - 1), st.binary(max_size=8), st.booleans()).map(
        lambda t: wire[: t[0]] + t[1] + wire[t[0] + (1 if t[2] else 0) :]
    )


@given(_mutations())
def test_fuzz_mutated_info(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        tsp.parse_response(data)


@given(
    st.ip_addresses(v=4),
    st.ip_addresses(v=6),
    st.integers(0, 10**6),
    st.integers(1, 3600),
)
def test_document_round_trip(v4: IPv4Address, v6: IPv6Address, life: int, ka: int) -> None:
    doc = tsp.TunnelDoc(
        action="info",
        lifetime=life,
        server_ipv4=v4,
        server_ipv6=v6,
        client_ipv4=v4,
        client_ipv6=v6,
        keepalive_interval=ka,
        keepalive_ipv6=v6,
    )
    assert tsp.parse_document(doc.encode()) == doc
