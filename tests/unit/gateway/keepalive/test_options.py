"""Stateless OPTIONS: the request we build parses, and only our own answers match."""

from __future__ import annotations

import pytest

from rtc64.gateway.keepalive.options import (
    BRANCH_MARK,
    build_options,
    fast_reply,
    is_ours,
    reply_token,
)
from rtc64.net.endpoint import Transport
from rtc64.sip.framing import parse_datagram as parse_message
from rtc64.sip.message import Request, Response
from rtc64.sip.uri import SipUri


def answer(token: bytes, *, call_id: bytes | None = None, method: bytes = b"OPTIONS") -> bytes:
    return (
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=" + BRANCH_MARK + token + b";rport=5060\r\n"
        b"From: <sip:keepalive@[2001:db8::1]>;tag=" + token[:16] + b"\r\n"
        b"To: <sip:alice@[2001:db8::10]:5070>;tag=phone\r\n"
        b"Call-ID: " + (token if call_id is None else call_id) + b"\r\n"
        b"CSeq: 1 " + method + b"\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_the_request_parses_and_names_the_contact() -> None:
    data = build_options(
        b"sip:alice@[2001:db8::10]:5070;transport=udp?Subject=x",
        Transport.UDP,
        "[2001:db8::1]:5060",
        b"0123456789abcdef0123",
    )
    msg = parse_message(data)
    assert isinstance(msg, Request) and msg.method == b"OPTIONS"
    assert isinstance(msg.uri, SipUri) and msg.uri.headers == ()
    assert b"?" not in data.split(b"\r\n", 1)[0]
    via = msg.vias[0]
    assert via.branch == BRANCH_MARK + b"0123456789abcdef0123"
    assert via.transport == b"UDP" and via.has_rport
    assert msg.call_id == b"0123456789abcdef0123"
    assert msg.cseq.method == b"OPTIONS" and msg.max_forwards == 70
    assert msg.from_.param(b"tag") == b"0123456789abcdef"


@pytest.mark.parametrize("transport", [Transport.TCP, Transport.TLS, Transport.WS, Transport.WSS])
def test_stream_requests_name_their_transport(transport: Transport) -> None:
    msg = parse_message(build_options(b"sip:a@10.0.0.1:5070", transport, "10.0.0.2:5060", b"t1"))
    assert isinstance(msg, Request) and msg.vias[0].transport == transport.via_token.encode()


def test_our_answers_match_their_token() -> None:
    msg = parse_message(answer(b"abc123"))
    assert isinstance(msg, Response)
    assert is_ours(msg) and reply_token(msg) == b"abc123"


@pytest.mark.parametrize(
    "data",
    [
        answer(b"abc123", call_id=b"other"),  # Call-ID not the token
        answer(b"abc123", method=b"INVITE"),  # not an OPTIONS answer
        answer(b"x" * 65, call_id=b"x" * 65),  # over-long token
    ],
)
def test_forged_answers_with_our_mark_are_ours_but_match_nothing(data: bytes) -> None:
    msg = parse_message(data)
    assert is_ours(msg) and reply_token(msg) is None


def test_other_responses_are_not_ours() -> None:
    data = answer(b"abc").replace(BRANCH_MARK, b"z9hG4bK-proxy-")
    msg = parse_message(data)
    assert not is_ours(msg) and reply_token(msg) is None
    req = parse_message(build_options(b"sip:a@10.0.0.1", Transport.UDP, "10.0.0.2:5060", b"t"))
    assert not is_ours(req) and reply_token(req) is None  # a request is never an answer


def test_the_fast_path_reads_our_answers_like_the_parser() -> None:
    data = answer(b"abc123")
    assert fast_reply(data) == (b"abc123", 200)
    compact = (
        data.replace(b"\r\nVia:", b"\r\nv :")
        .replace(b"Call-ID:", b"i:")
        .replace(b"CSeq: 1 OPTIONS", b"cseq:  7   OPTIONS")
    )
    assert fast_reply(compact) == (b"abc123", 200)
    msg = parse_message(compact)
    assert reply_token(msg) == b"abc123"
    assert fast_reply(data.replace(b"200 OK", b"486 Busy Here")) == (b"abc123", 486)


@pytest.mark.parametrize(
    "data",
    [
        answer(b"abc123", call_id=b"other"),
        answer(b"abc123", method=b"INVITE"),
        answer(b"abc123").replace(
            b"Via: SIP/2.0/UDP", b"Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-top,\r\n SIP/2.0/UDP", 1
        ),  # folded: full parse
        answer(b"abc123").replace(
            b"\r\nVia:", b"\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-top\r\nVia:", 1
        ),  # ours is not the top Via
        answer(b"abc123").replace(
            b"\r\nVia: SIP/2.0/UDP", b"\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=x, SIP/2.0/UDP", 1
        ),
        answer(b"abc123").replace(b"Call-ID: abc123", b"Call-ID: abc123\r\n more"),
        answer(b"abc123").replace(b"\r\n\r\n", b"\r\n"),  # no end of headers
        b"SIP/2.0 999 Nope\r\n" + answer(b"abc123").split(b"\r\n", 1)[1],
        b"OPTIONS sip:x SIP/2.0\r\n" + answer(b"abc123").split(b"\r\n", 1)[1],
        answer(b"abc123").replace(b"branch=z9hG4bK.r64ka.abc123", b"branch=z9hG4bK.r64ka.abc123-x"),
    ],
)
def test_the_fast_path_leaves_anything_unusual_to_the_parser(data: bytes) -> None:
    assert fast_reply(data) is None
