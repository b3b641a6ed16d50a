"""In-dialog requests routed at once (``gateway/proxy/atonce.forward_in_dialog``): a BYE
takes it when every check of the full path passes, sends what the routing step would
(byte for byte, the whole call compared), keeps the proxy transaction-stateful, and
leaves every refusal and unusual shape to the routing step."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtc64.gateway.proxy import hops, service
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request
from tests.unit.gateway.test_indialog import ack_for, confirmed, route_of
from tests.unit.gateway.test_proxy import (
    CALLEE,
    CALLER,
    STRANGER,
    Harness,
    Sent,
    answer,
    invite,
    media_sdp,
    one,
    relay_bridge,
    request,
    run,
    statuses,
    with_sdp,
)

SECRET = b"k" * 32
Record = tuple[bytes, str, int, bool]
Step = Callable[[Harness, Sent], Awaitable[None]]


def bye_for(fwd: Sent, source: tuple[str, int] = CALLER, **kwargs: Any) -> bytes:
    """The caller's BYE for the dialog ``fwd`` (the INVITE sent) set up."""
    headers = kwargs.pop("headers", (route_of(fwd),))
    method = kwargs.pop("method", b"BYE")
    return request(
        method, b"sip:bob@192.0.2.50:5060", source, branch=kwargs.pop("branch", b"z9hG4bKbye"),
        cseq=kwargs.pop("cseq", 2), to_tag=b"callee", to=b"sip:bob@192.0.2.50",
        headers=headers, **kwargs,
    )  # fmt: skip


def fresh(h: Harness) -> None:
    """The same Record-Route secret and branch counter in every run (comparable bytes)."""
    h.settings = replace(h.settings, secret=SECRET)
    h.rebuild()
    hops._counter = itertools.count(7)


def records(sent: list[Sent]) -> list[Record]:
    return [(s.data, str(s.ip), s.port, s.own_port) for s in sent]


def answered(h: Harness, out: list[Sent], status: int = 200) -> Awaitable[list[Sent]]:
    """The callee answers the request forwarded to it in ``out``."""
    return h.feed(answer(one(out, CALLEE).data, status), CALLEE)


async def _scenario(h: Harness, steps: list[Step]) -> tuple[list[Record], dict[str, int]]:
    fresh(h)
    fwd = await confirmed(h)
    start = len(h.sender.sent)
    for step in steps:
        await step(h, fwd)
    stats = h.proxy.stats.snapshot()
    dialog = h.proxy.dialogs.get(b"call1@test")
    stats["dialog"] = -1 if dialog is None else dialog.caller_cseq
    stats["pending"] = len(h.proxy.forwarder._pending)
    stats["in_flight"] = h.proxy.in_flight
    return records(h.sender.sent[start:]), stats


def both(
    tmp_path: Path, steps: list[Step], **kwargs: Any
) -> tuple[list[Record], list[Record], dict[str, int], dict[str, int]]:
    """The call and ``steps`` with the fast path, then with the routing step only: what
    each sent after the call was set up, and their counters."""
    found: dict[str, tuple[list[Record], dict[str, int]]] = {}

    async def fast(h: Harness) -> None:
        found["fast"] = await _scenario(h, steps)

    async def full(h: Harness) -> None:
        with mock.patch.object(service, "forward_in_dialog", lambda *_: False):
            found["full"] = await _scenario(h, steps)

    (tmp_path / "fast").mkdir()
    (tmp_path / "full").mkdir()
    media = kwargs.pop("media", None)
    run(tmp_path / "fast", fast, media=media() if media else None, **kwargs)
    run(tmp_path / "full", full, media=media() if media else None, **kwargs)
    (fast_out, fast_stats), (full_out, full_stats) = found["fast"], found["full"]
    return fast_out, full_out, fast_stats, full_stats


def feed(make: Callable[[Sent], bytes], source: tuple[str, int] = CALLER) -> Step:
    async def step(h: Harness, fwd: Sent) -> None:
        await h.feed(make(fwd), source)

    return step


