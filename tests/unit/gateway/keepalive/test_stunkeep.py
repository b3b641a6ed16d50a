"""STUN Binding keep-alives on the SIP ports (RFC 5626 §4.4.2): answers and drops."""

from __future__ import annotations

import os
import struct
from ipaddress import ip_address

import pytest

from rtc64.gateway.keepalive.stunkeep import answer
from rtc64.stun.attributes import (
    ERROR_CODE,
    FINGERPRINT,
    SOFTWARE,
    UNKNOWN_ATTRIBUTES,
    XOR_MAPPED_ADDRESS,
)
from rtc64.stun.message import Class, Method, build, check_fingerprint, decode, encode

SOURCES = [(ip_address("2001:db8::10"), 5070), (ip_address("192.0.2.7"), 40000)]


def request(*fields: object, fingerprint: bool = False, tid: bytes | None = None) -> bytes:
    msg = build(Method.BINDING, Class.REQUEST, tid or os.urandom(12), *fields)  # type: ignore[arg-type]
    return encode(msg, fingerprint=fingerprint)


@pytest.mark.parametrize("source", SOURCES)
def test_binding_request_gets_the_mapped_address(source: tuple[object, int]) -> None:
    tid = os.urandom(12)
    reply = answer(request(tid=tid), source)  # type: ignore[arg-type]
    assert reply is not None
    msg = decode(reply)
    assert msg.cls is Class.SUCCESS and msg.method == Method.BINDING
    assert msg.transaction_id == tid
    assert msg.get(XOR_MAPPED_ADDRESS) == source
    assert not msg.has(FINGERPRINT)
    assert len(reply) <= 44


def test_a_fingerprint_is_answered_with_one() -> None:
    reply = answer(request(SOFTWARE("phone 1.0"), fingerprint=True), SOURCES[0])
    assert reply is not None
    msg = decode(reply)
    assert msg.has(FINGERPRINT) and check_fingerprint(msg)


def test_a_bad_fingerprint_is_dropped() -> None:
    data = bytearray(request(fingerprint=True))
    data[-1] ^= 0xFF
    assert answer(bytes(data), SOURCES[0]) is None


def test_unknown_required_attributes_get_420() -> None:
    data = request((0x7F01, b"abcd"), (0x7F02, b""), (0x7F01, b"efgh"))
    reply = answer(data, SOURCES[1])
    assert reply is not None
    msg = decode(reply)
    assert msg.cls is Class.ERROR
    assert msg.get(ERROR_CODE) == (420, msg.get(ERROR_CODE)[1])  # type: ignore[index]
    assert msg.get(UNKNOWN_ATTRIBUTES) == (0x7F01, 0x7F02)
    assert not msg.has(XOR_MAPPED_ADDRESS)


def test_the_answer_to_a_flood_of_attributes_is_no_larger_than_the_request() -> None:
    data = request(*[(0x7000 + n, b"") for n in range(60)])
    reply = answer(data, SOURCES[0])
    assert reply is not None and len(reply) <= len(data)


@pytest.mark.parametrize(
    "data",
    [
        encode(build(Method.BINDING, Class.INDICATION, os.urandom(12))),  # keep-alive
        encode(build(Method.BINDING, Class.SUCCESS, os.urandom(12))),  # a response
        encode(build(Method.ALLOCATE, Class.REQUEST, os.urandom(12))),  # not here
        request()[:-1] + b"",  # truncated header only... 19 bytes
        struct.pack("!HHI12s", 0x0001, 8, 0x2112A442, os.urandom(12)),  # length lies
        struct.pack("!HHI12s", 0x0001, 4, 0x2112A442, os.urandom(12)) + b"\x00\x20\x00\x08",
    ],
)
def test_everything_else_is_dropped(data: bytes) -> None:
    assert answer(data, SOURCES[0]) is None
