"""Every attribute codec round-trips (Hypothesis), and malformed values raise StunError."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtc64.errors import LocalProtocolError
from rtc64.net.address import Family
from rtc64.stun import StunError
from rtc64.stun import attributes as a
from rtc64.stun.message import (
    Class,
    Message,
    build,
    check_fingerprint,
    check_integrity,
    decode,
    encode,
)

tids = st.binary(min_size=12, max_size=12)
ports = st.integers(0, 0xFFFF)
addresses = st.tuples(
    st.one_of(
        st.builds(IPv4Address, st.integers(0, 2**32 - 1)),
        st.builds(IPv6Address, st.integers(0, 2**128 - 1)),
    ),
    ports,
)
families = st.sampled_from(list(Family))
codes = st.integers(300, 699)


def text(limit: int) -> st.SearchStrategy[str]:
    return st.text(max_size=limit // 4)


algorithm = st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40))

STRATEGIES: dict[int, st.SearchStrategy[Any]] = {
    a.MAPPED_ADDRESS.type: addresses,
    a.USERNAME.type: text(a.MAX_USERNAME),
    a.MESSAGE_INTEGRITY.type: st.binary(min_size=20, max_size=20),
    a.ERROR_CODE.type: st.tuples(codes, text(a.MAX_TEXT)),
    a.UNKNOWN_ATTRIBUTES.type: st.lists(st.integers(0, 0xFFFF), max_size=20).map(tuple),
    a.REALM.type: text(a.MAX_TEXT),
    a.NONCE.type: text(a.MAX_TEXT),
    a.MESSAGE_INTEGRITY_SHA256.type: st.sampled_from([16, 20, 24, 28, 32]).flatmap(
        lambda n: st.binary(min_size=n, max_size=n)
    ),
    a.PASSWORD_ALGORITHM.type: algorithm,
    a.USERHASH.type: st.binary(min_size=32, max_size=32),
    a.XOR_MAPPED_ADDRESS.type: addresses,
    a.PASSWORD_ALGORITHMS.type: st.lists(algorithm, max_size=5).map(tuple),
    a.ALTERNATE_DOMAIN.type: text(a.MAX_TEXT),
    a.SOFTWARE.type: text(a.MAX_TEXT),
    a.ALTERNATE_SERVER.type: addresses,
    a.FINGERPRINT.type: st.integers(0, 2**32 - 1),
    a.CHANNEL_NUMBER.type: st.integers(0, 0xFFFF),
    a.LIFETIME.type: st.integers(0, 2**32 - 1),
    a.XOR_PEER_ADDRESS.type: addresses,
    a.DATA.type: st.binary(max_size=2000),
    a.XOR_RELAYED_ADDRESS.type: addresses,
    a.REQUESTED_ADDRESS_FAMILY.type: families,
    a.EVEN_PORT.type: st.booleans(),
    a.REQUESTED_TRANSPORT.type: st.integers(0, 255),
    a.DONT_FRAGMENT.type: st.just(True),
    a.RESERVATION_TOKEN.type: st.binary(min_size=8, max_size=8),
    a.CONNECTION_ID.type: st.integers(0, 2**32 - 1),
    a.ADDITIONAL_ADDRESS_FAMILY.type: families,
    a.ADDRESS_ERROR_CODE.type: st.tuples(families, codes, text(a.MAX_TEXT)),
    a.ICMP.type: st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 2**32 - 1)),
    a.PRIORITY.type: st.integers(0, 2**32 - 1),
    a.USE_CANDIDATE.type: st.just(True),
    a.ICE_CONTROLLED.type: st.integers(0, 2**64 - 1),
    a.ICE_CONTROLLING.type: st.integers(0, 2**64 - 1),
}

ATTRS = sorted(a.TABLE.values(), key=lambda attr: attr.type)


def test_every_attribute_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(a.TABLE)


def test_table_covers_the_rfcs() -> None:
    expected = {
        # RFC 8489 §18.3
        0x0001, 0x0006, 0x0008, 0x0009, 0x000A, 0x0014, 0x0015, 0x001C, 0x001D, 0x001E, 0x0020,
        0x8002, 0x8003, 0x8022, 0x8023, 0x8028,
        # RFC 8656 §18, RFC 6156, RFC 6062
        0x000C, 0x000D, 0x0012, 0x0013, 0x0016, 0x0017, 0x0018, 0x0019, 0x001A, 0x0022,
        0x8000, 0x8001, 0x8004, 0x002A,
    }  # fmt: skip
    assert expected <= set(a.TABLE)
    assert a.TABLE[0x0017].name == "REQUESTED-ADDRESS-FAMILY"


@pytest.mark.parametrize("attr", ATTRS, ids=lambda attr: attr.name)
@settings(max_examples=60, deadline=None)
@given(data=st.data(), tid=tids)
def test_attribute_round_trip(attr: a.Attr[Any], data: st.DataObject, tid: bytes) -> None:
    value = data.draw(STRATEGIES[attr.type])
    wire = attr.encode(value, tid)
    assert attr.decode(wire, tid) == value
    # and through a whole message
    msg = decode(encode(build(0x003, Class.REQUEST, tid, attr(value))))
    assert msg.get(attr) == value
    assert msg.get_all(attr) == [value]


PLAIN = [
    attr
    for attr in ATTRS
    if attr not in (a.MESSAGE_INTEGRITY, a.MESSAGE_INTEGRITY_SHA256, a.FINGERPRINT)
]


@st.composite
def fields(draw: st.DrawFn, tid: bytes) -> tuple[tuple[int, bytes], ...]:
    out = []
    for _ in range(draw(st.integers(0, 6))):
        attr = draw(st.sampled_from(PLAIN))
        out.append(attr(draw(STRATEGIES[attr.type])).pack(tid))
    # unknown types pass through untouched
    out += draw(
        st.lists(st.tuples(st.sampled_from([0x7FFE, 0xBEEF]), st.binary(max_size=9)), max_size=10)
    )
    return tuple(out)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), tid=tids, method=st.integers(0, 0xFFF), cls=st.sampled_from(list(Class)))
def test_message_round_trip(data: st.DataObject, tid: bytes, method: int, cls: Class) -> None:
    attributes = data.draw(fields(tid))
    msg = Message(method, cls, tid, attributes)
    assert decode(encode(msg)) == msg
    key = data.draw(st.binary(min_size=1, max_size=32))
    sha256 = data.draw(st.booleans())
    signed = decode(encode(msg, key=key, sha256=sha256, fingerprint=True))
    assert signed.attributes[: len(attributes)] == attributes
    assert check_integrity(signed, key)
    assert check_fingerprint(signed)


# -- malformed values ----------------------------------------------------------------------

TID = bytes(12)


@pytest.mark.parametrize(
    ("attr", "value"),
    [
        (a.XOR_MAPPED_ADDRESS, b"\0\x01\0\0\0\0\0"),  # IPv4 one byte short
        (a.XOR_MAPPED_ADDRESS, b"\0\x02\0\0" + bytes(4)),  # IPv6 family, IPv4 length
        (a.XOR_MAPPED_ADDRESS, b"\0\x01\0\0" + bytes(16)),  # IPv4 family, IPv6 length
        (a.MAPPED_ADDRESS, b"\0\x03\0\0" + bytes(4)),  # unknown family
        (a.ERROR_CODE, b"\0\0\x02\x00"),  # class 2
        (a.ERROR_CODE, b"\0\0\x04\x64"),  # number 100
        (a.ERROR_CODE, b"\0\0\x04"),  # short
        (a.ERROR_CODE, b"\0\0\x04\x00\xff"),  # reason not UTF-8
        (a.USERNAME, b"\xc3"),  # not UTF-8
        (a.USERNAME, b"u" * 513),  # RFC 5389: fewer than 513 bytes
        (a.REALM, b"r" * 763),
        (a.UNKNOWN_ATTRIBUTES, b"\0\1\0"),  # odd
        (a.LIFETIME, b"\0\0\0"),
        (a.LIFETIME, b"\0\0\0\0\0"),
        (a.CHANNEL_NUMBER, b"\x40\0"),
        (a.REQUESTED_TRANSPORT, b"\x11"),
        (a.EVEN_PORT, b""),
        (a.EVEN_PORT, b"\x80\0"),
        (a.DONT_FRAGMENT, b"\0"),
        (a.RESERVATION_TOKEN, bytes(7)),
        (a.USERHASH, bytes(31)),
        (a.MESSAGE_INTEGRITY, bytes(19)),
        (a.MESSAGE_INTEGRITY_SHA256, bytes(15)),
        (a.MESSAGE_INTEGRITY_SHA256, bytes(18)),
        (a.PASSWORD_ALGORITHM, b"\0\1\0\4ab"),  # parameters overrun
        (a.PASSWORD_ALGORITHMS, b"\0\1\0\1a"),  # padding overrun
        (a.PASSWORD_ALGORITHMS, b"\0\1\0\0\0"),  # trailing byte
        (a.ICMP, bytes(7)),
        (a.ADDRESS_ERROR_CODE, b"\x03\0\x04\x00"),  # unknown family
        (a.ADDITIONAL_ADDRESS_FAMILY, b"\x02\0\0"),
        (a.ICE_CONTROLLING, bytes(4)),
    ],
)
def test_malformed_values(attr: a.Attr[Any], value: bytes) -> None:
    with pytest.raises(StunError) as info:
        attr.decode(value, TID)
    assert info.value.status == 400
    assert attr.name in info.value.reason


def test_unknown_requested_family_is_440() -> None:
    for attr in (a.REQUESTED_ADDRESS_FAMILY, a.ADDITIONAL_ADDRESS_FAMILY):
        with pytest.raises(StunError) as info:
            attr.decode(b"\x03\0\0\0", TID)
        assert info.value.status == 440


def test_known_encodings() -> None:
    # RFC 8489 §14.8: class in the hundreds digit, number modulo 100
    assert a.ERROR_CODE.encode((438, "Stale Nonce"), TID) == b"\0\0\x04\x26Stale Nonce"
    assert a.REQUESTED_ADDRESS_FAMILY.encode(Family.INET6, TID) == b"\x02\0\0\0"
    assert a.ADDRESS_ERROR_CODE.encode((Family.INET, 440, "x"), TID) == b"\x01\0\x04\x28x"
    assert a.REQUESTED_TRANSPORT.encode(17, TID) == b"\x11\0\0\0"
    assert a.CHANNEL_NUMBER.encode(0x4001, TID) == b"\x40\x01\0\0"
    assert a.EVEN_PORT.encode(True, TID) == b"\x80"
    assert a.EVEN_PORT.decode(b"\x7f", TID) is False  # only the R bit counts
    assert a.PASSWORD_ALGORITHMS.encode(((1, b""), (2, b"")), TID) == b"\0\1\0\0\0\2\0\0"
    assert a.PASSWORD_ALGORITHM.encode((1, b"abcde"), TID) == b"\0\1\0\5abcde\0\0\0"
    assert a.ICMP.encode((3, 1, 0), TID) == b"\0\0\x03\x01\0\0\0\0"
    # the IPv6 XOR uses cookie + transaction id (RFC 8489 §14.2)
    tid = bytes(range(12))
    v6 = a.XOR_PEER_ADDRESS.encode((ip_address("::"), 0), tid)
    assert v6 == b"\0\x02\x21\x12" + bytes.fromhex("2112a442") + tid
    v4 = a.XOR_PEER_ADDRESS.encode((ip_address("0.0.0.0"), 0), tid)
    assert v4 == b"\0\x01\x21\x12\x21\x12\xa4\x42"


def test_encoders_refuse_bad_values() -> None:
    for attr, value in (
        (a.ERROR_CODE, (200, "OK")),
        (a.ERROR_CODE, (400, "x" * 763)),
        (a.USERNAME, "u" * 513),
        (a.LIFETIME, -1),
        (a.LIFETIME, 2**32),
        (a.XOR_PEER_ADDRESS, (ip_address("192.0.2.1"), 65536)),
        (a.RESERVATION_TOKEN, bytes(9)),
        (a.DONT_FRAGMENT, False),
        (a.REQUESTED_TRANSPORT, 256),
        (a.CHANNEL_NUMBER, 0x10000),
        (a.UNKNOWN_ATTRIBUTES, (0x10000,)),
        (a.MESSAGE_INTEGRITY_SHA256, bytes(17)),
        (a.REQUESTED_ADDRESS_FAMILY, 7),
        (a.ADDRESS_ERROR_CODE, (1, 440, "x")),
    ):
        with pytest.raises(LocalProtocolError):
            attr.encode(value, TID)
    with pytest.raises(LocalProtocolError):
        a.XOR_PEER_ADDRESS.encode((ip_address("::1"), 1), b"short")