async def callee_answers(h: Harness, fwd: Sent, status: int = 200) -> None:
    """The callee answers the last request sent to it."""
    last = [s for s in h.sender.sent if s.to(CALLEE)][-1]
    await h.feed(answer(last.data, status), CALLEE)


def test_a_bye_is_routed_at_once_and_the_call_goes_as_on_the_full_path(tmp_path: Path) -> None:
    fast, full, fs, us = both(tmp_path, [feed(bye_for), callee_answers])
    assert fast == full and len(fast) == 2
    bye = parse_datagram(fast[0][0])
    assert isinstance(bye, Request) and bye.method == b"BYE" and not bye.has(b"route")
    assert fast[0][1:] == ("192.0.2.50", 5060, True) and fast[1][1:3] == CALLER
    assert (fs["in_dialog_at_once"], us["in_dialog_at_once"]) == (1, 0)
    assert fs["raw_replies"] == us["raw_replies"]  # the 200 took quick.py both times
    for s in (fs, us):
        s.pop("in_dialog_at_once")
    assert fs == us and fs["dialog"] == -1 and fs["in_flight"] == 0


def test_retransmissions_timer_e_and_f_and_the_408_are_the_full_path_s(tmp_path: Path) -> None:
    async def retransmit(h: Harness, fwd: Sent) -> None:
        await h.feed(bye_for(fwd), CALLER)  # absorbed by the server transaction (TRYING)

    async def wait(h: Harness, fwd: Sent) -> None:
        await h.advance(40.0)

    fast, full, fs, us = both(tmp_path, [feed(bye_for), retransmit, wait, retransmit])
    assert fast == full
    downstream = [r for r in fast if r[1:3] == CALLEE]
    upstream = [parse_datagram(r[0]) for r in fast if r[1:3] == CALLER]
    assert len(downstream) == 11 and len({r[0] for r in downstream}) == 1  # Timer E, then F
    assert [getattr(m, "status", 0) for m in upstream] == [408, 408]  # and its resend
    assert fs["in_dialog_at_once"] == 1 and fs["dialog"] == us["dialog"] == -1


def test_a_retransmission_after_the_200_gets_the_200_again(tmp_path: Path) -> None:
    async def retransmit(h: Harness, fwd: Sent) -> None:
        out = await h.feed(bye_for(fwd), CALLER)
        assert statuses(out, CALLER) == [200] and not [s for s in out if s.to(CALLEE)]

    fast, full, fs, _ = both(tmp_path, [feed(bye_for), callee_answers, retransmit])
    assert fast == full and fs["in_dialog_at_once"] == 1


def test_the_call_log_ends_the_call_on_the_bye_s_200(tmp_path: Path) -> None:
    from rtc64.gateway.calllog import CallLog  # noqa: PLC0415

    async def body(h: Harness) -> None:
        h.proxy.calls.journal = log = CallLog(h.proxy.log, h.clock)
        fwd = await confirmed(h)
        assert [c.call_id for c in h.proxy.calls_in_progress()] == [b"call1@test"]
        with mock.patch.object(log, "ended", wraps=log.ended) as ended:
            out = await h.feed(bye_for(fwd), CALLER)
            assert h.proxy.stats.in_dialog_at_once == 1
            await answered(h, out)
        ended.assert_called_once_with(b"call1@test", "bye-caller", 200)
        assert h.proxy.calls_in_progress() == []

    run(tmp_path, body)


