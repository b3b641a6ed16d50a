"""The proxy's raw response path (``gateway/proxy/quick.py``, ``sip.peek.peek_response``):
what it takes, what it leaves to the full path, and that both forward the same bytes."""

from __future__ import annotations

import logging
from ipaddress import ip_address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtc64.gateway.media import MediaBridge
from rtc64.gateway.startup import Reception
from rtc64.net.endpoint import Flow
from rtc64.sip.edit import forward_response
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request
from rtc64.sip.peek import peek_response
from tests.unit.gateway.test_proxy import (
    CALLEE,
    CALLER,
    Harness,
    Sent,
    answer,
    call_forwarded,
    invite,
    media_sdp,
    one,
    only,
    relay_bridge,
    request,
    run,
    statuses,
    udp_flow,
    with_sdp,
)

OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-r64-abc;rport\r\n"
    b"v: SIP/2.0/UDP [2001:db8::10]:5062;branch=z9hG4bKc1;rport=5062\r\n"
    b"Record-Route: <sip:192.0.2.1;lr>, <sip:[2001:db8::1];lr>\r\n"
    b"From: <sip:alice@example.net>;tag=f1\r\n"
    b"t: <sip:bob@192.0.2.50>;tag=b7\r\n"
    b"i: call1@test\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"m: <sip:bob@192.0.2.50:5060>\r\n"
    b"l: 0\r\n\r\n"
)
SECOND_VIA = b"v: SIP/2.0/UDP [2001:db8::10]:5062;branch=z9hG4bKc1;rport=5062\r\n"


def test_peek_reads_a_plain_response() -> None:
    raw = peek_response(OK)
    assert raw is not None
    assert (raw.status, raw.branch, raw.method, raw.seq) == (200, b"z9hG4bK-r64-abc", b"INVITE", 1)
    assert (raw.call_id, raw.to, raw.body) == (b"call1@test", b"<sip:bob@192.0.2.50>;tag=b7", False)
    assert raw.contacts == (b"<sip:bob@192.0.2.50:5060>",)
    assert raw.record_routes == (b"<sip:192.0.2.1;lr>, <sip:[2001:db8::1];lr>",)
    # The bytes forwarded are the full path's (Edit.remove_top_via), byte for byte.
    assert raw.without_top_via(OK) == forward_response(parse_datagram(OK))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.replace(b"UDP 192.0.2.1:5060;", b"UDP\r\n 192.0.2.1:5060;"),
        lambda d: d.replace(b"rport\r\n", b'rport;x="a,b", SIP/2.0/UDP h;branch=z9hG4bKx\r\n', 1),
        lambda d: d.replace(b"Via: SIP", b"Via:SIP").replace(b"rport\r\n", b"rport,SIP/2.0 h\r\n"),
        lambda d: d.replace(b"rport\r\n", b"rport,\r\n", 1),
        lambda d: d.replace(SECOND_VIA, b""),
        lambda d: d.replace(b"branch=z9hG4bK-r64-abc", b"branch=1234"),
        lambda d: d.replace(b"l: 0\r\n", b""),
        lambda d: d.replace(b"l: 0\r\n", b"l: 5\r\n"),
        lambda d: d + b"extra",
        lambda d: d.replace(b"CSeq: 1 INVITE\r\n", b"CSeq: 1 INVITE\r\nCSeq: 2 INVITE\r\n"),
        lambda d: d.replace(b"i: call1@test\r\n", b""),
        lambda d: d.replace(b"i: call1@test\r\n", b"i: call1@test\r\nCall-ID: other\r\n"),
        lambda d: d.replace(b"t: <sip:bob@192.0.2.50>;tag=b7\r\n", b""),
        lambda d: d.replace(b"From: ", b"Fr om: "),
        lambda d: d.replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE"),
        lambda d: d.replace(b"\r\nCSeq", b"\nCSeq"),
        lambda d: d.replace(b"SIP/2.0 200 OK", b"SIP/2.0 2x0 OK"),
        lambda d: d.replace(b"\r\n\r\n", b"\r\n"),
    ],
    ids=[
        "folded", "quoted-comma-in-ours", "no-space-after-colon", "trailing-comma", "one-via",
        "rfc2543-branch", "no-length",
        "length-mismatch", "trailing-bytes", "two-cseq", "no-call-id", "two-call-ids",
        "no-to", "bad-name", "bad-cseq", "bare-lf", "bad-status", "no-end",
    ],
)  # fmt: skip
def test_peek_leaves_every_unusual_shape_to_the_parser(mutate: object) -> None:
    assert callable(mutate)
    assert peek_response(mutate(OK)) is None


