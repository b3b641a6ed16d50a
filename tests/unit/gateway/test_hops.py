"""Next hops, Via stamping and loop detection (RFC 3261 §16.3, §16.6, §18.2.2; RFC 3581)."""

from __future__ import annotations

import hashlib
import hmac
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from rtc64.errors import RemoteProtocolError
from rtc64.gateway.proxy import hops
from rtc64.gateway.proxy.forwarder import _host_text
from rtc64.gateway.proxy.hops import BRANCH_PREFIX, Hop
from rtc64.net.endpoint import Flow, Transport
from rtc64.sip.edit import Edit
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request, make_response
from rtc64.sip.serializer import serialize
from rtc64.sip.uri import SipUri, parse_uri
from rtc64.sip.via import parse_via

LOCAL4 = (IPv4Address("192.0.2.1"), 5060)
LOCAL6 = (IPv6Address("2001:db8::1"), 5060)


def req(via: bytes, uri: bytes = b"sip:bob@example.net", *, extra: bytes = b"") -> Request:
    data = (
        b"INVITE %s SIP/2.0\r\nVia: %s\r\n%sMax-Forwards: 70\r\n"
        b"From: <sip:a@example.net>;tag=1\r\nTo: <sip:bob@example.net>\r\n"
        b"Call-ID: c@x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n" % (uri, via, extra)
    )
    msg = parse_datagram(data)
    assert isinstance(msg, Request)
    return msg


def udp(remote: str, port: int) -> Flow:
    ip = ip_address(remote)
    return Flow(Transport.UDP, LOCAL6 if ip.version == 6 else LOCAL4, (ip, port))


# -- response_hop ----------------------------------------------------------------------------


def test_udp_with_rport_answers_the_source_port() -> None:
    flow = udp("198.51.100.7", 40000)
    hop = hops.response_hop(req(b"SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK1;rport"), flow)
    assert hop == Hop(Transport.UDP, IPv4Address("198.51.100.7"), 40000, flow)
    assert not hop.reliable


def test_udp_without_rport_answers_the_sent_by_port() -> None:
    flow = udp("198.51.100.7", 40000)
    hop = hops.response_hop(req(b"SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK1"), flow)
    assert (hop.ip, hop.port) == (IPv4Address("198.51.100.7"), 5070)
    hop = hops.response_hop(req(b"SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1"), flow)
    assert hop.port == 5060


def test_udp_ipv6_source() -> None:
    flow = udp("2001:db8::10", 5062)
    hop = hops.response_hop(req(b"SIP/2.0/UDP [2001:db8::10]:5062;branch=z9hG4bK1;rport"), flow)
    assert (hop.ip, hop.port, hop.flow) == (IPv6Address("2001:db8::10"), 5062, flow)
    assert str(hop) == "udp:[2001:db8::10]:5062"


@pytest.mark.parametrize("transport", [Transport.TCP, Transport.TLS, Transport.WSS])
def test_connection_answers_on_the_flow(transport: Transport) -> None:
    flow = Flow(transport, LOCAL6, (IPv6Address("2001:db8::10"), 50123), connection_id=7)
    hop = hops.response_hop(req(b"SIP/2.0/TCP [2001:db8::10]:5060;branch=z9hG4bK1"), flow)
    assert hop == Hop(transport, IPv6Address("2001:db8::10"), 50123, flow)
    assert hop.reliable


# -- stamp_top_via ---------------------------------------------------------------------------


def test_ipv4_source_differs_from_sent_by() -> None:
    r = req(b"SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK1;rport")
    stamped = hops.stamp_top_via(r, udp("198.51.100.7", 40000))
    assert stamped == b"SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK1;rport=40000;received=198.51.100.7"


def test_ipv6_received_is_bare_and_sent_by_bracketed() -> None:
    r = req(b"SIP/2.0/UDP [2001:db8::10]:5062;branch=z9hG4bK1;rport")
    stamped = hops.stamp_top_via(r, udp("2001:db8::99", 5062))
    assert stamped is not None
    assert stamped.startswith(b"SIP/2.0/UDP [2001:db8::10]:5062;")
    assert stamped.endswith(b";rport=5062;received=2001:db8::99")
    via = parse_via(stamped)
    assert via.received == IPv6Address("2001:db8::99")
    assert via.rport == 5062


def test_host_name_sent_by_gets_received() -> None:
    r = req(b"SIP/2.0/UDP phone.example.net;branch=z9hG4bK1")
    stamped = hops.stamp_top_via(r, udp("2001:db8::10", 5060))
    assert stamped == b"SIP/2.0/UDP phone.example.net;branch=z9hG4bK1;received=2001:db8::10"