def test_a_callee_s_bye_and_other_methods_are_routed_at_once(tmp_path: Path) -> None:
    def callee_bye(fwd: Sent) -> bytes:
        back = b", ".join(fwd.request.values(b"record-route"))
        return (
            b"BYE sip:alice@[2001:db8:aaaa::10]:5062 SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 192.0.2.50:5060;branch=z9hG4bKcb;rport\r\n"
            b"Route: " + back + b"\r\nMax-Forwards: 70\r\n"
            b"From: <sip:bob@192.0.2.50>;tag=callee\r\nTo: <sip:alice@example.net>;tag=f1\r\n"
            b"Call-ID: call1@test\r\nCSeq: 7 BYE\r\nContent-Length: 0\r\n\r\n"
        )

    steps = [feed(lambda f: bye_for(f, method=b"INFO", branch=b"z9hG4bKi")), callee_answers,
             feed(lambda f: bye_for(f, method=b"OPTIONS", branch=b"z9hG4bKo", cseq=3)),
             callee_answers, feed(callee_bye, CALLEE)]  # fmt: skip
    fast, full, fs, us = both(tmp_path, steps)
    assert fast == full and fs["in_dialog_at_once"] == 3
    assert parse_datagram(fast[-1][0]).method == b"BYE" and fast[-1][1:3] == CALLER  # type: ignore[union-attr]
    assert fs["dialog"] == us["dialog"] == 3


def test_a_cseq_lower_than_the_dialog_s_goes_on_as_on_the_full_path(tmp_path: Path) -> None:
    """Like Kamailio, the proxy leaves CSeq order to the UAS (§12.2.2: 500): forwarded,
    the dialog keeps its highest CSeq."""
    steps = [feed(lambda f: bye_for(f, method=b"INFO", cseq=9, branch=b"z9hG4bKi")),
             callee_answers, feed(lambda f: bye_for(f, cseq=4))]  # fmt: skip
    fast, full, fs, _ = both(tmp_path, steps)
    assert fast == full and fs["in_dialog_at_once"] == 2 and fs["dialog"] == 9


def _forged(fwd: Sent) -> bytes:
    route = route_of(fwd)
    at = route.index(b";r64=") + 5 + route[route.index(b";r64=") + 5 :].index(b".") + 1
    flip = b"0" if route[at : at + 1] != b"0" else b"1"
    return route[:at] + flip + route[at + 1 :]


ATTACKS: dict[str, tuple[Callable[[Sent], bytes], tuple[str, int]]] = {
    "forged-token": (lambda f: bye_for(f, headers=(_forged(f),)), CALLER),
    "token-of-another-call": (lambda f: bye_for(f, call_id=b"other@test"), CALLER),
    "no-route": (lambda f: bye_for(f, headers=()), CALLER),
    "foreign-route-first": (
        lambda f: bye_for(f, headers=(b"Route: <sip:203.0.113.5;lr>, " + route_of(f)[7:],)),
        CALLER,
    ),
    "third-party-wrong-tag": (
        lambda f: bye_for(f, STRANGER).replace(b";tag=callee", b";tag=nope"),
        STRANGER,
    ),
    "third-party-route-after-ours": (
        lambda f: bye_for(f, STRANGER, headers=(route_of(f) + b", <sip:203.0.113.5;lr>",)),
        STRANGER,
    ),
    "third-party-other-target": (
        lambda f: bye_for(f, STRANGER).replace(b"sip:bob@192.0.2.50:5060", b"sip:x@203.0.113.5"),
        STRANGER,
    ),
    "no-such-dialog": (
        lambda f: bye_for(f, STRANGER).replace(b"call1@test", b"never@test"),
        STRANGER,
    ),
    "max-forwards-0": (lambda f: bye_for(f, max_forwards=0), CALLER),
    "proxy-require": (lambda f: bye_for(f, headers=(route_of(f), b"Proxy-Require: x")), CALLER),
    "strict-router-uri": (
        lambda f: bye_for(f).replace(b"BYE sip:bob@192.0.2.50:5060", b"BYE sip:[2001:db8::1]"),
        CALLER,
    ),
    "loop-via-of-ours": (
        lambda f: bye_for(f).replace(
            b"Max-Forwards",
            b"Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK-r64-x\r\nMax-Forwards",
        ),
        CALLER,
    ),
    "route-junk": (lambda f: bye_for(f, headers=(route_of(f) + b", junk",)), CALLER),
    "dns-next-hop": (
        lambda f: bye_for(f).replace(b"BYE sip:bob@192.0.2.50:5060", b"BYE sip:bob@example.org"),
        CALLER,
    ),
}  # fmt: skip


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_refusals_and_unusual_shapes_are_left_to_the_routing_step(
    tmp_path: Path, attack: str
) -> None:
    make, source = ATTACKS[attack]
    fast, full, fs, us = both(tmp_path, [feed(make, source)])
    assert fs["in_dialog_at_once"] == 0
    assert fast == full and fs == us
    if attack not in ("loop-via-of-ours", "dns-next-hop"):  # refused: nothing forwarded
        assert all(r[1:3] == source for r in fast) and len(fast) == 1
        assert fs["dialog"] == 1  # the dialog is untouched