async def raw_feed(h: Harness, data: bytes, source: tuple[str, int]) -> tuple[bool, list[Sent]]:
    """Offer ``data`` to the raw path only: (taken, what was sent)."""
    before = len(h.sender.sent)
    taken = h.proxy.on_raw_response(data, udp_flow(source))
    await h.drain()
    return taken, h.sender.sent[before:]


def test_a_call_s_responses_take_the_raw_path_and_forward_what_the_full_path_would(
    tmp_path: Path,
) -> None:
    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        for status in (180, 200):
            data = answer(fwd.data, status)
            taken, out = await raw_feed(h, data, CALLEE)
            assert taken
            assert one(out, CALLER).data == forward_response(parse_datagram(data))
            assert one(out, CALLER).flow == udp_flow(CALLER)
        assert h.proxy.stats.responses_in == h.proxy.stats.raw_replies == 2
        dialog = h.proxy.dialogs.get(b"call1@test")
        assert dialog is not None and dialog.confirmed
        assert dialog.callee_tags == {b"callee"}
        assert dialog.callee_target == b"sip:bob@192.0.2.50:5060"

    run(tmp_path, body)


def _dialog_learnt(tmp_path: Path, *, raw: bool) -> tuple[object, ...]:
    found: list[tuple[object, ...]] = []

    async def body(h: Harness) -> None:
        h.raw = raw
        fwd = await call_forwarded(h)
        for status in (180, 200):
            data = answer(fwd.data, status).replace(
                b"Contact:", b"Record-Route: <sip:p.example;lr>\r\nContact:"
            )
            await h.feed(data, CALLEE)
        d = h.proxy.dialogs.get(b"call1@test")
        assert d is not None
        found.append(
            (d.confirmed, d.callee_tags, d.callee, d.callee_target, d.caller_routes,
             d.callee_routes, d.callee_targets, d.callee_route_keys, d.caller_route_keys)
        )  # fmt: skip

    run(tmp_path, body)
    return found[0]


def test_the_dialog_learnt_from_raw_bytes_equals_the_full_path_s(tmp_path: Path) -> None:
    full = _dialog_learnt(tmp_path / "full", raw=False)
    assert full[0] is True and (b"<sip:p.example;lr>",) in (full[4], full[5])
    assert _dialog_learnt(tmp_path / "raw", raw=True) == full


def test_forged_branch_wrong_source_and_foreign_call_id_are_left_to_the_full_path(
    tmp_path: Path,
) -> None:
    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        ours = fwd.request.via.branch
        assert ours is not None
        good = answer(fwd.data, 180)
        forged = good.replace(ours, ours[:-2] + b"zz")  # no such transaction
        other_method = good.replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE")
        wrong_port = good
        foreign = good.replace(b"call1@test", b"other@test")
        other_seq = good.replace(b"CSeq: 1 INVITE", b"CSeq: 7 INVITE")
        for data, source in (
            (forged, CALLEE), (other_method, CALLEE), (wrong_port, (CALLEE[0], 5099)),
            (wrong_port, ("192.0.2.51", CALLEE[1])), (foreign, CALLEE), (other_seq, CALLEE),
        ):  # fmt: skip
            taken, out = await raw_feed(h, data, source)
            assert (taken, out) == (False, [])
        assert h.proxy.stats.responses_in == 0
        branch = h.proxy.forwarder._pending  # nothing changed: still ringing-free
        assert all(not p.ctx.final_forwarded for p in branch.values())
        # The full path then does what it always did: a stray with our Via goes up
        # statelessly, one from another port is matched by branch as RFC 3261 says.
        out = await h.feed(forged, CALLEE)
        assert statuses(out, CALLER) == [180]
        h.raw = False
        out = await h.feed(wrong_port, (CALLEE[0], 5099))
        assert statuses(out, CALLER) == [180]

    run(tmp_path, body)


