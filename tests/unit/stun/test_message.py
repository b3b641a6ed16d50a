"""STUN message rules: header checks, attributes after integrity, 420 reporting, SHA-256
integrity and truncation, error responses, the Data indication fast path."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from rtc64.errors import LocalProtocolError
from rtc64.stun import StunError
from rtc64.stun import attributes as a
from rtc64.stun.integrity import PasswordAlgorithm, hmac_sha256, long_term_key
from rtc64.stun.message import (
    MAX_ATTRIBUTES,
    Class,
    Message,
    Method,
    build,
    check_fingerprint,
    check_integrity,
    data_indication,
    decode,
    encode,
    error_response,
    integrity_kind,
    looks_like_stun,
    message_type,
    read_send_indication,
    response,
    split_type,
)

TID = bytes(range(1, 13))
KEY = long_term_key("alice", "example.org", "secret")


def append(data: bytes, type_: int, value: bytes) -> bytes:
    """``data`` with one more attribute and its header length fixed, as an attacker could."""
    body = struct.pack("!HH", type_, len(value)) + value + bytes(-len(value) & 3)
    out = bytearray(data + body)
    struct.pack_into("!H", out, 2, len(out) - 20)
    return bytes(out)


def test_message_type_bits() -> None:
    # RFC 8489 §5: Binding request 0x0001, success 0x0101, error 0x0111, indication 0x0011.
    assert message_type(Method.BINDING, Class.REQUEST) == 0x0001
    assert message_type(Method.BINDING, Class.SUCCESS) == 0x0101
    assert message_type(Method.BINDING, Class.ERROR) == 0x0111
    assert message_type(Method.BINDING, Class.INDICATION) == 0x0011
    assert message_type(Method.ALLOCATE, Class.ERROR) == 0x0113
    assert message_type(Method.DATA, Class.INDICATION) == 0x0017
    assert message_type(Method.SEND, Class.INDICATION) == 0x0016
    for method in range(0x1000):
        for cls in Class:
            assert split_type(message_type(method, cls)) == (method, cls)


def test_header_rules() -> None:
    good = encode(build(Method.BINDING, Class.REQUEST, TID))
    assert decode(good) == Message(Method.BINDING, Class.REQUEST, TID)
    assert looks_like_stun(good)
    bad_cookie = good[:4] + b"\0\0\0\0" + good[8:]
    top_bits = b"\x80" + good[1:]
    odd_length = good[:3] + b"\x02" + good[4:] + b"\0\0"
    long_length = good[:3] + b"\x04" + good[4:]
    for bad in (good[:19], bad_cookie, top_bits, odd_length, long_length, good + b"\0" * 4):
        with pytest.raises(StunError) as info:
            decode(bad)
        assert info.value.status == 400
    assert not looks_like_stun(bad_cookie)
    assert not looks_like_stun(top_bits)
    assert not looks_like_stun(odd_length)
    assert not looks_like_stun(good[:19])


def test_attribute_overrun_and_padding_overrun() -> None:
    base = encode(build(Method.BINDING, Class.REQUEST, TID, a.SOFTWARE("abcd")))
    # claims 5 bytes: padding would run 3 bytes past the end
    over = bytearray(base)
    struct.pack_into("!H", over, 22, 5)
    with pytest.raises(StunError):
        decode(bytes(over))
    # claims 200 bytes
    struct.pack_into("!H", over, 22, 200)
    with pytest.raises(StunError):
        decode(bytes(over))


def test_padding_bytes_are_ignored_on_receipt() -> None:
    msg = build(Method.BINDING, Class.REQUEST, TID, a.USERNAME("abcde"))
    assert decode(encode(msg, pad=b"\xff")) == msg


def test_attributes_after_message_integrity_are_ignored() -> None:
    signed = encode(
        build(Method.REFRESH, Class.REQUEST, TID, a.LIFETIME(600), a.USERNAME("alice")), key=KEY
    )
    forged = append(signed, a.LIFETIME.type, (0).to_bytes(4, "big"))
    forged = append(forged, 0x7FFF, b"x")  # unknown comprehension-required, ignored too
    msg = decode(forged)
    assert msg.get(a.LIFETIME) == 600
    assert msg.get_all(a.LIFETIME) == [600]
    assert msg.unknown_required() == ()
    assert check_integrity(msg, KEY)
    # MESSAGE-INTEGRITY-SHA256 and FINGERPRINT still count after MESSAGE-INTEGRITY
    with_sha = append(signed, a.MESSAGE_INTEGRITY_SHA256.type, b"\0" * 32)
    assert decode(with_sha).has(a.MESSAGE_INTEGRITY_SHA256)
    assert integrity_kind(decode(with_sha)) is a.MESSAGE_INTEGRITY_SHA256
    assert not check_integrity(decode(with_sha), KEY)  # the SHA-256 form is the one checked
    # after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT counts (even MESSAGE-INTEGRITY is ignored)
    sha_first = encode(
        build(Method.REFRESH, Class.REQUEST, TID, a.LIFETIME(1)), key=KEY, sha256=True
    )
    later = append(sha_first, a.MESSAGE_INTEGRITY.type, b"\0" * 20)
    msg = decode(later)
    assert not msg.has(a.MESSAGE_INTEGRITY)
    assert check_integrity(msg, KEY)


def test_fingerprint_must_be_last() -> None:
    wire = encode(build(Method.BINDING, Class.REQUEST, TID), fingerprint=True)
    assert check_fingerprint(decode(wire))
    with pytest.raises(StunError):
        decode(append(wire, a.SOFTWARE.type, b"x"))
    bad = bytearray(wire)
    bad[-1] ^= 1
    assert not check_fingerprint(decode(bytes(bad)))


def test_integrity_and_fingerprint_together() -> None:
    msg = build(Method.ALLOCATE, Class.REQUEST, TID, a.REQUESTED_TRANSPORT(17), a.USERNAME("u"))
    for sha256 in (False, True):
        wire = encode(msg, key=KEY, sha256=sha256, fingerprint=True)
        got = decode(wire)
        assert check_integrity(got, KEY)
        assert check_fingerprint(got)
        assert not check_integrity(got, KEY[:-1] + b"\0")
        expected = a.MESSAGE_INTEGRITY_SHA256 if sha256 else a.MESSAGE_INTEGRITY
        assert integrity_kind(got) is expected
    assert not check_integrity(decode(encode(msg)), KEY)
    assert integrity_kind(decode(encode(msg))) is None


@pytest.mark.parametrize("length", [16, 20, 24, 28, 32])
def test_message_integrity_sha256_truncated(length: int) -> None:
    key = long_term_key("alice", "example.org", "secret", PasswordAlgorithm.SHA256)
    unsigned = build(Method.ALLOCATE, Class.REQUEST, TID, a.REQUESTED_TRANSPORT(17))
    body = encode(unsigned)
    covered = bytearray(body)
    struct.pack_into("!H", covered, 2, len(body) - 20 + 4 + length)
    mac = hmac_sha256(key, bytes(covered), length)
    wire = append(body, a.MESSAGE_INTEGRITY_SHA256.type, mac)
    assert check_integrity(decode(wire), key)
    tampered = bytearray(wire)
    tampered[-1] ^= 1
    assert not check_integrity(decode(bytes(tampered)), key)


@pytest.mark.parametrize("length", [0, 4, 12, 18, 36])
def test_message_integrity_sha256_bad_lengths(length: int) -> None:
    body = encode(build(Method.ALLOCATE, Class.REQUEST, TID))
    with pytest.raises(StunError):
        decode(append(body, a.MESSAGE_INTEGRITY_SHA256.type, b"\1" * length))


def test_message_integrity_and_fingerprint_lengths() -> None:
    body = encode(build(Method.ALLOCATE, Class.REQUEST, TID))
    for type_, size in ((a.MESSAGE_INTEGRITY.type, 16), (a.FINGERPRINT.type, 8)):
        with pytest.raises(StunError):
            decode(append(body, type_, b"\1" * size))


def test_unknown_comprehension_required_reported_once_in_order() -> None:
    msg = build(
        Method.BINDING,
        Class.REQUEST,
        TID,
        (0x07AD, b"1234"),
        a.CHANNEL_NUMBER(0x4000),
        (0x7FFF, b""),
        (0x8000 | 0x7FFF, b"optional"),
        (0x07AD, b"again"),
        (0x0003, b"\0\0\0\0"),  # CHANGE-REQUEST (RFC 5780): not supported here
    )
    got = decode(encode(msg))
    assert got.unknown_required() == (0x07AD, 0x7FFF, 0x0003)
    answer = error_response(got, 420, None, a.UNKNOWN_ATTRIBUTES(got.unknown_required()))
    back = decode(encode(answer))
    assert back.cls is Class.ERROR
    assert back.transaction_id == TID
    assert back.error() == (420, "Unknown Attribute")
    assert back.get(a.UNKNOWN_ATTRIBUTES) == (0x07AD, 0x7FFF, 0x0003)


def test_error_and_success_responses() -> None:
    request = build(Method.ALLOCATE, Class.REQUEST, TID)
    err = decode(encode(error_response(request, 438, None, a.NONCE("n"), a.REALM("r"))))
    assert (err.method, err.cls, err.error()) == (
        Method.ALLOCATE,
        Class.ERROR,
        (438, "Stale Nonce"),
    )
    assert err.attributes[0][0] == a.ERROR_CODE.type
    assert decode(encode(error_response(request, 599, "Odd"))).error() == (599, "Odd")
    ok = decode(encode(response(request, a.LIFETIME(600))))
    assert (ok.cls, ok.get(a.LIFETIME), ok.error()) == (Class.SUCCESS, 600, None)
    with pytest.raises(LocalProtocolError):
        error_response(request, 200, "no")


def test_malformed_value_raises_on_access_with_its_code() -> None:
    msg = decode(encode(build(Method.ALLOCATE, Class.REQUEST, TID, (0x0017, b"\x07\0\0\0"))))
    with pytest.raises(StunError) as info:
        msg.get(a.REQUESTED_ADDRESS_FAMILY)
    assert info.value.status == 440
    msg = decode(encode(build(Method.ALLOCATE, Class.REQUEST, TID, (0x000D, b"\0\0"))))
    with pytest.raises(StunError) as info:
        msg.get(a.LIFETIME)
    assert info.value.status == 400


def test_encode_refuses_what_we_must_not_send() -> None:
    with pytest.raises(LocalProtocolError):
        encode(Message(Method.BINDING, Class.REQUEST, b"short"))
    with pytest.raises(LocalProtocolError):
        encode(Message(0x1000, Class.REQUEST, TID))
    with pytest.raises(LocalProtocolError):
        encode(build(Method.SEND, Class.INDICATION, TID, a.DATA(b"x" * 65530)))
    with pytest.raises(LocalProtocolError):
        check_integrity(build(Method.BINDING, Class.REQUEST, TID, (0x0008, bytes(20))), KEY)


@pytest.mark.parametrize(
    "peer",
    [
        (ip_address("192.0.2.1"), 32853),
        (ip_address("203.0.113.77"), 0),
        (ip_address("2001:db8:1234:5678:11:2233:4455:6677"), 65535),
        (ip_address("::ffff:198.51.100.4"), 3478),
    ],
)
@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 160, 1199, 65535 - 24 - 4 - 3])
def test_data_indication_equals_general_encoder(peer: tuple[object, int], size: int) -> None:
    payload = bytes(i & 0xFF for i in range(size))
    address, port = peer
    assert isinstance(address, (type(ip_address("::")), type(ip_address("0.0.0.0"))))
    fast = data_indication((address, port), payload, TID)
    general = encode(
        build(
            Method.DATA, Class.INDICATION, TID, a.XOR_PEER_ADDRESS((address, port)), a.DATA(payload)
        )
    )
    assert fast == general
    msg = decode(fast)
    assert msg.get(a.XOR_PEER_ADDRESS) == (address, port)
    assert msg.get(a.DATA) == payload


def test_data_indication_refuses_bad_input() -> None:
    with pytest.raises(LocalProtocolError):
        data_indication((ip_address("192.0.2.1"), 1), b"", b"short")
    with pytest.raises(LocalProtocolError):
        data_indication((ip_address("192.0.2.1"), 70000), b"", TID)
    with pytest.raises(LocalProtocolError):
        data_indication((ip_address("192.0.2.1"), 1), b"x" * 65535, TID)


def send_indication(*fields: a.Field | tuple[int, bytes], tid: bytes = TID) -> bytes:
    return encode(build(Method.SEND, Class.INDICATION, tid, *fields))


@pytest.mark.parametrize(
    "peer",
    [(ip_address("192.0.2.1"), 32853), (ip_address("2001:db8:1234:5678:11:2233:4455:6677"), 1)],
)
@pytest.mark.parametrize("size", [0, 1, 3, 4, 160])
def test_read_send_indication(peer: tuple[IPv4Address | IPv6Address, int], size: int) -> None:
    payload = bytes(range(size))
    wire = send_indication(a.XOR_PEER_ADDRESS(peer), a.DATA(payload))
    got = read_send_indication(wire)
    assert got is not None
    assert (got[0], bytes(got[1])) == (peer, payload)
    # order and optional attributes do not matter
    wire = send_indication(a.DATA(payload), a.SOFTWARE("x"), a.XOR_PEER_ADDRESS(peer))
    got = read_send_indication(wire)
    assert got is not None
    assert (got[0], bytes(got[1])) == (peer, payload)


def test_read_send_indication_leaves_the_unusual_to_the_core() -> None:
    peer = a.XOR_PEER_ADDRESS((ip_address("192.0.2.1"), 1))
    data = a.DATA(b"x")
    good = send_indication(peer, data)
    assert read_send_indication(good) is not None
    for other in (
        send_indication(peer),  # no DATA
        send_indication(data),  # no peer
        send_indication(peer, peer, data),
        send_indication(peer, data, data),
        send_indication(peer, data, a.DONT_FRAGMENT(True)),
        send_indication(peer, data, (0x7FFF, b"")),  # unknown comprehension-required
        send_indication(peer, (0x0012, b"\0\x03\0\0\0\0\0\0"), data),
        send_indication((0x0012, b"\0\x01\0\0\0\0\0"), data),
        encode(build(Method.SEND, Class.INDICATION, TID, peer, data), fingerprint=True),
        encode(build(Method.DATA, Class.INDICATION, TID, peer, data)),
        encode(build(Method.SEND, Class.REQUEST, TID, peer, data)),
        good[:-1],
        good + b"\0\0\0\0",
        good[:4] + b"\0\0\0\0" + good[8:],
        b"",
    ):
        assert read_send_indication(other) is None


def test_attribute_count_is_bounded() -> None:
    many = build(Method.BINDING, Class.REQUEST, TID, *[(0x8030, b"")] * MAX_ATTRIBUTES)
    assert len(decode(encode(many)).attributes) == MAX_ATTRIBUTES
    flood = build(Method.BINDING, Class.REQUEST, TID, *[(0x8030, b"")] * (MAX_ATTRIBUTES + 1))
    with pytest.raises(StunError):
        decode(encode(flood))
    # ignored attributes after MESSAGE-INTEGRITY count too
    signed = encode(build(Method.BINDING, Class.REQUEST, TID), key=KEY)
    for _ in range(MAX_ATTRIBUTES):
        signed = append(signed, 0x8030, b"")
    with pytest.raises(StunError):
        decode(signed)
    peer = a.XOR_PEER_ADDRESS((ip_address("192.0.2.1"), 1))
    fields = [peer, a.DATA(b"x"), *[(0x8030, b"")] * (MAX_ATTRIBUTES - 1)]
    assert read_send_indication(send_indication(*fields)) is None
    assert read_send_indication(send_indication(*fields[:-1])) is not None
