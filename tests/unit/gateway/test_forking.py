"""Best final response of a forked request (RFC 3261 §16.7 steps 6-7)."""

from __future__ import annotations

import pytest

from rtc64.gateway.proxy.forking import (
    Branch,
    BranchState,
    ResponseContext,
    best_response,
    challenges,
    choose_best,
)
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request, Response

REQUEST = (
    b"INVITE sip:bob@example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP [2001:db8::10]:5062;branch=z9hG4bKc1;rport=5062\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:a@example.net>;tag=f\r\nTo: <sip:bob@example.net>\r\n"
    b"Call-ID: c@x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)


def request() -> Request:
    msg = parse_datagram(REQUEST)
    assert isinstance(msg, Request)
    return msg


def response(status: int, *extra: bytes) -> Response:
    data = (
        b"SIP/2.0 %d Reason %d\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-r64-x-1\r\n"
        b"Via: SIP/2.0/UDP [2001:db8::10]:5062;branch=z9hG4bKc1;rport=5062\r\n"
        b"From: <sip:a@example.net>;tag=f\r\nTo: <sip:bob@example.net>;tag=t%d\r\n"
        b"Call-ID: c@x\r\nCSeq: 1 INVITE\r\n"
        % (status, status, status)
        + b"".join(e + b"\r\n" for e in extra)
        + b"Content-Length: 0\r\n\r\n"
    )
    msg = parse_datagram(data)
    assert isinstance(msg, Response)
    return msg


def finals(*statuses: int) -> list[tuple[int, Response | None]]:
    return [(s, response(s)) for s in statuses]


@pytest.mark.parametrize(
    ("statuses", "best"),
    [
        ((486, 404), 486),  # same rank in 4xx: the first
        ((404, 486), 404),
        ((404, 302), 302),  # lowest class
        ((500, 404), 404),
        ((503, 600), 600),  # any 6xx wins
        ((404, 603, 302), 603),
        ((404, 401), 401),  # challenges before other 4xx
        ((404, 407), 407),
        ((407, 401), 401),
        ((404, 415), 415),
        ((404, 420), 420),
        ((404, 484), 484),
        ((484, 415), 415),
        ((420, 407), 407),
        ((500, 503), 500),
    ],
)
def test_choose_best(statuses: tuple[int, ...], best: int) -> None:
    status, resp = choose_best(finals(*statuses))
    assert status == best
    assert resp is not None and resp.status == best


def test_choose_best_without_responses() -> None:
    assert choose_best([]) == (408, None)
    assert choose_best([(408, None), (404, response(404))]) == (408, None)  # the first 4xx
    assert choose_best([(408, None), (484, response(484))])[0] == 484
    assert choose_best([(503, None), (408, None)]) == (408, None)


def context(*items: tuple[int, Response | None, bytes]) -> ResponseContext:
    ctx = ResponseContext(b"INVITE")
    for i, (status, resp, reason) in enumerate(items):
        b = Branch(i, target=f"t{i}", state=BranchState.COMPLETED, final=resp)
        b.final_status, b.reason = status, reason
        ctx.branches.append(b)
    return ctx


def test_best_response_strips_our_via() -> None:
    status, data = best_response(context((486, response(486), b"")), request())
    resp = parse_datagram(data)
    assert isinstance(resp, Response)
    assert status == resp.status == 486
    assert [v.branch for v in resp.vias] == [b"z9hG4bKc1"]


def test_challenges_merged_into_the_401() -> None:
    www = b'WWW-Authenticate: Digest realm="a", nonce="1"'
    proxy1 = b'Proxy-Authenticate: Digest realm="b", nonce="2"'
    proxy2 = b'Proxy-Authenticate: Digest realm="c", nonce="3"'
    ctx = context(
        (407, response(407, proxy1), b""),
        (401, response(401, www), b""),
        (407, response(407, proxy2, proxy1), b""),
        (404, response(404), b""),
    )
    status, data = best_response(ctx, request())
    resp = parse_datagram(data)
    assert status == resp.status == 401
    assert resp.get_all(b"www-authenticate") == (b'Digest realm="a", nonce="1"',)
    # Every other challenge once (duplicates of one already present are not repeated).
    assert sorted(resp.get_all(b"proxy-authenticate")) == [
        b'Digest realm="b", nonce="2"',
        b'Digest realm="c", nonce="3"',
    ]
    assert len(challenges(ctx_finals(ctx))) == 4


def ctx_finals(ctx: ResponseContext) -> list[tuple[int, Response | None]]:
    return [(b.final_status, b.final) for b in ctx.branches]


def test_503_goes_up_as_500() -> None:
    status, data = best_response(context((503, response(503), b"")), request())
    assert status == 500
    assert data.startswith(b"SIP/2.0 500 Server Internal Error\r\n")
    resp = parse_datagram(data)
    assert isinstance(resp, Response) and len(resp.vias) == 1


def test_synthesised_responses() -> None:
    status, data = best_response(context((408, None, b"Request Timeout")), request())
    assert status == 408
    resp = parse_datagram(data)
    assert isinstance(resp, Response)
    assert resp.reason == b"Request Timeout"
    assert resp.to.tag is not None
    # Our own diagnosis keeps its status and reason, with Retry-After for a 503.
    status, data = best_response(context((503, None, b"no listener")), request())
    assert status == 503
    assert data.startswith(b"SIP/2.0 503 no listener\r\n")
    own = parse_datagram(data)
    assert isinstance(own, Response)
    assert own.get(b"retry-after") == b"5"
    status, data = best_response(ResponseContext(b"INVITE"), request())
    assert status == 408


def test_context_state() -> None:
    ctx = ResponseContext(b"INVITE")
    a, b = Branch(0, "a"), Branch(1, "b", state=BranchState.PROCEEDING)
    ctx.branches += [a, b]
    assert ctx.pending() == [a, b] and not ctx.all_completed()
    a.state = BranchState.COMPLETED
    assert ctx.pending() == [b]
    b.state = BranchState.COMPLETED
    assert ctx.pending() == [] and ctx.all_completed()
