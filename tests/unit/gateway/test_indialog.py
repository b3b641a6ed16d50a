"""The proxy's raw ACK path (``gateway/proxy/indialog.py``, ``sip.peek.peek_request``):
what it takes, what it leaves to the full path (every refusal included), and that both
forward the same bytes."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtc64.errors import RemoteProtocolError
from rtc64.gateway.proxy import hops
from rtc64.gateway.startup import Reception
from rtc64.net.endpoint import Flow
from rtc64.sip.nameaddr import parse_name_addr
from rtc64.sip.peek import header_tag, peek_request
from tests.unit.gateway.test_proxy import (
    CALLEE,
    CALLER,
    STRANGER,
    Harness,
    Sent,
    answer,
    call_forwarded,
    media_sdp,
    one,
    relay_bridge,
    request,
    run,
    udp_flow,
    with_sdp,
)

ACK = (
    b"ACK sip:bob@192.0.2.50:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP [2001:db8:aaaa::10]:5062;branch=z9hG4bKack;rport\r\n"
    b"Route: <sip:[2001:db8::1];lr;r64=1.abc>\r\n"
    b"Max-Forwards: 70\r\n"
    b'f: "Al ice" <sip:alice@example.net>;tag=f1\r\n'
    b"To: <sip:bob@192.0.2.50>;tag=callee\r\n"
    b"i: call1@test\r\n"
    b"CSeq: 1 ACK\r\n"
    b"l: 0\r\n\r\n"
)


def test_peek_reads_a_plain_ack() -> None:
    raw = peek_request(ACK)
    assert raw is not None
    assert (raw.method, raw.uri, raw.branch, raw.seq) == (
        b"ACK", b"sip:bob@192.0.2.50:5060", b"z9hG4bKack", 1
    )  # fmt: skip
    assert (raw.call_id, raw.from_tag, raw.to_tag) == (b"call1@test", b"f1", b"callee")
    assert raw.routes == (b"<sip:[2001:db8::1];lr;r64=1.abc>",)
    assert ACK[raw.via_start : raw.via_end].startswith(b"Via: ")
    assert ACK[raw.mf_start : raw.mf_end] == b"Max-Forwards: 70\r\n"
    assert (raw.max_forwards, raw.body, raw.guarded) == (70, False, False)
    assert ACK[raw.head_end :] == b"\r\n"


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        (b"<sip:a@x>;tag=1", b"1"),
        (b"<sip:a@x;tag=uri>;TAG = 2 ", b"2"),
        (b'"a;tag=x <y>" <sip:a@x>;tag=3', b"3"),
        (b"sip:a@x;tag=4;foo", b"4"),
        (b"<sip:a@x;tag=5>", None),
        (b"<sip:a@x>;tag", None),
        (b"<sip:a@x>;tag=1;tag=2", b""),
        (b"<sip:a@x>;tag=", b""),
        (b'"a\\"b" <sip:a@x>;tag=1', b"1"),
        (b'"a\\">" <sip:a@x>;tag=1', b""),
        (b"<sip:a@x;tag=1", b""),
    ],
)
def test_header_tag_reads_the_tag_outside_the_uri(value: bytes, tag: bytes | None) -> None:
    assert header_tag(value) == tag


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([b"", b"alice ", b'"A <b>" ', b"a>b ", b'"a<b" ', b'"a\\">" ']),
    st.sampled_from([b"<sip:a@x>", b"<sip:a@x;tag=u>", b"sip:a@x", b"<sip:a@x"]),
    st.lists(st.sampled_from([b";tag=1", b";tag=a.b-c", b";TAG=2", b";x=y", b";tag=", b" "]),
             max_size=3),
)  # fmt: skip
def test_header_tag_agrees_with_the_parser(display: bytes, uri: bytes, params: list[bytes]) -> None:
    """Wherever the parser reads a From value, its tag is what ``header_tag`` reads, or
    ``header_tag`` says it cannot read it plainly (the raw path then parses)."""
    value = (display + uri + b"".join(params)).strip()
    try:
        parsed = parse_name_addr(value, "From")
    except RemoteProtocolError:
        return
    assert header_tag(value) in (parsed.tag, b"")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.replace(b"Max-Forwards: 70", b"Max-Forwards:\r\n 70"),
        lambda d: d.replace(b"rport\r\n", b"rport, SIP/2.0/UDP h;branch=z9hG4bKx\r\n"),
        lambda d: d.replace(b"branch=z9hG4bKack", b"branch=1234"),
        lambda d: d.replace(b"l: 0\r\n", b""),
        lambda d: d.replace(b"l: 0\r\n", b"l: 5\r\n"),
        lambda d: d + b"extra",
        lambda d: d.replace(b"CSeq: 1 ACK\r\n", b"CSeq: 1 ACK\r\nCSeq: 2 ACK\r\n"),
        lambda d: d.replace(b"CSeq: 1 ACK", b"CSeq: 1 BYE"),
        lambda d: d.replace(b"i: call1@test\r\n", b""),
        lambda d: d.replace(b"Max-Forwards: 70\r\n", b""),
        lambda d: d.replace(b"Max-Forwards: 70", b"Max-Forwards: 7a"),
        lambda d: d.replace(b"Max-Forwards: 70", b"Max-Forwards: 70\r\nMax-Forwards: 9"),
        lambda d: d.replace(b";tag=callee", b";tag=callee;tag=x"),
        lambda d: d.replace(b"\r\nCSeq", b"\nCSeq"),
        lambda d: d.replace(b"ACK sip:bob@192.0.2.50:5060 SIP/2.0", b"ACK  sip:bob SIP/2.0"),
        lambda d: d.replace(b"\r\n\r\n", b"\r\n"),
        lambda d: d.replace(b"To: ", b"T o: "),
    ],
    ids=["folded", "two-vias-one-line", "rfc2543", "no-length", "length-mismatch",
         "trailing", "two-cseq", "cseq-method", "no-call-id", "no-max-forwards",
         "bad-max-forwards", "two-max-forwards", "two-tags", "bare-lf", "bad-start",
         "no-end", "bad-name"],
)  # fmt: skip
def test_peek_leaves_every_unusual_request_to_the_parser(mutate: Callable[[bytes], bytes]) -> None:
    assert peek_request(mutate(ACK)) is None


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_peek_request_never_raises_on_mutated_requests(data: st.DataObject) -> None:
    raw = bytearray(ACK)
    for _ in range(data.draw(st.integers(0, 4))):
        at = data.draw(st.integers(0, len(raw)))
        raw[at : at + data.draw(st.integers(0, 8))] = data.draw(st.binary(max_size=8))
    found = peek_request(bytes(raw))
    if found is not None:
        assert bytes(raw)[found.via_start : found.via_end].endswith(b"\r\n")
        assert found.branch in bytes(raw)[found.via_start : found.via_end]
        assert bytes(raw)[found.mf_start : found.mf_end].endswith(b"\r\n")
    assert peek_request(data.draw(st.binary(max_size=300))) is None or True


# -- through the proxy -----------------------------------------------------------------------


def route_of(fwd: Sent) -> bytes:
    """The caller's Route header for the dialog ``fwd`` (the INVITE sent) set up."""
    return b"Route: " + b", ".join(reversed(fwd.request.values(b"record-route")))