def test_a_bye_for_an_ended_dialog_from_an_untrusted_source_is_refused(tmp_path: Path) -> None:
    async def again(h: Harness, fwd: Sent) -> None:
        out = await h.feed(bye_for(fwd, STRANGER, branch=b"z9hG4bKb2", cseq=3), STRANGER)
        assert statuses(out, STRANGER) == [403]

    fast, full, fs, _ = both(tmp_path, [feed(bye_for), callee_answers, again])
    assert fast == full and fs["in_dialog_at_once"] == 1 and fs["in_dialog_refused"] == 1


def test_an_untrusted_party_s_bye_is_routed_at_once(tmp_path: Path) -> None:
    fast, full, fs, _ = both(tmp_path, [feed(lambda f: bye_for(f, STRANGER), STRANGER),
                                        callee_answers])  # fmt: skip
    assert fast == full and fs["in_dialog_at_once"] == 1 and fs["dialog"] == -1


def test_the_media_bridge_frees_the_relay_on_a_bye_routed_at_once(tmp_path: Path) -> None:
    relay, bridge, _, _ = relay_bridge()

    async def body(h: Harness) -> None:
        out = await h.feed(with_sdp(invite(), media_sdp(CALLER[0], 4000)), CALLER)
        fwd = one(out, CALLEE)
        await h.feed(with_sdp(answer(fwd.data, 200), media_sdp(CALLEE[0], 5000)), CALLEE)
        await h.feed(ack_for(fwd), CALLER)
        assert bridge.active_calls() == 1
        out = await h.feed(bye_for(fwd), CALLER)
        assert one(out, CALLEE).request.method == b"BYE"
        assert h.proxy.stats.in_dialog_at_once == 1
        assert relay.calls() == [] and bridge.active_calls() == 0

    run(tmp_path, body, media=bridge)


def test_a_bye_with_a_body_and_the_bridge_on_goes_as_on_the_full_path(tmp_path: Path) -> None:
    def bridge() -> Any:
        return relay_bridge()[1]

    with_body = feed(lambda f: with_sdp(bye_for(f), media_sdp(CALLER[0], 4000)))
    fast, full, _, _ = both(tmp_path, [with_body, callee_answers], media=bridge)
    assert fast == full