def test_rport_always_adds_received() -> None:
    """RFC 3581 §4: with rport, received is added even when sent-by is the source."""
    r = req(b"SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1;rport")
    stamped = hops.stamp_top_via(r, udp("198.51.100.7", 5060))
    assert (
        stamped == b"SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1;rport=5060;received=198.51.100.7"
    )


def test_nothing_to_stamp() -> None:
    r = req(b"SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1")
    assert hops.stamp_top_via(r, udp("198.51.100.7", 5060)) is None
    r = req(b"SIP/2.0/UDP [2001:db8::10];branch=z9hG4bK1")
    assert hops.stamp_top_via(r, udp("2001:db8::10", 5060)) is None


def test_v4_mapped_source_matches_ipv4_sent_by() -> None:
    r = req(b"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1")
    flow = Flow(Transport.UDP, LOCAL6, (IPv6Address("::ffff:192.0.2.10"), 5060))
    assert hops.stamp_top_via(r, flow) is None
    r = req(b"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1")
    assert hops.stamp_top_via(r, flow) == (
        b"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;received=192.0.2.10"
    )


def test_old_received_replaced() -> None:
    r = req(b"SIP/2.0/UDP 10.0.0.5;received=10.9.9.9;branch=z9hG4bK1")
    stamped = hops.stamp_top_via(r, udp("198.51.100.7", 5060))
    assert stamped == b"SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1;received=198.51.100.7"


@pytest.mark.parametrize(
    ("via", "source"),
    [
        (b"SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK1;rport", ("198.51.100.7", 40000)),
        (b"SIP/2.0/UDP [2001:db8::10]:5062;branch=z9hG4bK1;RPort", ("2001:db8::99", 5062)),
        (b"SIP/2.0/TCP phone.example.net;branch=z9hG4bK1;received=1.2.3.4", ("2001:db8::1", 9)),
        (b"SIP/2.0/UDP 10.0.0.5;Received=10.9.9.9;branch=z9hG4bK1", ("198.51.100.7", 5060)),
        (b"SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1", ("198.51.100.7", 5060)),
    ],
)
def test_stamped_request_holds_the_parsed_stamped_via(via: bytes, source: tuple[str, int]) -> None:
    """``with_stamped_via`` builds the parsed top Via without parsing its own output: it
    must equal what parsing the stamped line gives, and the line must be the stamp."""
    r = req(via + b", SIP/2.0/UDP 10.1.1.1;branch=z9hG4bK0")
    flow = udp(*source)
    stamped = hops.with_stamped_via(r, flow)
    line = hops.stamp_top_via(r, flow) or via
    assert stamped.vias[0] == parse_via(line)
    assert stamped.vias[1:] == r.vias[1:]
    assert stamped.get(b"via") == line + b", SIP/2.0/UDP 10.1.1.1;branch=z9hG4bK0"


# -- loop detection --------------------------------------------------------------------------

TOP = b"SIP/2.0/UDP [2001:db8::10]:5062;branch=z9hG4bKc1;rport=5062;received=2001:db8::10"


def _returned(first: Request, below: bytes, uri: bytes = b"sip:bob@example.net") -> Request:
    branch = hops.new_branch(first, below)
    ours = hops.via_value(Transport.UDP, "192.0.2.1:5060", branch)
    return req(ours + b", " + below, uri)


def test_branch_shape() -> None:
    first = req(TOP)
    a, b = hops.new_branch(first, TOP), hops.new_branch(first, TOP)
    assert a.startswith(BRANCH_PREFIX) and b.startswith(BRANCH_PREFIX)
    assert a != b  # unique per forward
    assert a[: len(BRANCH_PREFIX) + 16] == b[: len(BRANCH_PREFIX) + 16]  # same loop hash


def test_request_coming_back_unchanged_is_a_loop() -> None:
    back = _returned(req(TOP), TOP)
    assert hops.is_loop(back, [0], list(back.values(b"via")))


def test_changed_request_uri_is_a_spiral() -> None:
    back = _returned(req(TOP), TOP, uri=b"sip:bob@[2001:db8::20]:5070")
    assert not hops.is_loop(back, [0], list(back.values(b"via")))


@pytest.mark.parametrize(
    "extra",
    [b"Proxy-Require: foo\r\n", b'Proxy-Authorization: Digest username="a"\r\n'],
)
def test_hash_covers_proxy_require_and_authorization(extra: bytes) -> None:
    first = req(TOP)
    branch = hops.new_branch(first, TOP)
    ours = hops.via_value(Transport.UDP, "192.0.2.1:5060", branch)
    back = req(ours + b", " + TOP, extra=extra)
    assert not hops.is_loop(back, [0], list(back.values(b"via")))


