"""In-dialog requests through the proxy: our Record-Route token is no relay ticket.

The proxy in-process (``test_proxy`` harness). A trusted IPv6 caller calls an untrusted
IPv4 callee; the callee then abuses the Route set it received: toward a third host, with
an extra Route, with forged tags, after the BYE. Legitimate in-dialog requests both ways
still pass. Then calls to a WebSocket client: in-dialog requests follow the flow token of
our Record-Route entry to the client's connection, and a closed connection is a 430.
"""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

from rtc64.gateway.identity import Identity, Listener
from rtc64.gateway.proxy import hops
from rtc64.gateway.proxy.dialogs import DialogTracker
from rtc64.net.endpoint import Flow, ListenSpec, Transport
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request
from tests.unit.gateway.test_proxy import (
    CALLEE,
    CALLER,
    LISTEN4,
    LISTEN6,
    PASSWORD,
    REALM,
    STRANGER,
    V6,
    Harness,
    Sent,
    answer,
    call_forwarded,
    invite,
    one,
    only,
    register,
    request,
    run,
    sent_by,
    statuses,
)

VICTIM = ("203.0.113.5", 5060)
CALLER_CONTACT = b"sip:alice@" + sent_by(CALLER)
CALLEE_CONTACT = b"sip:bob@192.0.2.50:5060"


async def established(h: Harness) -> tuple[bytes, ...]:
    """A call from the trusted caller to the untrusted callee, answered and ACKed; the
    Record-Route set the callee received (its Route set toward the caller)."""
    fwd = await call_forwarded(h)
    out = await h.feed(answer(fwd.data, 200), CALLEE)
    assert statuses(out, CALLER) == [200]
    rr = fwd.request.values(b"record-route")
    route = b"Route: " + b", ".join(reversed(rr))
    ack = request(
        b"ACK", CALLEE_CONTACT, CALLER, branch=b"z9hG4bKack", to_tag=b"callee",
        to=b"sip:bob@192.0.2.50", headers=(route,),
    )  # fmt: skip
    out = await h.feed(ack, CALLER)
    assert one(out, CALLEE).request.method == b"ACK"
    return rr