def test_a_failure_after_the_bye_was_taken_is_answered_with_500(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(h: Harness) -> None:
        fwd = await confirmed(h)

        def broken(*_: object, **__: object) -> None:
            raise ValueError("boom")

        with mock.patch.object(h.proxy.forwarder, "launch", broken):
            out = await h.feed(bye_for(fwd), CALLER)
        assert statuses(out, CALLER) == [500] and "fast path failed" in caplog.text

    try:
        run(tmp_path, body)
    except (AttributeError, TypeError):  # a compiled Forwarder cannot be patched
        pytest.skip("Forwarder is compiled")


def test_a_failure_before_anything_changed_leaves_the_bye_to_the_routing_step(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: object) -> bool:
        raise ValueError("boom")

    async def body(h: Harness) -> None:
        fwd = await confirmed(h)
        with mock.patch.object(service, "forward_in_dialog", broken):
            out = await h.feed(bye_for(fwd), CALLER)
        assert len([s for s in out if s.to(CALLEE)]) == 1 and "fast path failed" in caplog.text

    run(tmp_path, body)


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


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_fast_and_full_paths_send_the_same_bytes(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """In-dialog requests of many shapes (method, header spellings and order, Route split
    over lines or not, another proxy's entry after ours, a Via below the caller's, rport
    or not, unknown headers, a body, credentials for another realm, trusted or not):
    whatever either path does with the request and the callee's answer, the other does
    the same, byte for byte."""
    draw = data.draw
    trusted = draw(st.booleans())
    source = CALLER if trusted else STRANGER
    method = draw(st.sampled_from([b"BYE", b"BYE", b"INFO", b"UPDATE", b"MESSAGE"]))
    beyond = draw(st.booleans()) and trusted
    split = draw(st.booleans())
    rport = draw(st.sampled_from([b";rport", b"", b";rport=5062"]))
    below = draw(st.sampled_from([b"", b"Via: SIP/2.0/UDP 198.51.100.3;branch=z9hG4bKp\r\n"]))
    spaces = draw(st.sampled_from([b" ", b"  ", b"\t"]))
    extra = draw(
        st.lists(
            st.sampled_from([b"User-Agent: x", b"X-A: 1, 2", b"Reason: Q.850;cause=16",
                             b'Proxy-Authorization: Digest username="a", realm="other"']),
            max_size=3,
        )
    )  # fmt: skip
    display = draw(st.sampled_from([b"", b'"A B" ', b"alice "]))
    mf = draw(st.integers(0, 255))
    status = draw(st.sampled_from([200, 481, 500]))
    body = draw(st.sampled_from([b"", b"hello"]))
    order = draw(st.permutations(list(range(7))))
    name = {n: draw(st.sampled_from(v)) for n, v in _NAMES.items()}

    def make(fwd: Sent) -> bytes:
        entries = list(reversed(fwd.request.values(b"record-route")))
        if beyond:
            entries.append(b"<sip:192.0.2.77;lr>")
        route_lines = (
            [b"%s:%s%s" % (name[b"Route"], spaces, e) for e in entries]
            if split
            else [b"Route:%s%s" % (spaces, b", ".join(entries))]
        )
        sent_by = b"[2001:db8:aaaa::10]:5062" if trusted else b"[2001:db8:bad::10]:5062"
        lines = [
            b"%s: SIP/2.0/UDP %s;branch=z9hG4bKbye%s" % (name[b"Via"], sent_by, rport),
            b"%s:%s%d" % (name[b"Max-Forwards"], spaces, mf),
            b"%s: %s<sip:alice@example.net>;tag=f1" % (name[b"From"], display),
            b"%s: <sip:bob@192.0.2.50>;tag=callee" % name[b"To"],
            b"%s: call1@test" % name[b"Call-ID"],
            b"%s: 2 %s" % (name[b"CSeq"], method),
            b"\r\n".join(route_lines),
        ]
        head = [lines[i] for i in order] + extra
        data = b"%s sip:bob@192.0.2.50:5060 SIP/2.0\r\n" % method + b"\r\n".join(head) + b"\r\n"
        data = data.replace(b"\r\n" + name[b"Via"], b"\r\n" + below + name[b"Via"], 1)
        return data + b"%s: %d\r\n\r\n%s" % (name[b"Content-Length"], len(body), body)

    async def callee(h: Harness, fwd: Sent) -> None:
        last = [s for s in h.sender.sent if s.to(CALLEE)][-1]
        if last.request.method != b"INVITE":
            await h.feed(answer(last.data, status), CALLEE)

    path = tmp_path_factory.mktemp("fast")
    fast, full, fs, us = both(path, [feed(make, source), callee])
    assert fast == full
    taken = fs.pop("in_dialog_at_once")
    us.pop("in_dialog_at_once")
    assert fs == us
    assert taken == (mf > 0)  # every other shape drawn here passes the full path's checks