def test_loop_under_another_hop() -> None:
    branch = hops.new_branch(req(TOP), TOP)
    ours = hops.via_value(Transport.UDP, "192.0.2.1:5060", branch)
    back = req(b"SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKx, " + ours + b", " + TOP)
    assert hops.is_loop(back, [1], list(back.values(b"via")))


def test_our_via_at_the_bottom_or_foreign_branch_is_no_loop() -> None:
    ours = hops.via_value(Transport.UDP, "192.0.2.1:5060", b"z9hG4bKplain")
    back = req(ours + b", " + TOP)
    assert not hops.is_loop(back, [0], list(back.values(b"via")))
    alone = req(hops.via_value(Transport.UDP, "192.0.2.1:5060", hops.new_branch(req(TOP), TOP)))
    assert not hops.is_loop(alone, [0], list(alone.values(b"via")))


# -- values we write -------------------------------------------------------------------------


def test_via_value() -> None:
    assert hops.via_value(Transport.UDP, "[2001:db8::1]:5060", b"z9hG4bK-r64-x") == (
        b"SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK-r64-x;rport"
    )
    assert hops.via_value(Transport.WSS, "192.0.2.1:443", b"b").startswith(b"SIP/2.0/WSS ")
    assert hops.via_value(Transport.TLS, "gw.example.net:5061", b"b", alias=True) == (
        b"SIP/2.0/TLS gw.example.net:5061;branch=b;rport;alias"  # RFC 5923 §5
    )


def test_route_uri() -> None:
    assert hops.route_uri(Transport.UDP, "192.0.2.1:5060", r2=False) == b"<sip:192.0.2.1:5060;lr>"
    assert hops.route_uri(Transport.UDP, "[2001:db8::1]:5060", r2=True) == (
        b"<sip:[2001:db8::1]:5060;lr;r2=on>"
    )
    assert hops.route_uri(Transport.TCP, "192.0.2.1:5060", r2=True) == (
        b"<sip:192.0.2.1:5060;transport=tcp;lr;r2=on>"
    )
    assert hops.route_uri(Transport.TLS, "192.0.2.1:5061", r2=False) == (
        b"<sips:192.0.2.1:5061;transport=tls;lr>"
    )
    assert hops.route_uri(Transport.UDP, "192.0.2.1:5060", r2=False, extra=b";x=1") == (
        b"<sip:192.0.2.1:5060;lr;x=1>"
    )