def test_a_response_for_no_transaction_is_not_taken(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        taken, out = await raw_feed(h, OK, CALLEE)
        assert (taken, out) == (False, [])
        assert h.proxy.stats.responses_in == 0 and h.proxy.stats.dropped == 0

    run(tmp_path, body)


def test_two_vias_on_the_top_line_go_raw_with_only_ours_removed(tmp_path: Path) -> None:
    """SIPp (the bench's callee) writes the Vias it echoes on one line, ours first: the
    raw path cuts "ours, " from it, byte for byte what the full path sends."""

    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        data = answer(fwd.data, 180)
        lines = data.split(b"\r\n")
        vias = [ln for ln in lines if ln.startswith(b"Via:")]
        assert len(vias) == 2
        joined = data.replace(vias[0] + b"\r\n" + vias[1], vias[0] + b", " + vias[1][5:])
        taken, out = await raw_feed(h, joined, CALLEE)
        assert taken
        assert one(out, CALLER).data == forward_response(parse_datagram(joined))
        up = one(out, CALLER).response
        assert [v.branch for v in up.vias] == [b"z9hG4bKc1"]

    run(tmp_path, body)


@pytest.mark.parametrize("raw", [True, False])
def test_100_trying_stops_timer_a_and_goes_nowhere(tmp_path: Path, raw: bool) -> None:
    """The callee's 100 Trying is absorbed from its raw bytes (no model built) exactly as
    the full path absorbs it: the INVITE's client transaction proceeds (Timer A stops),
    nothing is sent upstream; the 180 after it goes up as usual."""

    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        branch = fwd.request.via.branch
        assert branch is not None
        client = h.layer.client_for(branch, b"INVITE")
        assert client is not None and client.state.name == "CALLING"
        trying = answer(fwd.data, 100)
        if raw:
            taken, out = await raw_feed(h, trying, CALLEE)
            assert (taken, out) == (True, [])
        else:
            h.raw = False
            assert await h.feed(trying, CALLEE) == []
            h.raw = True
        assert client.state.name == "PROCEEDING" and h.proxy.stats.responses_in == 1
        assert h.proxy.stats.raw_replies == (1 if raw else 0)
        assert only(await h.advance(4.0), CALLEE) == []  # no INVITE retransmission
        taken, out = await raw_feed(h, answer(fwd.data, 180), CALLEE)
        assert taken and statuses(out, CALLER) == [180]

    run(tmp_path, body)


def test_without_a_100_timer_a_retransmits_the_invite(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        assert [s.data for s in only(await h.advance(4.0), CALLEE)] == [fwd.data] * 3

    run(tmp_path, body)


def test_a_100_the_raw_path_cannot_match_is_parsed(tmp_path: Path) -> None:
    """From another source, of another call or CSeq, of an unknown branch: the raw path
    says no and changes nothing; the full path decides (it matches by branch alone)."""

    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        trying = answer(fwd.data, 100)
        cases = [
            (trying, ("192.0.2.51", 5060)),
            (trying.replace(b"call1@test", b"other@test"), CALLEE),
            (trying.replace(b"CSeq: 1 INVITE", b"CSeq: 2 INVITE"), CALLEE),
            (trying.replace(b"branch=z9hG4bK-r64-", b"branch=z9hG4bK-r64-x"), CALLEE),
        ]
        for data, source in cases:
            taken, out = await raw_feed(h, data, source)
            assert (taken, out) == (False, []), data
        assert h.proxy.stats.raw_replies == 0

    run(tmp_path, body)


def test_2xx_retransmissions_in_accepted_go_up_raw_and_after_timer_m_as_strays(
    tmp_path: Path,
) -> None:
    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        ok = answer(fwd.data, 200)
        assert (await raw_feed(h, ok, CALLEE))[0]
        # RFC 6026: the client transaction is ACCEPTED; a retransmitted 2xx goes up again.
        taken, out = await raw_feed(h, ok, CALLEE)
        assert taken and statuses(out, CALLER) == [200]
        await h.advance(40.0)  # Timer M (32 s) ends the client transaction
        taken, out = await raw_feed(h, ok, CALLEE)
        assert (taken, out) == (False, [])
        out = await h.feed(ok, CALLEE)  # stateless forwarding: our Via is on top
        assert statuses(out, CALLER) == [200]

    run(tmp_path, body)


def test_cancel_racing_a_200_the_200_still_goes_up_and_confirms_the_dialog(
    tmp_path: Path,
) -> None:
    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        assert (await raw_feed(h, answer(fwd.data, 180), CALLEE))[0]
        cancel = request(b"CANCEL", b"sip:bob@192.0.2.50", CALLER)
        out = await h.feed(cancel, CALLER)
        assert statuses(out, CALLER) == [200]
        down = only(out, CALLEE)
        assert [s.request.method for s in down] == [b"CANCEL"]
        # The callee answered before the CANCEL reached it: the 2xx is forwarded.
        taken, out = await raw_feed(h, answer(fwd.data, 200), CALLEE)
        assert taken and statuses(out, CALLER) == [200]
        dialog = h.proxy.dialogs.get(b"call1@test")
        assert dialog is not None and dialog.confirmed
        # The callee's 200 for the CANCEL is its own transaction's (full path, absorbed).
        out = await h.feed(answer(down[0].data, 200), CALLEE)
        assert only(out, CALLER) == []

    run(tmp_path, body)


def test_a_body_is_forwarded_untouched_without_a_media_bridge(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        sdp = b"v=0\r\no=- 1 1 IN IP4 192.0.2.50\r\ns=-\r\nc=IN IP4 192.0.2.50\r\nt=0 0\r\n"
        data = answer(fwd.data, 200).replace(
            b"Content-Length: 0\r\n\r\n",
            b"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s" % (len(sdp), sdp),
        )
        taken, out = await raw_feed(h, data, CALLEE)
        assert taken
        assert one(out, CALLER).response.body == sdp

    run(tmp_path, body)


def test_reception_shows_a_raw_taken_response_to_the_taps() -> None:
    class Proxy:
        def __init__(self, take: bool) -> None:
            self.take = take

        def on_raw_response(self, data: bytes, flow: Flow) -> bool:
            return self.take

    seen: list[bytes] = []
    reception = Reception(logging.getLogger("test"))
    reception.taken = lambda data, flow: seen.append(data)
    flow = udp_flow(CALLEE)
    assert reception.on_raw_response(OK, flow) is False  # no proxy yet
    reception.proxy = Proxy(False)  # type: ignore[assignment]
    assert reception.on_raw_response(OK, flow) is False and seen == []
    reception.proxy = Proxy(True)  # type: ignore[assignment]
    assert reception.on_raw_response(OK, flow) is True and seen == [OK]
    assert invite()  # the module's helpers are the proxy tests'


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_peek_never_raises_on_mutated_responses(data: st.DataObject) -> None:
    """Fuzzing: any bytes, or OK with bytes cut, replaced or inserted: a reading or None."""
    raw = bytearray(OK)
    for _ in range(data.draw(st.integers(0, 4))):
        at = data.draw(st.integers(0, len(raw)))
        chunk = data.draw(st.binary(max_size=8))
        cut = data.draw(st.integers(0, 8))
        raw[at : at + cut] = chunk
    found = peek_response(bytes(raw))
    if found is not None:  # what it read is consistent with the bytes
        ours = bytes(raw)[found.via_start : found.via_end]
        # the whole top line, or "ours, " when the line holds more than one Via
        assert ours.endswith(b"\r\n") or ours.rstrip(b" \t").endswith(b",")
        assert found.branch in ours
    other = peek_response(data.draw(st.binary(max_size=300)))
    assert other is None or other.status >= 0


def _sdp_answer(fwd: Sent, status: int) -> bytes:
    return with_sdp(answer(fwd.data, status), media_sdp(CALLEE[0], 5000))


def test_an_sdp_answer_the_relay_rewrites_takes_the_full_path(tmp_path: Path) -> None:
    _, bridge, _, _ = relay_bridge()

    async def body(h: Harness) -> None:  # IPv6 caller, IPv4 callee: relayed (auto)
        out = await h.feed(with_sdp(invite(), media_sdp(CALLER[0], 4000)), CALLER)
        fwd = one(out, CALLEE)
        taken, out = await raw_feed(h, _sdp_answer(fwd, 200), CALLEE)
        assert (taken, out) == (False, [])
        out = await h.feed(_sdp_answer(fwd, 200), CALLEE)
        assert b"c=IN IP6 2001:db8::1\r\n" in one(out, CALLER).response.body

    run(tmp_path, body, media=bridge)


def test_an_sdp_answer_the_bridge_leaves_alone_is_forwarded_raw(tmp_path: Path) -> None:
    relay, _, _, _ = relay_bridge()
    bridge = MediaBridge(relay, "never", logging.getLogger("test.media"))

    async def body(h: Harness) -> None:
        out = await h.feed(with_sdp(invite(), media_sdp(CALLER[0], 4000)), CALLER)
        fwd = one(out, CALLEE)
        reply = _sdp_answer(fwd, 200)
        taken, out = await raw_feed(h, reply, CALLEE)
        assert taken
        assert one(out, CALLER).data == forward_response(parse_datagram(reply))
        assert bridge.active_calls() == 0

    run(tmp_path, body, media=bridge)


def test_the_bridge_says_which_responses_it_leaves_alone() -> None:
    _, bridge, _, _ = relay_bridge()
    offer = parse_datagram(with_sdp(invite(), media_sdp(CALLER[0], 4000)))
    plain = parse_datagram(invite())
    bye = parse_datagram(request(b"BYE", b"sip:bob@192.0.2.50", CALLER, to_tag=b"t"))
    callee = ip_address(CALLEE[0])
    assert isinstance(offer, Request) and isinstance(plain, Request) and isinstance(bye, Request)
    assert bridge.leaves_response(bye, callee)
    assert not bridge.leaves_response(plain, callee)  # the response would carry the offer
    assert bridge.leaves_response(offer, callee)  # no session yet
    bridge.offer(b"call1@test", b"f1", offer.body, offerer=ip_address(CALLER[0]), answerer=callee)
    assert not bridge.leaves_response(offer, callee)  # relayed now