def ack_for(fwd: Sent, source: tuple[str, int] = CALLER, **kwargs: object) -> bytes:
    headers = kwargs.pop("headers", (route_of(fwd),))
    return request(
        b"ACK", b"sip:bob@192.0.2.50:5060", source, branch=b"z9hG4bKack", to_tag=b"callee",
        to=b"sip:bob@192.0.2.50", headers=headers, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


async def confirmed(h: Harness) -> Sent:
    fwd = await call_forwarded(h)
    await h.feed(answer(fwd.data, 200), CALLEE)
    return fwd


async def raw_feed(h: Harness, data: bytes, source: tuple[str, int]) -> tuple[bool, list[Sent]]:
    """Offer ``data`` to the raw path only: (taken, what was sent)."""
    before = len(h.sender.sent)
    taken = h.proxy.on_raw_request(data, udp_flow(source))
    await h.drain()
    return taken, h.sender.sent[before:]


async def both_paths(
    h: Harness, data: bytes, source: tuple[str, int]
) -> tuple[bool, list[Sent], list[Sent]]:
    """``data`` offered to the raw path, then through the full path, with the same branch
    counter: (taken raw, sent raw, sent by the full path)."""
    hops._counter = itertools.count(7)
    taken, raw_out = await raw_feed(h, data, source)
    hops._counter = itertools.count(7)
    h.raw = False
    full_out = await h.feed(data, source)
    h.raw = True
    return taken, raw_out, full_out


def test_a_call_s_ack_takes_the_raw_path_and_sends_what_the_full_path_would(
    tmp_path: Path,
) -> None:
    async def body(h: Harness) -> None:
        fwd = await confirmed(h)
        ack = ack_for(fwd)
        taken, raw_out, full_out = await both_paths(h, ack, CALLER)
        assert taken and len(raw_out) == 1
        assert raw_out == full_out
        sent = one(raw_out, CALLEE)
        assert sent.own_port  # the callee was reached from a worker's own port
        assert sent.request.max_forwards == 69 and not sent.request.has(b"route")
        stats = h.proxy.stats
        assert (stats.raw_acks, stats.requests_in, stats.dropped) == (1, 3, 0)
        assert stats.forwarded == 3  # INVITE, ACK raw, ACK full
        dialog = h.proxy.dialogs.get(b"call1@test")
        assert dialog is not None and dialog.caller_cseq == 1

    run(tmp_path, body)


def test_the_dialog_s_cseq_and_expiry_follow_a_raw_ack(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        fwd = await confirmed(h)
        dialog = h.proxy.dialogs.get(b"call1@test")
        assert dialog is not None
        before = dialog.expires
        h.clock.now += 100.0
        taken, _ = await raw_feed(h, ack_for(fwd, cseq=5), CALLER)
        assert taken and dialog.caller_cseq == 5 and dialog.expires == before + 100.0

    run(tmp_path, body)


def _forged(fwd: Sent) -> bytes:
    """The caller's Route with one hex digit of our token's MAC changed."""
    route = route_of(fwd)
    at = route.index(b";r64=") + 5 + route[route.index(b";r64=") + 5 :].index(b".") + 1
    flip = b"0" if route[at : at + 1] != b"0" else b"1"
    return route[:at] + flip + route[at + 1 :]


ATTACKS: dict[str, Callable[[Sent], tuple[bytes, tuple[str, int]]]] = {
    "forged-token": lambda fwd: (ack_for(fwd, headers=(_forged(fwd),)), CALLER),
    "token-of-another-call": lambda fwd: (ack_for(fwd, call_id=b"other@test"), CALLER),
    "no-route": lambda fwd: (ack_for(fwd, headers=()), CALLER),
    "third-party-route-first": lambda fwd: (
        ack_for(fwd, headers=(b"Route: <sip:203.0.113.5;lr>, " + route_of(fwd)[7:],)),
        CALLER,
    ),
    "untrusted-third-party-after-ours": lambda fwd: (
        ack_for(fwd, STRANGER, headers=(route_of(fwd) + b", <sip:203.0.113.5;lr>",)),
        STRANGER,
    ),
    "untrusted-wrong-tag": lambda fwd: (
        ack_for(fwd, STRANGER).replace(b";tag=callee", b";tag=nope"),
        STRANGER,
    ),
    "untrusted-other-target": lambda fwd: (
        ack_for(fwd, STRANGER).replace(b"ACK sip:bob@192.0.2.50:5060", b"ACK sip:x@203.0.113.5"),
        STRANGER,
    ),
    "max-forwards-0": lambda fwd: (ack_for(fwd, max_forwards=0), CALLER),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attacks_are_left_to_the_full_path_which_refuses_them(tmp_path: Path, attack: str) -> None:
    async def body(h: Harness) -> None:
        fwd = await confirmed(h)
        data, source = ATTACKS[attack](fwd)
        taken, out = await raw_feed(h, data, source)
        assert (taken, out) == (False, [])
        assert h.proxy.stats.raw_acks == 0 and h.proxy.stats.requests_in == 1
        dialog = h.proxy.dialogs.get(b"call1@test")
        assert dialog is not None and dialog.caller_cseq == 1  # nothing changed
        out = await h.feed(data, source)
        if attack == "third-party-route-first":  # not routed via us: the caller's to send
            assert h.proxy.stats.dropped == 1 and out == []
        else:
            assert out == [] and h.proxy.stats.dropped == 1, [s.data for s in out]

    run(tmp_path, body)


def test_an_untrusted_party_of_the_dialog_goes_raw_and_an_ended_dialog_does_not(
    tmp_path: Path,
) -> None:
    """The dialog admits an ACK from an untrusted source (its tags, target and Route),
    wherever it comes from; once the BYE's 200 ended the dialog, it is the full path's
    (403 in_dialog_refused, dropped) and so is a dialog that never existed."""

    async def body(h: Harness) -> None:
        fwd = await confirmed(h)
        ack = ack_for(fwd, STRANGER)
        taken, raw_out, full_out = await both_paths(h, ack, STRANGER)
        assert taken and raw_out == full_out and len(raw_out) == 1
        bye = request(
            b"BYE", b"sip:bob@192.0.2.50:5060", CALLER, branch=b"z9hG4bKbye", cseq=2,
            to_tag=b"callee", to=b"sip:bob@192.0.2.50", headers=(route_of(fwd),),
        )  # fmt: skip
        down = one(await h.feed(bye, CALLER), CALLEE)
        await h.feed(answer(down.data, 200), CALLEE)
        assert h.proxy.dialogs.get(b"call1@test") is None
        for data in (ack, ack.replace(b"call1@test", b"never@test")):
            taken, out = await raw_feed(h, data, STRANGER)
            assert (taken, out) == (False, [])
        refused = h.proxy.stats.in_dialog_refused
        assert await h.feed(ack, STRANGER) == []
        assert h.proxy.stats.in_dialog_refused == refused + 1

    run(tmp_path, body)


def test_requests_the_raw_path_does_not_take(tmp_path: Path) -> None:
    """A BYE, credentials, a body with the media bridge off... each is parsed: the raw
    path says no and changes nothing."""

    async def body(h: Harness) -> None:
        fwd = await confirmed(h)
        route = route_of(fwd)
        cases = [
            ack_for(fwd).replace(b"ACK", b"BYE"),
            ack_for(fwd, headers=(route, b'Proxy-Authorization: Digest username="a"')),
            ack_for(fwd, headers=(route, b"Proxy-Require: foo")),
            ack_for(fwd).replace(b";tag=callee", b""),
            # the next hop is a host name (DNS) or a WebSocket flow
            *(
                ack_for(fwd).replace(b"ACK sip:bob@192.0.2.50:5060", b"ACK " + uri)
                for uri in (b"sip:bob@example.org", b"sip:bob@192.0.2.50;transport=ws",
                            b"sip:bob@192.0.2.50;maddr=x.test")
            ),
            # a Route that does not parse
            ack_for(fwd, headers=(route + b", junk",)),
        ]  # fmt: skip
        for data in cases:
            taken, out = await raw_feed(h, data, CALLER)
            assert (taken, out) == (False, []), data
        assert h.proxy.stats.raw_acks == 0

    run(tmp_path, body)


def test_an_ack_matching_a_live_server_transaction_is_the_transaction_layer_s(
    tmp_path: Path,
) -> None:
    """An ACK with the INVITE's branch (the ACK for a non-2xx final, or a UA reusing it)
    goes to the transaction layer."""

    async def body(h: Harness) -> None:
        fwd = await confirmed(h)
        same = ack_for(fwd).replace(b"branch=z9hG4bKack", b"branch=z9hG4bKc1")
        assert h.layer.serves_branch(b"z9hG4bKc1")
        taken, out = await raw_feed(h, same, CALLER)
        assert (taken, out) == (False, [])

    run(tmp_path, body)


def test_an_sdp_answer_in_the_ack_takes_the_full_path_with_the_bridge_on(
    tmp_path: Path,
) -> None:
    _, bridge, _, _ = relay_bridge()

    async def body(h: Harness) -> None:
        fwd = await confirmed(h)
        ack = with_sdp(ack_for(fwd), media_sdp(CALLER[0], 4000))
        taken, out = await raw_feed(h, ack, CALLER)
        assert (taken, out) == (False, [])

    run(tmp_path, body, media=bridge)


def test_a_body_goes_raw_untouched_without_a_media_bridge(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        fwd = await confirmed(h)
        ack = with_sdp(ack_for(fwd), media_sdp(CALLER[0], 4000))
        taken, raw_out, full_out = await both_paths(h, ack, CALLER)
        assert taken and raw_out == full_out

    run(tmp_path, body)


def test_reception_shows_a_raw_forwarded_ack_to_the_taps() -> None:
    class Proxy:
        def __init__(self, shed: bool, take: bool) -> None:
            self.shed, self.take = shed, take

        def shed_raw(self, data: bytes, flow: Flow) -> bool:
            return self.shed

        def on_raw_request(self, data: bytes, flow: Flow) -> bool:
            return self.take

    seen: list[bytes] = []
    reception = Reception(logging.getLogger("test"))
    reception.taken = lambda data, flow: seen.append(data)
    flow = udp_flow(CALLER)
    assert reception.on_raw_request(ACK, flow) is False  # no proxy yet
    reception.proxy = Proxy(False, False)  # type: ignore[assignment]
    assert reception.on_raw_request(ACK, flow) is False and seen == []
    reception.proxy = Proxy(True, False)  # type: ignore[assignment]
    assert reception.on_raw_request(ACK, flow) is True and seen == []  # a 503: no tap
    reception.proxy = Proxy(False, True)  # type: ignore[assignment]
    assert reception.on_raw_request(ACK, flow) is True and seen == [ACK]


# -- byte for byte -------------------------------------------------------------------------

_NAMES = {
    b"Via": (b"Via", b"v", b"VIA"),
    b"Max-Forwards": (b"Max-Forwards", b"max-forwards"),
    b"From": (b"From", b"f"),
    b"To": (b"To", b"t"),
    b"Call-ID": (b"Call-ID", b"i", b"call-id"),
    b"CSeq": (b"CSeq", b"cseq"),
    b"Content-Length": (b"Content-Length", b"l"),
    b"Route": (b"Route", b"ROUTE"),
}


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_raw_and_full_paths_send_the_same_bytes(
    tmp_path_factory: object, data: st.DataObject
) -> None:
    """ACKs of many plain shapes (header spellings and order, Route split over lines or
    not, another proxy's entry after ours, a Via with or without rport, unknown headers,
    spacing): whenever the raw path takes one, the full path sends the same bytes."""
    draw = data.draw
    trusted = draw(st.booleans())
    source = CALLER if trusted else STRANGER
    beyond = draw(st.booleans())  # another proxy's entry after ours (trusted only)
    split = draw(st.booleans())
    rport = draw(st.sampled_from([b";rport", b"", b";rport=5062"]))
    spaces = draw(st.sampled_from([b" ", b"  ", b"\t"]))
    extra = draw(
        st.lists(st.sampled_from([b"User-Agent: x", b"X-A: 1, 2", b"Allow: ACK"]), max_size=3)
    )
    display = draw(st.sampled_from([b"", b'"A B" ', b"alice "]))
    mf = draw(st.integers(1, 255))
    order = draw(st.permutations(list(range(7))))
    found: list[bool] = []

    async def body(h: Harness) -> None:
        fwd = await confirmed(h)
        entries = list(reversed(fwd.request.values(b"record-route")))
        if beyond and trusted:
            entries.append(b"<sip:192.0.2.77;lr>")
        route_lines = (
            [b"%s:%s%s" % (draw(st.sampled_from(_NAMES[b"Route"])), spaces, e) for e in entries]
            if split
            else [b"Route:%s%s" % (spaces, b", ".join(entries))]
        )

        def name(n: bytes) -> bytes:
            return draw(st.sampled_from(_NAMES[n]))

        sent_by = b"[2001:db8:aaaa::10]:5062" if trusted else b"[2001:db8:bad::10]:5062"
        lines = [
            b"%s: SIP/2.0/UDP %s;branch=z9hG4bKack%s" % (name(b"Via"), sent_by, rport),
            b"%s:%s%d" % (name(b"Max-Forwards"), spaces, mf),
            b"%s: %s<sip:alice@example.net>;tag=f1" % (name(b"From"), display),
            b"%s: <sip:bob@192.0.2.50>;tag=callee" % name(b"To"),
            b"%s: call1@test" % name(b"Call-ID"),
            b"%s: 1 ACK" % name(b"CSeq"),
            b"\r\n".join(route_lines),
        ]
        head = [lines[i] for i in order] + extra
        ack = b"ACK sip:bob@192.0.2.50:5060 SIP/2.0\r\n" + b"\r\n".join(head)
        ack += b"\r\n%s: 0\r\n\r\n" % name(b"Content-Length")
        taken, raw_out, full_out = await both_paths(h, ack, source)
        assert len(full_out) == 1, ack
        if taken:
            assert raw_out == full_out, ack
        found.append(taken)

    path = Path(str(tmp_path_factory.mktemp("raw")))  # type: ignore[attr-defined]
    run(path, body)
    # every shape drawn here is plain: the raw path takes them all
    assert found == [True]


def test_a_failure_in_the_raw_path_leaves_the_ack_to_the_full_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from rtc64.gateway.proxy import service  # noqa: PLC0415

    def broken(*_: object) -> bool:
        raise ValueError("boom")

    async def body(h: Harness) -> None:
        fwd = await confirmed(h)
        monkeypatch.setattr(service, "forward_raw_ack", broken)
        taken, out = await raw_feed(h, ack_for(fwd), CALLER)
        assert (taken, out) == (False, [])
        assert "raw ACK path failed" in caplog.text
        assert len(await h.feed(ack_for(fwd), CALLER)) == 1  # the full path forwards it

    run(tmp_path, body)