def test_forwarded_view_matches_parsing_the_spliced_bytes() -> None:
    """The shortcut model the client transaction gets equals a parse of what we send, in
    every field ACK/CANCEL building and transaction matching use."""

    raw = (
        b"INVITE sip:bob@example.net SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP [2001:db8::10]:5062;branch=z9hG4bKa1;rport\r\n"
        b"Route: <sip:192.0.2.1;lr>, <sip:core.example.net;lr>\r\n"
        b"Max-Forwards: 12\r\nFrom: <sip:a@example.net>;tag=f\r\nTo: <sip:bob@example.net>\r\n"
        b"Call-ID: cv1\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    req = parse_datagram(raw)
    assert isinstance(req, Request)
    via = hops.via_value(Transport.UDP, "192.0.2.1:5060", b"z9hG4bK-r64-x-1")
    new_uri = parse_uri(b"sip:bob@198.51.100.7:5070")
    routes = (b"<sip:core.example.net;lr>",)
    edit = Edit(req).set_request_uri(new_uri).remove_headers(b"route")
    edit.add_header(b"Route", routes[0]).decrement_max_forwards().prepend_via(via)
    sent = parse_datagram(edit.to_bytes())
    view = hops.forwarded_view(req, via, uri=new_uri, routes=routes)
    assert isinstance(sent, Request)
    assert view.uri == sent.uri
    assert view.vias == sent.vias
    assert view.get(b"via") == sent.get(b"via")
    assert view.get_all(b"route") == sent.get_all(b"route")
    for name in (b"from", b"to", b"call-id", b"cseq"):
        assert view.get(name) == sent.get(name)
    assert (view.call_id, view.cseq, view.max_forwards) == (
        sent.call_id,
        sent.cseq,
        sent.max_forwards,
    )


def test_trying_bytes_equal_the_model_built_100() -> None:

    raw = (
        b"INVITE sip:bob@192.0.2.50 SIP/2.0\r\n"
        b"v: SIP/2.0/UDP [2001:db8:aaaa::10]:5062;branch=z9hG4bKt;rport, "
        b"SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKo\r\n"
        b"Max-Forwards: 70\r\nf: <sip:a@example.net>;tag=f\r\nt: <sip:bob@192.0.2.50>\r\n"
        b"i: tr1\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n"
    )
    req = parse_datagram(raw)
    assert isinstance(req, Request)
    flow = udp("2001:db8:aaaa::10", 40000)
    fast = parse_datagram(hops.trying_bytes(req, flow))
    model = make_response(hops.with_stamped_via(req, flow), 100)
    assert fast == model
    assert fast.via.rport == 40000


def test_stamped_request_keeps_its_parsed_vias_in_step_with_its_lines() -> None:
    """Our own responses copy the parsed Vias of the stamped request: they must be what
    its (stamped) Via lines say."""
    data = (
        b"OPTIONS sip:gw SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-s;rport, SIP/2.0/UDP 192.0.2.9"
        b";branch=z9hG4bK-t\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:gw>\r\nCall-ID: c\r\n"
        b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    req = parse_datagram(data)
    assert isinstance(req, Request)
    flow = Flow(
        Transport.UDP, (IPv4Address("192.0.2.100"), 5060), (ip_address("198.51.100.1"), 40000)
    )
    stamped = hops.with_stamped_via(req, flow)
    assert stamped.vias[0].received == ip_address("198.51.100.1") and stamped.vias[0].rport == 40000
    resp = make_response(stamped, 200)
    reparsed = parse_datagram(serialize(resp))
    assert resp.vias == reparsed.vias == stamped.vias
    assert len(resp.vias) == 2


def test_the_entry_facing_the_sender_is_the_first_whatever_connection_it_came_over() -> None:
    """A server callee reached over TLS (its entry's flow token names the connection we
    opened to its port 5061) sends its BYE over a connection of its own, from another
    port: the BYE still goes toward the caller's flow, never back to the callee."""
    callee = hops.FlowToken(Transport.TLS, IPv4Address("10.77.0.2"), 5061)
    caller = hops.FlowToken(Transport.UDP, IPv4Address("10.77.0.9"), 40000)
    callee_entry = parse_uri(b"sips:10.77.0.1:5061;transport=tls;lr;r2=on;r64f=" + callee.encode())
    caller_entry = parse_uri(b"sip:10.77.0.1:5060;lr;r2=on;r64f=" + caller.encode())
    local = (IPv4Address("10.77.0.1"), 5061)
    open_all = lambda *_a: True  # noqa: E731
    for port in (5061, 51234):  # over our connection, and over one the callee opened
        from_callee = Flow(Transport.TLS, local, (IPv4Address("10.77.0.2"), port))
        got = hops.flow_toward([callee_entry, caller_entry], from_callee, open_all)  # type: ignore[list-item]
        assert got is not None and (got.host, got.port) == (caller.ip, caller.port)
    # the caller's request: toward the callee's connection
    from_caller = Flow(Transport.UDP, (IPv4Address("10.77.0.1"), 5060), (caller.ip, 40000))
    got = hops.flow_toward([caller_entry, callee_entry], from_caller, open_all)  # type: ignore[list-item]
    assert got is not None and (got.host, got.port) == (callee.ip, callee.port)
    # one entry: the token the request's own flow matches is the sender's
    assert hops.flow_toward([callee_entry], Flow(Transport.TLS, local, (callee.ip, 5061)),  # type: ignore[list-item]
                            open_all) is None  # fmt: skip


# -- Record-Route tokens ----------------------------------------------------------------------

SECRET = b"s" * 32


def entry(params: bytes) -> SipUri:
    uri = parse_uri(b"sip:192.0.2.1:5060;lr" + params)
    assert isinstance(uri, SipUri)
    return uri


def test_route_token_is_the_documented_hmac() -> None:
    """The prepared HMAC gives the value every earlier version wrote (tokens issued by
    another worker or before an upgrade stay valid): HMAC-SHA-256 over Call-ID, tag,
    issue time and flow token, NUL-separated, first 8 bytes in hex."""
    flow = hops.FlowToken(Transport.TCP, IPv4Address("198.51.100.7"), 40000)
    for token, flow_text in ((None, b""), (flow, b"tcp:198.51.100.7:40000")):
        msg = b"\x00".join((b"c@x", b"tag1", b"%x" % 1_700_000_000, flow_text))
        mac = hmac.new(SECRET, msg, hashlib.sha256).digest()[:8].hex().encode()
        got = hops.route_token(SECRET, b"c@x", b"tag1", 1_700_000_000, token)
        assert got == b"%x.%s" % (1_700_000_000, mac)
    other = hops.route_token(b"t" * 32, b"c@x", b"tag1", 1_700_000_000)
    assert other != hops.route_token(SECRET, b"c@x", b"tag1", 1_700_000_000)


def test_tokens_verify_once_per_distinct_entry_and_fail_for_another_dialog() -> None:
    """Two entries of one Record-Route carrying the same token verify (once); a token
    MAC'd for another Call-ID or tag, or one of two entries edited, fails the set."""
    mine = hops.token_params(SECRET, b"c@x", b"f1", 1000, None)
    other_call = hops.token_params(SECRET, b"d@x", b"f1", 1000, None)
    other_tag = hops.token_params(SECRET, b"c@x", b"f9", 1000, None)
    flow = hops.FlowToken(Transport.UDP, IPv4Address("198.51.100.7"), 5060)
    with_flow = hops.token_params(SECRET, b"c@x", b"f1", 999, flow)
    tags = (b"f1", b"t1")
    check = hops.tokens_issued_for
    assert check(SECRET, b"c@x", tags, [entry(mine), entry(mine)]) == 1000
    assert check(SECRET, b"c@x", (b"t1", b"f1"), [entry(mine)]) == 1000  # callee's request
    assert check(SECRET, b"c@x", tags, [entry(with_flow), entry(mine)]) == 999
    assert check(SECRET, b"c@x", tags, [entry(mine), entry(other_call)]) is None
    assert check(SECRET, b"c@x", tags, [entry(other_tag), entry(mine)]) is None
    assert check(SECRET, b"d@x", tags, [entry(mine), entry(mine)]) is None
    assert check(SECRET, b"c@x", (b"f9", None), [entry(mine)]) is None
    assert check(SECRET, b"c@x", tags, []) is None
    forged_flow = with_flow.replace(b"198.51.100.7", b"198.51.100.8")
    assert check(SECRET, b"c@x", tags, [entry(forged_flow)]) is None
    assert check(b"t" * 32, b"c@x", tags, [entry(mine)]) is None  # another gateway's


def test_prepared_macs_are_bounded() -> None:
    for n in range(3 * hops._MAX_PREPARED):
        hops.route_token(b"%032d" % n, b"c@x", b"f1", 1)
        assert len(hops._PREPARED) <= hops._MAX_PREPARED


@pytest.mark.parametrize(
    "host",
    [IPv4Address("192.0.2.50"), IPv6Address("2001:db8::5"), IPv6Address("::ffff:192.0.2.5"),
     IPv6Address("fe80::1%7"), "pbx.example.net"],
)  # fmt: skip
def test_branch_target_text_is_the_hosts_str(host: IPv4Address | IPv6Address | str) -> None:
    """The forwarder's branch target (log lines, happy-eyeballs memory key) reads as
    ``str(host)`` whether or not it came from the address cache."""
    for _ in range(2):
        assert _host_text(host) == str(host)


@pytest.mark.parametrize("transport", list(Transport))
@pytest.mark.parametrize("hostport", ["192.0.2.1:5060", "[2001:db8::1]:5062", "gw.example.net"])
@pytest.mark.parametrize("alias", [False, True])
def test_own_via_equals_parsing_it(transport: Transport, hostport: str, alias: bool) -> None:
    """Our Via is parsed once per shape; each value with its own branch reads exactly as
    ``parse_via`` reads it, and a value that is not of our shape is parsed."""
    for n in range(3):
        value = hops.via_value(transport, hostport, hops.branch_of(b"%016x" % n), alias=alias)
        assert hops.own_via(value) == parse_via(value)
    for foreign in (
        b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport",  # not our branch prefix
        b"SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK-r64-1-2",  # branch not first
        b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-r64-1;received=192.0.2.9",
    ):
        assert hops.own_via(foreign) == parse_via(foreign)
    with pytest.raises(RemoteProtocolError):  # not a token: parsed, and refused as parsing does
        hops.own_via(b'SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-r64-"x";rport')


def test_own_via_shapes_are_bounded() -> None:
    for n in range(2 * hops._MAX_OWN_VIAS + 5):
        hops.own_via(hops.via_value(Transport.UDP, f"192.0.2.1:{n}", hops.branch_of(b"0")))
        assert len(hops._OWN_VIAS) <= hops._MAX_OWN_VIAS
