"""SIP probe decisions on recorded answers: framing, references, per-family verdicts."""

from __future__ import annotations

import random
from ipaddress import ip_address

import pytest

from rtc64.probe import sipcheck
from rtc64.probe.sipcheck import Attempt, read_answer
from rtc64.probe.verdict import Status
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request

GOOD_V6 = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP [2001:db8::9]:5062;branch=z9hG4bKabc;rport=5062;received=2001:db8::9\r\n"
    b"From: <sip:probe@[2001:db8::9]>;tag=1\r\nTo: <sip:example.net>;tag=2\r\n"
    b"Call-ID: c1\r\nCSeq: 1 OPTIONS\r\n"
    b"Contact: <sip:[2001:db8::1]:5060;transport=udp>\r\n"
    b"Record-Route: <sip:[2001:db8::1];lr>\r\n"
    b"Allow: INVITE, ACK, OPTIONS, BYE\r\nSupported: path\r\nServer: kamailio (5.6)\r\n"
    b"Content-Length: 0\r\n\r\n"
)
# Kamailio's $Ri written without brackets, and an IPv4 Record-Route, in an IPv6 answer.
BAD_V6 = GOOD_V6.replace(b"<sip:[2001:db8::1]:5060;", b"<sip:2001:db8::1:5060;").replace(
    b"<sip:[2001:db8::1];lr>", b"<sip:192.0.2.7;lr>"
)
V4_ANSWER = GOOD_V6.replace(b"[2001:db8::1]", b"192.0.2.1").replace(b"Allow: INVITE, ", b"Allow: ")


def attempt(raw: bytes, family: int = 6, *, error: str = "", host: str = "pbx") -> Attempt:
    address = ip_address("2001:db8::1" if family == 6 else "192.0.2.1")
    answer = read_answer(raw) if raw else None
    return Attempt(host, address, 5060, "udp", raw, 0.01, error, error, answer=answer)


def test_the_options_request_parses_and_brackets_ipv6() -> None:
    raw = sipcheck.options_request("sip:example.net", "tcp", (ip_address("2001:db8::9"), 5062))
    msg = parse_datagram(raw)
    assert isinstance(msg, Request)
    assert msg.method == b"OPTIONS"
    assert b"Via: SIP/2.0/TCP [2001:db8::9]:5062;branch=z9hG4bK" in raw
    assert b"<sip:probe@[2001:db8::9]:5062;transport=tcp>" in raw


def test_only_final_responses_end_the_wait() -> None:
    assert sipcheck.is_final_response(GOOD_V6)
    assert not sipcheck.is_final_response(b"SIP/2.0 100 Trying\r\n\r\n")
    assert not sipcheck.is_final_response(b"OPTIONS sip:x SIP/2.0\r\n\r\n")


def test_stream_framing_waits_for_the_body() -> None:
    msg = GOOD_V6.replace(b"Content-Length: 0", b"Content-Length: 4") + b"abcd"
    assert sipcheck.frame_length(msg[:-1]) is None
    assert sipcheck.frame_length(msg + b"SIP/2.0") == len(msg)
    assert sipcheck.frame_length(b"SIP/2.0 200 OK\r\n") is None


def test_references_find_unbracketed_ipv6_and_ipv4_literals() -> None:
    good = sipcheck.references(GOOD_V6)
    assert good.unbracketed == () and good.ipv4 == ()
    bad = sipcheck.references(BAD_V6)
    assert bad.unbracketed == ("Contact: 2001:db8::1:5060",)
    assert bad.ipv4 == ("Record-Route: 192.0.2.7",)


def test_an_unparseable_answer_is_still_judged() -> None:
    answer = read_answer(BAD_V6)
    assert answer.status == 200
    check = sipcheck.references_check(6, [attempt(BAD_V6)])
    assert check is not None
    assert check.status is Status.FAIL
    assert check.reason == "sip.ipv6-unbracketed"


def test_an_ipv4_record_route_over_ipv6_is_an_ipv4_literal_finding() -> None:
    raw = GOOD_V6.replace(b"<sip:[2001:db8::1];lr>", b"<sip:192.0.2.7;lr>")
    check = sipcheck.references_check(6, [attempt(raw)])
    assert check is not None
    assert (check.status, check.reason, check.ipv4_literal) == (
        Status.FAIL,
        "sip.ipv4-in-ipv6-answer",
        True,
    )
    # Over IPv4 the same literal is normal.
    v4 = sipcheck.references_check(4, [attempt(raw, 4)])
    assert v4 is not None and v4.status is Status.PASS


def test_options_verdict_pass_warn_fail() -> None:
    ok = sipcheck.options_check("udp", 6, [attempt(GOOD_V6)])
    assert (ok.status, ok.reason, ok.reach) == (Status.PASS, "sip.answered", True)
    some = sipcheck.options_check("udp", 6, [attempt(GOOD_V6), attempt(b"", error="net.timeout")])
    assert (some.status, some.reason) == (Status.WARN, "sip.srv-target-broken")
    none = sipcheck.options_check("udp", 6, [attempt(b"", error="net.refused")])
    assert (none.status, none.reason) == (Status.FAIL, "net.refused")


def test_parity_compares_status_and_capabilities() -> None:
    same = sipcheck.parity_check("udp", [attempt(GOOD_V6, 4)], [attempt(GOOD_V6)])
    assert same is not None and same.status is Status.PASS
    differ = sipcheck.parity_check("udp", [attempt(V4_ANSWER, 4)], [attempt(GOOD_V6)])
    assert differ is not None and differ.reason == "sip.parity-headers"
    status = sipcheck.parity_check(
        "udp", [attempt(GOOD_V6.replace(b"200 OK", b"404 Not Found"), 4)], [attempt(GOOD_V6)]
    )
    assert status is not None and status.reason == "sip.parity-status"
    assert sipcheck.parity_check("udp", [], [attempt(GOOD_V6)]) is None


def test_tls_verdict_names_the_certificate_problem() -> None:
    a = Attempt(
        "pbx",
        ip_address("2001:db8::1"),
        5061,
        "tls",
        GOOD_V6,
        0.1,
        tls_error=("tls.untrusted", "self-signed certificate"),
        answer=read_answer(GOOD_V6),
    )
    check = sipcheck.tls_check(6, [a])
    assert check is not None and (check.status, check.reason) == (Status.FAIL, "tls.untrusted")


@pytest.mark.parametrize("seed", range(20))
def test_hostile_answers_never_raise(seed: int) -> None:
    rng = random.Random(seed)
    data = bytearray(BAD_V6)
    for _ in range(rng.randint(1, 40)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    cut = bytes(data[: rng.randint(0, len(data))])
    for raw in (bytes(data), cut, rng.randbytes(rng.randint(0, 300))):
        read_answer(raw)
        sipcheck.references(raw)
        sipcheck.frame_length(raw)
        sipcheck.references_check(6, [attempt(raw)])
