"""TURN probe decisions on recorded answers built with the stun codec."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from ipaddress import ip_address

import pytest

from rtc64.net.address import Family
from rtc64.probe import turncheck as tc
from rtc64.probe.verdict import Status
from rtc64.stun.attributes import (
    ADDRESS_ERROR_CODE,
    NONCE,
    REALM,
    REQUESTED_ADDRESS_FAMILY,
    XOR_MAPPED_ADDRESS,
    XOR_RELAYED_ADDRESS,
)
from rtc64.stun.message import Class, Method, build, check_integrity, decode, encode

TID = b"123456789012"


def answer(cls: Class, *fields: object, method: int = Method.ALLOCATE) -> tc.StunAnswer:
    return tc.read_answer(encode(build(method, cls, TID, *fields)))  # type: ignore[arg-type]


def error(code: int, reason: str, *fields: object) -> tc.StunAnswer:
    from rtc64.stun.attributes import ERROR_CODE  # noqa: PLC0415

    return answer(Class.ERROR, ERROR_CODE((code, reason)), *fields)


@pytest.mark.parametrize(
    ("text", "host", "port", "transports"),
    [
        ("turn:turn.example.net", "turn.example.net", 3478, ("udp", "tcp")),
        ("turn:turn.example.net:3479?transport=tcp", "turn.example.net", 3479, ("tcp",)),
        ("turns:turn.example.net", "turn.example.net", 5349, ("tls",)),
        ("stun:[2001:db8::1]:3478", "2001:db8::1", 3478, ("udp", "tcp")),
    ],
)
def test_turn_uris(text: str, host: str, port: int, transports: tuple[str, ...]) -> None:
    uri = tc.parse_turn_uri(text)
    assert (uri.host, uri.port, uri.transports) == (host, port, transports)


@pytest.mark.parametrize("text", ["http://x", "turn:", "turn:x?transport=sctp", "turn:a b"])
def test_bad_turn_uris_name_the_problem(text: str) -> None:
    with pytest.raises(tc.TargetError):
        tc.parse_turn_uri(text)


def test_rest_credentials_follow_the_turn_rest_draft() -> None:
    creds = tc.Credentials.rest("s3cret", "alice", now=1000.0, ttl=600)
    assert creds.username == "1600:alice"
    mac = hmac.new(b"s3cret", b"1600:alice", hashlib.sha1).digest()
    assert creds.password == base64.b64encode(mac).decode()


def test_authenticated_allocate_carries_family_and_integrity() -> None:
    auth = tc.Auth(tc.Credentials("u", "p"), "example.net", "n0nce")
    msg = decode(tc.allocate_request(6, auth=auth))
    assert msg.get(REQUESTED_ADDRESS_FAMILY) is Family.INET6
    assert check_integrity(msg, auth.key)


def test_binding_and_reachability_verdicts() -> None:
    mapped = answer(
        Class.SUCCESS, XOR_MAPPED_ADDRESS((ip_address("2001:db8::9"), 4000)), method=Method.BINDING
    )
    check = tc.binding_check("udp", 6, mapped, 0.05)
    assert (check.status, check.reason, check.reach) == (Status.PASS, "stun.mapped", True)
    assert tc.binding_check("udp", 6, None, 3.0, "net.timeout").status is Status.FAIL
    challenge = error(401, "Unauthorized", REALM("example.net"), NONCE("abc"))
    reach = tc.reachability_check("udp", 6, challenge, 0.1)
    assert (reach.status, reach.reason) == (Status.PASS, "turn.auth-required")


def test_slow_answers_are_graded() -> None:
    assert tc.grade(0.5) is Status.PASS
    assert tc.grade(3.0) is Status.WARN
    assert tc.grade(4.5) is Status.FAIL
    challenge = error(401, "Unauthorized", REALM("r"), NONCE("n"))
    assert tc.reachability_check("udp", 6, challenge, 4.5).reason == "turn.slow"


def test_an_ipv4_only_relay_gives_the_family_finding() -> None:
    refused = error(440, "Address Family not Supported")
    check = tc.relay_check("udp", 6, refused, 0.1, authenticated=True)
    assert (check.status, check.reason, check.family) == (Status.FAIL, "turn.relay-no-ipv6", 6)
    # A server that ignores the attribute and relays IPv4 anyway is no better.
    v4 = answer(Class.SUCCESS, XOR_RELAYED_ADDRESS((ip_address("192.0.2.5"), 50000)))
    assert tc.relay_check("udp", 6, v4, 0.1, authenticated=True).reason == "turn.relay-no-ipv6"
    assert tc.relay_check("udp", 4, v4, 0.1, authenticated=True).status is Status.PASS


def test_without_credentials_relay_checks_are_skipped_not_failed() -> None:
    challenge = error(401, "Unauthorized", REALM("r"), NONCE("n"))
    check = tc.relay_check("udp", 6, challenge, 0.1, authenticated=False)
    assert (check.status, check.reason) == (Status.SKIPPED, "turn.no-credentials")
    bad_auth = tc.relay_check("udp", 6, challenge, 0.1, authenticated=True)
    assert bad_auth.reason == "turn.auth-failed"


def test_dual_allocation_verdicts() -> None:
    both = answer(
        Class.SUCCESS,
        XOR_RELAYED_ADDRESS((ip_address("192.0.2.5"), 50000)),
        XOR_RELAYED_ADDRESS((ip_address("2001:db8::5"), 50002)),
    )
    assert tc.dual_check("udp", both, 0.1, authenticated=True).status is Status.PASS
    one = answer(
        Class.SUCCESS,
        XOR_RELAYED_ADDRESS((ip_address("192.0.2.5"), 50000)),
        ADDRESS_ERROR_CODE((Family.INET6, 440, "Address Family not Supported")),
    )
    check = tc.dual_check("udp", one, 0.1, authenticated=True)
    assert (check.status, check.reason) == (Status.WARN, "turn.no-dual-allocation")
    assert one.address_error == (6, 440, "Address Family not Supported")


@pytest.mark.parametrize("seed", range(20))
def test_hostile_answers_never_raise(seed: int) -> None:
    rng = random.Random(seed)
    raw = bytearray(
        encode(
            build(
                Method.ALLOCATE,
                Class.SUCCESS,
                TID,
                XOR_RELAYED_ADDRESS((ip_address("2001:db8::5"), 5)),
            )
        )
    )
    for _ in range(rng.randint(1, 10)):
        raw[rng.randrange(len(raw))] = rng.randrange(256)
    for data in (bytes(raw), bytes(raw[: rng.randint(0, len(raw))]), rng.randbytes(64)):
        got = tc.read_answer(data)
        tc.relay_check("udp", 6, got, 0.1, authenticated=True)
        tc.dual_check("udp", got, 0.1, authenticated=True)
        with pytest.raises(ValueError):
            tc.stream_frame_length(b"\xff" * 20)
