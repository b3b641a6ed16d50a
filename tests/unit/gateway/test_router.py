"""The proxy's pure router: a request in, a decision out (no store, no DNS, no clock)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from rtc64.gateway.identity import Identity, Listener
from rtc64.gateway.location.bindings import Binding
from rtc64.gateway.proxy import hops
from rtc64.gateway.proxy.router import (
    Admit,
    Authenticate,
    Forward,
    Lookup,
    Register,
    Reply,
    Router,
    Target,
)
from rtc64.net.address import IPAddress
from rtc64.net.endpoint import Flow, ListenSpec, Transport
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request
from rtc64.sip.uri import SipUri, format_uri, parse_uri

V4 = IPv4Address("192.0.2.1")
V6 = IPv6Address("2001:db8::1")
SECRET = b"k" * 32
IDENTITY = Identity(
    [
        Listener(ListenSpec(Transport.UDP, V4, 5060), 5060),
        Listener(ListenSpec(Transport.UDP, V6, 5060), 5060),
    ],
    domains=("example.net",),
    source_for=lambda _ip: None,
)
CORE = parse_uri(b"sip:core.example.org")
assert isinstance(CORE, SipUri)


def req(
    method: bytes = b"INVITE",
    uri: bytes = b"sip:bob@example.net",
    *,
    lines: tuple[bytes, ...] = (),
    to_tag: bytes | None = None,
    max_forwards: int = 70,
    call_id: bytes = b"c1@test",
) -> Request:
    to = b"To: <sip:bob@example.net>" + (b";tag=" + to_tag if to_tag else b"")
    data = b"\r\n".join([
        b"%s %s SIP/2.0" % (method, uri),
        b"Via: SIP/2.0/UDP [2001:db8:aaaa::10]:5062;branch=z9hG4bKr1;rport",
        b"Max-Forwards: %d" % max_forwards,
        b"From: <sip:alice@example.net>;tag=f1",
        to,
        b"Call-ID: " + call_id,
        b"CSeq: 1 " + method,
        *lines,
        b"Content-Length: 0",
    ]) + b"\r\n\r\n"  # fmt: skip
    msg = parse_datagram(data)
    assert isinstance(msg, Request)
    return msg


def ours(call_id: bytes = b"c1@test", flow: hops.FlowToken | None = None) -> bytes:
    token = hops.token_params(SECRET, call_id, b"f1", 1_700_000_000, flow)
    return b"<sip:192.0.2.1:5060;lr%s>" % token


def router(upstream: SipUri | None = None, *, connected: bool = True) -> Router:
    def is_connected(_transport: Transport, _ip: IPAddress, _port: int) -> bool:
        return connected

    return Router(IDENTITY, secret=SECRET, upstream=upstream, connected=is_connected)


FLOW = Flow(Transport.UDP, (V6, 5060), (IPv6Address("2001:db8:aaaa::10"), 5062))


def test_validation_replies() -> None:
    assert router().route(req(max_forwards=0), trusted=True) == Reply(483, "Too Many Hops")
    options = req(b"OPTIONS", b"sip:192.0.2.1", max_forwards=0)
    decision = router().route(options, trusted=False)
    assert isinstance(decision, Reply) and decision.status == 200
    require = req(lines=(b"Proxy-Require: foo, bar",))
    assert router().route(require, trusted=True) == Reply(
        420, None, ((b"Unsupported", b"foo, bar"),)
    )
    to_us = router().route(req(b"MESSAGE", b"sip:192.0.2.1"), trusted=True)
    assert to_us == Reply(404, "Not Found: no user part in the Request-URI")


def test_in_dialog_requests_need_our_signed_route() -> None:
    bye = req(b"BYE", b"sip:bob@192.0.2.50:5060", to_tag=b"t")
    assert router().route(bye, trusted=True) == Reply(
        403, "Forbidden: in-dialog request not routed via this proxy"
    )
    forged = req(b"BYE", b"sip:bob@192.0.2.50", to_tag=b"t", lines=(b"Route: <sip:192.0.2.1;lr>",))
    assert router().route(forged, trusted=True) == Reply(
        403, "Forbidden: Route not recorded by this proxy for this call"
    )
    signed = req(b"BYE", b"sip:bob@192.0.2.50", to_tag=b"t", lines=(b"Route: " + ours(),))
    admit = router().route(signed, trusted=False)
    assert isinstance(admit, Admit) and admit.issued == 1_700_000_000
    decision = router().in_dialog(admit, FLOW)
    assert isinstance(decision, Forward)
    assert not decision.record_route
    (target,) = decision.targets
    assert format_uri(target.hop) == b"sip:bob@192.0.2.50" and target.routes == ()
    assert router().ack(signed) == admit
    assert router().ack(forged) == "Forbidden: Route not recorded by this proxy for this call"


def test_in_dialog_requests_toward_a_websocket_client_use_its_flow() -> None:
    ws = hops.FlowToken(Transport.WS, IPv6Address("2001:db8:aaaa::7"), 51234)
    bye = req(b"BYE", b"sip:k@x.invalid;transport=ws", to_tag=b"t",
              lines=(b"Route: " + ours(flow=ws),))  # fmt: skip
    admit = router().route(bye, trusted=True)
    assert isinstance(admit, Admit)
    decision = router().in_dialog(admit, FLOW)
    assert isinstance(decision, Forward)
    assert decision.targets[0].hop == ws.uri()
    gone = router(connected=False).in_dialog(admit, FLOW)
    assert gone == Reply(430, "Flow Failed: the client's connection is closed")


def test_strict_router_fix_up_restores_the_request_uri() -> None:
    strict = req(b"INFO", ours()[1:-1], to_tag=b"t", lines=(b"Route: <sip:carol@192.0.2.60>",))
    admit = router().route(strict, trusted=True)
    assert isinstance(admit, Admit)
    decision = router().in_dialog(admit, FLOW)
    assert isinstance(decision, Forward)
    (target,) = decision.targets
    assert format_uri(target.hop) == b"sip:carol@192.0.2.60"
    assert target.uri is not None and format_uri(target.uri) == b"sip:carol@192.0.2.60"


def test_register_local_foreign_and_upstream() -> None:
    assert router().route(req(b"REGISTER", b"sip:example.net"), trusted=False) == Register()
    foreign = router().route(req(b"REGISTER", b"sip:example.org"), trusted=True)
    assert foreign == Reply(403, "Forbidden: not a domain served here")
    up = router(CORE).route(req(b"REGISTER", b"sip:example.net"), trusted=False)
    assert up == Forward((Target(CORE, own_port=True),), path=True)


def test_initial_requests_are_authenticated_then_looked_up() -> None:
    r = router()
    first = r.route(req(), trusted=False)
    assert isinstance(first, Authenticate)
    lookup = r.after_auth(first)
    assert isinstance(lookup, Lookup) and lookup.keys[0] == "sip:bob@example.net"
    assert r.bound(lookup, []) == Reply(404, "Not Found: no registered contact")
    binding = Binding(
        aor="sip:bob@example.net", contact=b"sip:bob@10.0.0.5:5070", expires_at=2e9,
        call_id=b"r", cseq=1, transport="udp", listener="udp:192.0.2.1:5060",
        received_ip=IPv4Address("198.51.100.7"), received_port=40000,
    )  # fmt: skip
    decision = r.bound(lookup, [binding])
    assert isinstance(decision, Forward) and decision.record_route
    (target,) = decision.targets
    assert target.hop.host == IPv4Address("198.51.100.7") and target.hop.port == 40000
    assert target.uri is not None and format_uri(target.uri) == b"sip:bob@10.0.0.5:5070"
    # Upstream mode: no binding goes to the core; untrusted sources go there unasked.
    assert router(CORE).bound(lookup, []) == Forward((Target(CORE, own_port=True),))
    assert router(CORE).route(req(), trusted=False) == Forward((Target(CORE, own_port=True),))


def test_foreign_targets_go_direct_or_upstream() -> None:
    first = router().route(req(uri=b"sip:bob@192.0.2.50"), trusted=True)
    assert isinstance(first, Authenticate)
    decision = router().after_auth(first)
    assert isinstance(decision, Forward)
    assert format_uri(decision.targets[0].hop) == b"sip:bob@192.0.2.50"
    preloaded = req(uri=b"sip:bob@192.0.2.50", lines=(b"Route: <sip:192.0.2.70;lr>",))
    auth = router().route(preloaded, trusted=True)
    assert isinstance(auth, Authenticate)
    decision = router().after_auth(auth)
    assert isinstance(decision, Forward)
    assert format_uri(decision.targets[0].hop) == b"sip:192.0.2.70;lr"