def from_callee(
    method: bytes,
    uri: bytes,
    routes: tuple[bytes, ...],
    *,
    branch: bytes,
    cseq: int = 1,
    from_tag: bytes = b"callee",
    to_tag: bytes | None = b"f1",
    call_id: bytes = b"call1@test",
    contact: bytes = CALLEE_CONTACT,
) -> bytes:
    """A request the callee (192.0.2.50) sends, within the call unless told otherwise."""
    to = b"<sip:alice@example.net>" + (b";tag=" + to_tag if to_tag else b"")
    lines = [
        b"%s %s SIP/2.0" % (method, uri),
        b"Via: SIP/2.0/UDP 192.0.2.50:5060;branch=%s;rport" % branch,
        b"Max-Forwards: 70",
        b"From: <sip:bob@192.0.2.50>;tag=" + from_tag,
        b"To: " + to,
        b"Call-ID: " + call_id,
        b"CSeq: %d %s" % (cseq, method),
        b"Contact: <%s>" % contact,
        *(b"Route: " + r for r in routes),
        b"Content-Length: 0",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def refused(out: list[Sent], source: tuple[str, int] = CALLEE) -> None:
    assert statuses(out, source) == [403], [s.data for s in out]
    assert all(s.to(source) for s in out), "nothing relayed"


# -- abuse by a party of the call -------------------------------------------------------------


def test_callee_cannot_relay_a_request_to_a_third_host(tmp_path: Path) -> None:
    """The callee keeps the call's tags and token but aims the Request-URI elsewhere."""

    async def body(h: Harness) -> None:
        rr = await established(h)
        for i, method in enumerate((b"MESSAGE", b"INFO", b"INVITE")):
            data = from_callee(
                method, b"sip:victim@203.0.113.5", rr, branch=b"z9hG4bKm%d" % i, cseq=10 + i
            )
            out = await h.feed(data, CALLEE)
            assert not only(out, VICTIM)
            assert statuses(out, CALLEE)[-1] == 403
        assert h.proxy.stats.in_dialog_refused == 3

    run(tmp_path, body)


def test_extra_route_after_ours_does_not_escape(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        rr = await established(h)
        extra = (*rr, b"<sip:203.0.113.5;lr>")
        out = await h.feed(from_callee(b"INFO", CALLER_CONTACT, extra, branch=b"z9hG4bKx"), CALLEE)
        refused(out)

    run(tmp_path, body)


def test_a_party_cannot_aim_its_requests_at_a_target_it_refreshed_itself(tmp_path: Path) -> None:
    """The callee moves its own Contact to the victim, then sends there: refused (its
    requests go to the caller's targets only)."""

    async def body(h: Harness) -> None:
        rr = await established(h)
        victim = b"sip:victim@203.0.113.5"
        update = from_callee(
            b"UPDATE", CALLER_CONTACT, rr, branch=b"z9hG4bKu", cseq=2, contact=victim
        )
        out = await h.feed(update, CALLEE)
        assert one(out, CALLER).request.method == b"UPDATE"
        out = await h.feed(from_callee(b"INFO", victim, rr, branch=b"z9hG4bKu2", cseq=3), CALLEE)
        refused(out)
        # Its own old target is not a destination for its requests either.
        out = await h.feed(
            from_callee(b"INFO", CALLEE_CONTACT, rr, branch=b"z9hG4bKu3", cseq=4), CALLEE
        )
        refused(out)

    run(tmp_path, body)


def test_forged_tags_or_call_id_are_refused(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        rr = await established(h)
        variants = (
            {"from_tag": b"other"},  # a tag the dialog does not have
            {"to_tag": b"other"},
            {"call_id": b"another@test"},  # the token is bound to the Call-ID
        )
        for i, kw in enumerate(variants):
            data = from_callee(b"INFO", CALLER_CONTACT, rr, branch=b"z9hG4bKt%d" % i, **kw)  # type: ignore[arg-type]
            refused(await h.feed(data, CALLEE))

    run(tmp_path, body)


def test_out_of_dialog_request_with_our_token_is_authenticated(tmp_path: Path) -> None:
    """No To tag: an initial request, challenged like any other despite our Route."""

    async def body(h: Harness) -> None:
        rr = await established(h)
        data = from_callee(
            b"MESSAGE", b"sip:victim@203.0.113.5", rr, branch=b"z9hG4bKo", to_tag=None
        )
        out = await h.feed(data, CALLEE)
        assert statuses(out, CALLEE) == [407]
        assert not only(out, VICTIM)

    run(tmp_path, body)


def test_token_is_dead_after_bye(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        rr = await established(h)
        bye = from_callee(b"BYE", CALLER_CONTACT, rr, branch=b"z9hG4bKbye", cseq=2)
        out = await h.feed(bye, CALLEE)
        down = one(out, CALLER).request
        assert down.method == b"BYE"
        assert len(h.proxy.dialogs) == 1, "the dialog ends with the BYE's final response"
        out = await h.feed(answer(one(out, CALLER).data, 200), CALLER)
        assert statuses(out, CALLEE) == [200]
        assert len(h.proxy.dialogs) == 0
        for i, (method, uri) in enumerate(
            ((b"INFO", CALLER_CONTACT), (b"MESSAGE", b"sip:victim@203.0.113.5"))
        ):
            data = from_callee(method, uri, rr, branch=b"z9hG4bKafter%d" % i, cseq=3 + i)
            refused(await h.feed(data, CALLEE))

    run(tmp_path, body)


def test_failed_call_leaves_no_usable_token(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        rr = fwd.request.values(b"record-route")
        out = await h.feed(answer(fwd.data, 180), CALLEE)
        # Early dialog: the callee's in-dialog request to the caller is fine.
        out = await h.feed(from_callee(b"INFO", CALLER_CONTACT, rr, branch=b"z9hG4bKe"), CALLEE)
        assert one(out, CALLER).request.method == b"INFO"
        await h.feed(answer(fwd.data, 486), CALLEE)
        assert len(h.proxy.dialogs) == 0
        data = from_callee(b"INFO", CALLER_CONTACT, rr, branch=b"z9hG4bKe2", cseq=2)
        refused(await h.feed(data, CALLEE))

    run(tmp_path, body)


# -- legitimate traffic ---------------------------------------------------------------------


def test_in_dialog_requests_both_ways_still_work(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        rr = await established(h)
        # The callee's re-INVITE moves its target; INFO and BYE then go to the new one.
        moved = b"sip:bob@192.0.2.50:5070"
        reinvite = from_callee(
            b"INVITE", CALLER_CONTACT, rr, branch=b"z9hG4bKri", cseq=2, contact=moved
        )
        out = await h.feed(reinvite, CALLEE)
        assert one(out, CALLER).request.method == b"INVITE"
        out = await h.feed(
            from_callee(b"INFO", CALLER_CONTACT, rr, branch=b"z9hG4bKi", cseq=3), CALLEE
        )
        assert one(out, CALLER).request.method == b"INFO"
        # The caller (trusted) and the callee's new target.
        route = b"Route: " + b", ".join(reversed(rr))
        info = request(
            b"INFO", moved, CALLER, branch=b"z9hG4bKci", cseq=5, to_tag=b"callee",
            to=b"sip:bob@192.0.2.50", headers=(route,),
        )  # fmt: skip
        out = await h.feed(info, CALLER)
        assert one(out, ("192.0.2.50", 5070)).request.method == b"INFO"
        bye = from_callee(b"BYE", CALLER_CONTACT, rr, branch=b"z9hG4bKb", cseq=4)
        out = await h.feed(bye, CALLEE)
        assert one(out, CALLER).request.method == b"BYE"
        assert h.proxy.stats.in_dialog_refused == 0

    run(tmp_path, body)


def test_untrusted_caller_in_dialog_requests_reach_the_callee(tmp_path: Path) -> None:
    """The dialog check is per direction-agnostic tags: an untrusted caller's BYE."""

    async def body(h: Harness) -> None:
        rr = await established(h)
        h.auth.reconfigure([("alice", PASSWORD)], ())  # nobody trusted from now on
        route = b"Route: " + b", ".join(reversed(rr))
        bye = request(
            b"BYE", CALLEE_CONTACT, CALLER, branch=b"z9hG4bKub", cseq=2, to_tag=b"callee",
            to=b"sip:bob@192.0.2.50", headers=(route,),
        )  # fmt: skip
        out = await h.feed(bye, CALLER)
        assert one(out, CALLEE).request.method == b"BYE"
        elsewhere = request(
            b"INFO", b"sip:victim@203.0.113.5", CALLER, branch=b"z9hG4bKue", cseq=3,
            to_tag=b"callee", to=b"sip:bob@192.0.2.50", headers=(route,),
        )  # fmt: skip
        refused(await h.feed(elsewhere, CALLER), CALLER)

    run(tmp_path, body)


# -- tokens without dialog state (a restart) ------------------------------------------------


def test_token_from_before_a_restart_lives_for_a_bounded_time(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        started = h.proxy.dialogs.started
        lifetime = h.proxy.dialogs.token_lifetime

        def bye(issued: float, branch: bytes) -> bytes:
            extra = hops.token_params(h.proxy.secret, b"old@test", b"f1", int(issued), None)
            rr = (b"<sip:192.0.2.1:5060;lr%s>" % extra,)
            return from_callee(
                b"BYE", CALLER_CONTACT, rr, branch=branch, call_id=b"old@test", cseq=9
            )

        # Issued 10 minutes before this process started: no dialog state, accepted.
        out = await h.feed(bye(started - 600, b"z9hG4bKr1"), CALLEE)
        assert one(out, CALLER).request.method == b"BYE"
        # Issued longer ago than the lifetime: refused.
        refused(await h.feed(bye(h.wall.now - lifetime - 1, b"z9hG4bKr2"), CALLEE))
        # Issued by this process, but no such dialog (never made, or ended): refused.
        refused(await h.feed(bye(started + 1, b"z9hG4bKr3"), CALLEE))
        # A token with a forged time does not verify at all.
        good = hops.token_params(h.proxy.secret, b"old@test", b"f1", int(started - 600), None)
        forged = good.replace(b"%x." % int(started - 600), b"%x." % int(started - 60))
        data = from_callee(
            b"BYE", CALLER_CONTACT, (b"<sip:192.0.2.1:5060;lr%s>" % forged,),
            branch=b"z9hG4bKr4", call_id=b"old@test", cseq=9,
        )  # fmt: skip
        refused(await h.feed(data, CALLEE))

    run(tmp_path, body)


def test_dialog_state_is_bounded_and_expires() -> None:
    tracker = DialogTracker(lambda _uri: False, limit=3, timeout=100.0, early_timeout=10.0)
    msgs = [parse_datagram(invite(call_id=b"c%d@x" % i)) for i in range(5)]
    for i, msg in enumerate(msgs):
        assert isinstance(msg, Request)
        tracker.begin(msg, 1000.0 + i)
    assert len(tracker) == 3
    assert tracker.get(b"c0@x") is None and tracker.get(b"c4@x") is not None
    # Early dialogs expire after early_timeout without a message.
    assert tracker.get(b"c4@x", now=1004.0 + 11) is None
    later = parse_datagram(invite(call_id=b"c9@x"))
    assert isinstance(later, Request)
    tracker.begin(later, 2000.0)  # expired ones are dropped as new ones arrive
    assert len(tracker) == 1


# -- calls to a WebSocket client ------------------------------------------------------------

WS6 = Listener(ListenSpec(Transport.WS, V6, 8080), 8080)
WS_CLIENT = ("2001:db8:aaaa::7", 51234)  # a trusted network: registers without auth
WS_FLOW = Flow(Transport.WS, (V6, 8080), (ip_address(WS_CLIENT[0]), WS_CLIENT[1]), 7)
WS_CONTACT = b"sip:k3x9@df7jal23ls0d.invalid;transport=ws"


def with_websocket(h: Harness) -> None:
    identity = Identity([LISTEN4, LISTEN6, WS6], domains=(REALM,), source_for=lambda _ip: None)
    h.rebuild(identity=identity)


async def feed_ws(h: Harness, data: bytes) -> list[Sent]:
    before = len(h.sender.sent)
    h.proxy.on_message(parse_datagram(data), WS_FLOW)
    await h.drain()
    return h.sender.sent[before:]


async def ws_call(h: Harness) -> tuple[Sent, tuple[bytes, ...]]:
    """bob registers over WebSocket (from a trusted network) and is called."""
    with_websocket(h)
    reg = register(b"bob", WS_CLIENT, call_id=b"regws@x", branch=b"z9hG4bKws").replace(
        b"sip:bob@" + sent_by(WS_CLIENT), WS_CONTACT
    ).replace(b"SIP/2.0/UDP", b"SIP/2.0/WS")  # fmt: skip
    out = await feed_ws(h, reg)
    assert [s.status for s in out] == [200], [s.data for s in out]
    out = await h.feed(invite(b"sip:bob@example.net"), CALLER)
    down = one(out, WS_CLIENT)
    assert down.transport is Transport.WS
    rr = down.request.values(b"record-route")
    assert any(b";r64f=ws:[2001:db8:aaaa::7]:51234" in r for r in rr), rr
    return down, rr


def test_ack_and_bye_reach_a_websocket_client_over_its_connection(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        down, rr = await ws_call(h)
        ok = answer(down.data, 200).replace(CALLEE_CONTACT, WS_CONTACT)
        out = await feed_ws(h, ok)
        assert statuses(out, CALLER) == [200]
        route = b"Route: " + b", ".join(reversed(rr))
        ack = request(
            b"ACK", WS_CONTACT, CALLER, branch=b"z9hG4bKwa", to_tag=b"callee",
            to=b"sip:bob@example.net", headers=(route,),
        )  # fmt: skip
        out = await h.feed(ack, CALLER)
        sent = one(out, WS_CLIENT)
        assert (sent.request.method, sent.transport) == (b"ACK", Transport.WS)
        bye = request(
            b"BYE", WS_CONTACT, CALLER, branch=b"z9hG4bKwb", cseq=2, to_tag=b"callee",
            to=b"sip:bob@example.net", headers=(route,),
        )  # fmt: skip
        out = await h.feed(bye, CALLER)
        sent = one(out, WS_CLIENT)
        assert (sent.request.method, sent.transport) == (b"BYE", Transport.WS)
        out = await feed_ws(h, answer(sent.data, 200))
        assert statuses(out, CALLER) == [200]

    run(tmp_path, body)


def test_websocket_client_whose_connection_closed_gets_430(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        down, rr = await ws_call(h)
        out = await feed_ws(h, answer(down.data, 200).replace(CALLEE_CONTACT, WS_CONTACT))
        h.sender.closed.add((Transport.WS, ip_address(WS_CLIENT[0]), WS_CLIENT[1]))
        route = b"Route: " + b", ".join(reversed(rr))
        bye = request(
            b"BYE", WS_CONTACT, CALLER, branch=b"z9hG4bKwc", cseq=2, to_tag=b"callee",
            to=b"sip:bob@example.net", headers=(route,),
        )  # fmt: skip
        out = await h.feed(bye, CALLER)
        assert statuses(out, CALLER) == [430]
        # A new call to the registered client fails at once too.
        out = await h.feed(
            invite(b"sip:bob@example.net", call_id=b"call2@test", branch=b"z9hG4bKn"), CALLER
        )
        assert statuses(out, CALLER) == [100, 430]
        assert not only(out, WS_CLIENT)

    run(tmp_path, body)


def test_stranger_cannot_use_a_flow_token(tmp_path: Path) -> None:
    """A flow token is covered by the HMAC: editing it breaks the token."""

    async def body(h: Harness) -> None:
        down, rr = await ws_call(h)
        await feed_ws(h, answer(down.data, 200).replace(CALLEE_CONTACT, WS_CONTACT))
        forged = tuple(r.replace(b"51234", b"51235") for r in rr)
        route = b"Route: " + b", ".join(reversed(forged))
        bye = request(
            b"BYE", WS_CONTACT, STRANGER, branch=b"z9hG4bKws9", cseq=2, to_tag=b"callee",
            to=b"sip:bob@example.net", headers=(route,),
        )  # fmt: skip
        refused(await h.feed(bye, STRANGER), STRANGER)

    run(tmp_path, body)


def test_token_issued_in_the_start_second_is_this_process() -> None:
    """Tokens carry whole seconds: one issued just after a start at x.7 s says x."""
    tracker = DialogTracker(lambda _uri: False, started=1000.7)
    msg = parse_datagram(invite(to_tag=b"t"))
    assert isinstance(msg, Request)
    why = tracker.admit(msg, msg.uri, (), 1000, wall=1001.0, now=5.0)
    assert why is not None and "no such dialog" in why
    assert tracker.admit(msg, msg.uri, (), 999, wall=1001.0, now=5.0) is None


# -- a TCP caller behind NAT ----------------------------------------------------------------

TCP6 = Listener(ListenSpec(Transport.TCP, V6, 5060), 5060)
NAT_PORT = 40001  # the caller's connection leaves its NAT from this port
TCP_FLOW = Flow(Transport.TCP, (V6, 5060), (ip_address(CALLER[0]), NAT_PORT), 9)


def test_requests_toward_a_tcp_caller_behind_nat_use_its_connection(tmp_path: Path) -> None:
    """The caller's Contact (port 5062) is not where its connection comes from (40001):
    the callee's in-dialog requests go over that connection while it is open, and to the
    Contact once it is gone."""

    async def body(h: Harness) -> None:
        identity = Identity([LISTEN4, LISTEN6, TCP6], domains=(REALM,), source_for=lambda _: None)
        h.rebuild(identity=identity)
        data = invite(headers=()).replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP").replace(
            b"Contact: <sip:alice@" + sent_by(CALLER) + b">",
            b"Contact: <sip:alice@" + sent_by(CALLER) + b";transport=tcp>",
        )  # fmt: skip
        h.proxy.on_message(parse_datagram(data), TCP_FLOW)
        await h.drain()
        fwd = one(h.sender.sent, CALLEE)
        rr = fwd.request.values(b"record-route")
        assert any(b";r64f=tcp:[2001:db8:aaaa::10]:40001" in r for r in rr), rr
        await h.feed(answer(fwd.data, 200), CALLEE)
        contact = CALLER_CONTACT + b";transport=tcp"
        out = await h.feed(from_callee(b"INFO", contact, rr, branch=b"z9hG4bKn1", cseq=2), CALLEE)
        sent = one(out, (CALLER[0], NAT_PORT))
        assert (sent.request.method, sent.transport) == (b"INFO", Transport.TCP)
        h.sender.closed.add((Transport.TCP, ip_address(CALLER[0]), NAT_PORT))
        out = await h.feed(from_callee(b"BYE", contact, rr, branch=b"z9hG4bKn2", cseq=3), CALLEE)
        sent = one(out, CALLER)
        assert (sent.request.method, sent.transport) == (b"BYE", Transport.TCP)

    run(tmp_path, body)
