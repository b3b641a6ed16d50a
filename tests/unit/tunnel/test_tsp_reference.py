"""TSP wire vectors of RFC 5572 as the reference implementations write them.

RFC 5572's body text was not reachable from this workplace (the stored copies of the RFC
pages end after the abstract), so the bytes below are typed in from the TSP reference
client (gogoCLIENT 1.2, written by the RFC authors' company: net_rudp.c, tsp_cap.c,
tsp_auth.c, tsp_net.c, xml_req.c) and the Public TSP reference router (pubTSP/router.c,
by the profile's author). Section numbers are RFC 5572's as remembered (not re-read).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from rtc64.errors import RemoteProtocolError
from rtc64.tunnel import tsp
from rtc64.tunnel.server import ToUdp, TunnelServer

from .test_server import CLIENT, ME, SETTINGS, _req

# §4.4.3 / Appendix A: a host-mode create, byte for byte as xml_req.c builds it for the
# default tunnel_mode v6anyv4 (and tsp_net.c frames it with "Content-length: %ld\r\n").
GOGOC_CREATE = (
    b'<tunnel action="create" type="v6anyv4" proxy="no">\r\n'
    b" <client>\r\n"
    b'  <address type="ipv4">192.0.2.135</address>\r\n'
    b'  <keepalive interval="30">\r\n'
    b'    <address type="ipv6">::</address>\r\n'
    b"  </keepalive>\r\n"
    b" </client>\r\n"
    b"</tunnel>\r\n"
)
# The same client in router mode (xml_tun.c's node tree: router holds prefix, dns_server
# and as): empty-element tags and a <dns_server> list.
GOGOC_ROUTER = (
    b'<tunnel action="create" type="v6udpv4" proxy="no">\r\n'
    b" <client>\r\n"
    b'  <address type="ipv4">192.0.2.135</address>\r\n'
    b"  <router>\r\n"
    b'   <prefix length="64"/>\r\n'
    b"   <dns_server>\r\n"
    b'     <address type="dn">ns1.example.net</address>\r\n'
    b"   </dns_server>\r\n"
    b'   <as number="64512"/>\r\n'
    b"  </router>\r\n"
    b" </client>\r\n"
    b"</tunnel>\r\n"
)


def test_udp_header_as_the_reference_client_sends_it() -> None:
    # §4.4.1: 0xF nibble + 28-bit sequence (the client starts at 240), 32-bit timestamp.
    header, rest = tsp.split_header(bytes.fromhex("f00000f0 00000bb8") + b"VERSION=2.0.0\r\n")
    assert header == tsp.Header(sequence=240, timestamp=3000)
    assert header.encode() == bytes.fromhex("f00000f000000bb8")
    assert rest == b"VERSION=2.0.0\r\n"


def test_version_and_capability_lines() -> None:
    # §4.4.2: the version line and the Public TSP router's capability answer.
    assert tsp.encode_request(tsp.Request(tsp.Kind.VERSION, version=b"2.0.0")) == (
        b"VERSION=2.0.0\r\n"
    )
    cap = tsp.parse_response(b"CAPABILITY TUNNEL=V6UDPV4 AUTH=ANONYMOUS\r\n")
    assert cap.capability == tsp.CAPABILITY
    # a full broker offers more; the client only needs its two tokens
    many = tsp.parse_response(b"CAPABILITY TUNNEL=V6V4 TUNNEL=V6UDPV4 AUTH=ANONYMOUS\r\n")
    assert {b"TUNNEL=V6UDPV4", b"AUTH=ANONYMOUS"} <= tsp.capabilities(many.capability)


def test_authenticate_with_the_reference_clients_nul() -> None:
    # tsp_auth.c sends sizeof("AUTHENTICATE ANONYMOUS\r\n"): the C string's NUL too.
    request = tsp.parse_request(b"AUTHENTICATE ANONYMOUS\r\n\x00")
    assert request == tsp.Request(tsp.Kind.AUTHENTICATE, mechanism=b"ANONYMOUS")
    with pytest.raises(RemoteProtocolError):
        tsp.parse_request(b"AUTHENTICATE ANONY\x00MOUS\r\n")


def test_reference_create_request_parses() -> None:
    wire = b"Content-length: 216\r\n" + GOGOC_CREATE
    assert len(GOGOC_CREATE) == 216
    doc = tsp.parse_request(wire).document
    assert doc is not None
    assert (doc.action, doc.type, doc.keepalive_interval) == ("create", "v6anyv4", 30)
    assert doc.client_ipv4 == IPv4Address("192.0.2.135")
    assert doc.keepalive_ipv6 == IPv6Address("::")


def test_router_mode_create_parses() -> None:
    wire = b"Content-length: %d\r\n" % len(GOGOC_ROUTER) + GOGOC_ROUTER
    doc = tsp.parse_request(wire).document
    assert doc is not None and doc.type == "v6udpv4"
    assert doc.client_ipv4 == IPv4Address("192.0.2.135")
    # a broker list (tsp_redirect) and a delegated prefix in an info are read, not kept
    info = tsp.parse_document(
        b'<tunnel action="info" type="v6udpv4" lifetime="1440">'
        b'<broker><address type="ipv4">192.0.2.9</address></broker>'
        b'<client><router><prefix length="64">2001:db8:1::</prefix></router></client>'
        b"</tunnel>"
    )
    assert (info.lifetime, info.client_ipv4) == (1440, None)


def test_accept_vector() -> None:
    # §4.4.3: xml_req.c's tunnel acknowledge, exactly; 35 bytes after the length line.
    accept = tsp.Request(tsp.Kind.TUNNEL, document=tsp.TunnelDoc(action="accept", type=None))
    wire = b'Content-length: 35\r\n<tunnel action="accept"></tunnel>\r\n'
    assert tsp.encode_request(accept) == wire
    assert tsp.parse_request(wire) == accept


@pytest.mark.parametrize(
    "doc",
    [
        b'<tunnel action="create"></tunnel/>',  # an end tag cannot be empty
        b'<tunnel action="create"></tunnel type="x">',  # nor carry attributes
        b'<tunnel action="create"><client><address type="ipv4"/>1.2.3.4</client></tunnel>',
        b'<tunnel action="create"/><tunnel action="create"/>',
    ],
)
def test_empty_element_abuse(doc: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        tsp.parse_document(doc)


def test_every_delete_and_action_of_the_dtd() -> None:
    for action in ("create", "delete", "info", "accept", "reject"):
        assert tsp.parse_document(b'<tunnel action="%s"/>' % action.encode()).action == action


# ---------------------------------------------------------------- the server, on the wire


def _wire(server: TunnelServer, data: bytes) -> bytes:
    (action,) = server.from_udp(data, CLIENT, 0.0)
    assert isinstance(action, ToUdp) and len(action.data) <= len(data)
    assert action.data[:8] == data[:8]  # §4.4.1: the request's header, unchanged
    return action.data[8:]


def test_server_answers_v6anyv4_with_v6udpv4() -> None:
    server = TunnelServer(SETTINGS)
    message = _wire(server, _req(b"Content-length: 216\r\n" + GOGOC_CREATE))
    # tsp_net.c: the answer must start with "Content-length:" (case-sensitive memcmp)
    # and announce at least the bytes that follow the length line.
    line, _, rest = message.partition(b"\r\n")
    assert line.startswith(b"Content-length: ") and int(line[16:]) == len(rest)
    assert rest.startswith(b'200 Success\r\n<tunnel action="info" type="v6udpv4"')
    doc = tsp.parse_response(message).document
    assert doc is not None and doc.client_ipv6 == ME
    # the address claimed in the request is ignored: the observed one is returned
    assert doc.client_ipv4 == CLIENT[0]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'<tunnel action="create" type="v6v4"></tunnel>\r\n', b"303 Unsupported tunnel type"),
        (b'<tunnel action="create"></tunnel>\r\n', b"500 Invalid request format"),
        (b'<tunnel action="delete" type="v6udpv4"></tunnel>\r\n', b"200 Success"),
        (b'<tunnel action="info"></tunnel>\r\n', b"500 Invalid request format"),
        (b'<tunnel action="create"><evil/></tunnel>\r\n', b"500 Invalid request format"),
    ],
)
def test_command_phase_answers_are_framed(body: bytes, status: bytes) -> None:
    # §4.4.3: in the command phase every answer carries Content-length, errors included.
    server = TunnelServer(SETTINGS)
    message = _wire(server, _req(b"Content-length: %d\r\n" % len(body) + body))
    content = status + b"\r\n"
    assert message == b"Content-length: %d\r\n" % len(content) + content


def test_version_phase_answers_are_not_framed() -> None:
    server = TunnelServer(SETTINGS)
    assert _wire(server, _req(b"VERSION=2.0.1\r\n")) == b"302 Unsupported client version\r\n"
    assert _wire(server, _req(b"AUTHENTICATE ANONYMOUS\r\n\x00")) == b"200 Success\r\n"
    assert _wire(server, _req(b"VERSION=2.0.0\r\n")) == tsp.CAPABILITY + b"\r\n"


def test_reject_is_not_answered() -> None:
    server = TunnelServer(SETTINGS)
    body = b'<tunnel action="reject"></tunnel>\r\n'
    assert server.from_udp(_req(b"Content-length: %d\r\n" % len(body) + body), CLIENT, 0.0) == []


def test_unpadded_reference_client_is_not_answered() -> None:
    # This profile's anti-amplification rule (RFC 5572 is silent): gogoCLIENT never pads,
    # and every answer would be larger than its request, so it gets none.
    server = TunnelServer(SETTINGS)
    for message in (b"VERSION=2.0.0\r\n", b"Content-length: 216\r\n" + GOGOC_CREATE):
        assert server.from_udp(_req(message, padded=False), CLIENT, 0.0) == []
    assert server.counters.amplification_refused == 2
    # the same requests padded are answered
    assert len(server.from_udp(_req(b"VERSION=2.0.0\r\n"), CLIENT, 0.0)) == 1
