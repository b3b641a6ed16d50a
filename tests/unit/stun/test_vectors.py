"""RFC 5769 test vectors: integrity, fingerprint and decoded values; byte-exact re-encoding."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from rtc64.stun import StunError
from rtc64.stun import attributes as a
from rtc64.stun.integrity import PasswordAlgorithm, long_term_key, short_term_key, userhash
from rtc64.stun.message import (
    Class,
    Method,
    build,
    check_fingerprint,
    check_integrity,
    decode,
    encode,
    integrity_kind,
)
from tests.unit.stun import vectors as v


def test_sample_request() -> None:
    msg = decode(v.SAMPLE_REQUEST)
    assert (msg.method, msg.cls) == (Method.BINDING, Class.REQUEST)
    assert msg.transaction_id == v.TRANSACTION_ID
    assert msg.get(a.SOFTWARE) == "STUN test client"
    assert msg.get(a.PRIORITY) == 0x6E0001FF
    assert msg.get(a.ICE_CONTROLLED) == 0x932FF9B151263B36
    assert msg.get(a.USERNAME) == "evtj:h6vY"
    assert msg.unknown_required() == ()
    assert check_integrity(msg, short_term_key(v.PASSWORD))
    assert not check_integrity(msg, short_term_key(v.PASSWORD + "x"))
    assert check_fingerprint(msg)


@pytest.mark.parametrize(
    ("data", "mapped"),
    [
        (v.SAMPLE_IPV4_RESPONSE, (ip_address("192.0.2.1"), 32853)),
        (v.SAMPLE_IPV6_RESPONSE, (ip_address("2001:db8:1234:5678:11:2233:4455:6677"), 32853)),
    ],
)
def test_sample_responses(data: bytes, mapped: object) -> None:
    msg = decode(data)
    assert (msg.method, msg.cls) == (Method.BINDING, Class.SUCCESS)
    assert msg.transaction_id == v.TRANSACTION_ID
    assert msg.get(a.SOFTWARE) == "test vector"
    assert msg.get(a.XOR_MAPPED_ADDRESS) == mapped
    assert check_integrity(msg, short_term_key(v.PASSWORD))
    assert check_fingerprint(msg)


def test_long_term_request() -> None:
    msg = decode(v.LONG_TERM_REQUEST)
    assert (msg.method, msg.cls) == (Method.BINDING, Class.REQUEST)
    assert msg.get(a.USERNAME) == v.LONG_TERM_USERNAME
    assert msg.get(a.NONCE) == v.LONG_TERM_NONCE
    assert msg.get(a.REALM) == v.LONG_TERM_REALM
    key = long_term_key(v.LONG_TERM_USERNAME, v.LONG_TERM_REALM, v.LONG_TERM_PASSWORD)
    assert check_integrity(msg, key)
    # The password before SASLprep is not normalised here (out of scope): it does not match.
    raw_password = "The\u00adM\u00aatr\u2168"
    assert not check_integrity(
        msg, long_term_key(v.LONG_TERM_USERNAME, "example.org", raw_password)
    )
    assert not check_fingerprint(msg)  # the vector has no FINGERPRINT


def test_sample_request_reencodes_byte_exact() -> None:
    msg = build(
        Method.BINDING,
        Class.REQUEST,
        v.TRANSACTION_ID,
        a.SOFTWARE("STUN test client"),
        a.PRIORITY(0x6E0001FF),
        a.ICE_CONTROLLED(0x932FF9B151263B36),
        a.USERNAME("evtj:h6vY"),
    )
    wire = encode(msg, key=short_term_key(v.PASSWORD), fingerprint=True, pad=b" ")
    assert wire == v.SAMPLE_REQUEST


@pytest.mark.parametrize("data", [v.SAMPLE_IPV4_RESPONSE, v.SAMPLE_IPV6_RESPONSE])
def test_sample_responses_reencode_byte_exact(data: bytes) -> None:
    mapped = decode(data).get(a.XOR_MAPPED_ADDRESS)
    assert mapped is not None
    msg = build(
        Method.BINDING,
        Class.SUCCESS,
        v.TRANSACTION_ID,
        a.SOFTWARE("test vector"),
        a.XOR_MAPPED_ADDRESS(mapped),
    )
    assert encode(msg, key=short_term_key(v.PASSWORD), fingerprint=True, pad=b" ") == data


def test_long_term_request_reencodes_byte_exact() -> None:
    msg = build(
        Method.BINDING,
        Class.REQUEST,
        v.LONG_TERM_TRANSACTION_ID,
        a.USERNAME(v.LONG_TERM_USERNAME),
        a.NONCE(v.LONG_TERM_NONCE),
        a.REALM(v.LONG_TERM_REALM),
    )
    key = long_term_key(v.LONG_TERM_USERNAME, v.LONG_TERM_REALM, v.LONG_TERM_PASSWORD)
    assert encode(msg, key=key) == v.LONG_TERM_REQUEST


def _key(data: bytes) -> bytes:
    user, realm, password = v.LONG_TERM_USERNAME, v.LONG_TERM_REALM, v.LONG_TERM_PASSWORD
    if data is v.LONG_TERM_REQUEST:
        return long_term_key(user, realm, password)
    if data is v.SHA256_REQUEST:
        return long_term_key(user, realm, password, PasswordAlgorithm.SHA256)
    return short_term_key(v.PASSWORD)


def test_sha256_request() -> None:
    msg = decode(v.SHA256_REQUEST)
    assert (msg.method, msg.cls) == (Method.BINDING, Class.REQUEST)
    assert msg.transaction_id == v.LONG_TERM_TRANSACTION_ID
    assert msg.get(a.USERHASH) == userhash(v.LONG_TERM_USERNAME, v.LONG_TERM_REALM)
    assert not msg.has(a.USERNAME)
    assert msg.get(a.NONCE) == v.SHA256_NONCE
    assert msg.get(a.REALM) == v.LONG_TERM_REALM
    assert msg.get(a.PASSWORD_ALGORITHM) == (PasswordAlgorithm.SHA256, b"")
    assert integrity_kind(msg) is a.MESSAGE_INTEGRITY_SHA256
    assert check_integrity(msg, _key(v.SHA256_REQUEST))
    md5 = long_term_key(v.LONG_TERM_USERNAME, v.LONG_TERM_REALM, v.LONG_TERM_PASSWORD)
    assert not check_integrity(msg, md5)


def test_sha256_request_reencodes_byte_exact() -> None:
    msg = build(
        Method.BINDING,
        Class.REQUEST,
        v.LONG_TERM_TRANSACTION_ID,
        a.USERHASH(userhash(v.LONG_TERM_USERNAME, v.LONG_TERM_REALM)),
        a.NONCE(v.SHA256_NONCE),
        a.REALM(v.LONG_TERM_REALM),
        a.PASSWORD_ALGORITHM((PasswordAlgorithm.SHA256, b"")),
    )
    assert encode(msg, key=_key(v.SHA256_REQUEST), sha256=True) == v.SHA256_REQUEST


@pytest.mark.parametrize("data", v.VECTORS_WITH_SHA256)
def test_every_flipped_bit_fails_decoding_or_verification(data: bytes) -> None:
    key = _key(data)
    with_fingerprint = data in (v.SAMPLE_REQUEST, v.SAMPLE_IPV4_RESPONSE, v.SAMPLE_IPV6_RESPONSE)
    for i in range(len(data)):
        for bit in range(8):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            try:
                msg = decode(bytes(bad))
            except StunError:
                continue
            verified = check_integrity(msg, key) and (
                check_fingerprint(msg) or not with_fingerprint
            )
            assert not verified, (i, bit)
