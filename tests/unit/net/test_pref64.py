"""PREF64 options (RFC 8781), the kernel's nduseroptmsg framing, RFC 7050 extraction."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, IPv6Network

import pytest

from rtc64.net import rfc6052
from rtc64.net.pref64 import (
    RTM_NEWNDUSEROPT,
    NdUserOpt,
    Pref64Error,
    Pref64Option,
    build_nduseropt,
    decode_pref64,
    encode_pref64,
    iter_options,
    parse_netlink,
    pref64_options,
    rfc7050_prefixes,
)

ROUTER = IPv6Address("fe80::1")


@pytest.mark.parametrize(
    ("prefix", "plc"),
    [
        ("64:ff9b::/96", 0),
        ("2001:db8:1:2::/64", 1),
        ("2001:db8:1:200::/56", 2),
        ("2001:db8:1::/48", 3),
        ("2001:db8:100::/40", 4),
        ("2001:db8::/32", 5),
    ],
)
def test_encode_decode_every_plc(prefix: str, plc: int) -> None:
    net = IPv6Network(prefix)
    option = encode_pref64(net, 1800)
    assert len(option) == 16 and option[:2] == b"\x26\x02"
    assert struct.unpack("!H", option[2:4])[0] == (225 << 3) | plc
    assert decode_pref64(option) == Pref64Option(net, 1800)


def test_rfc8781_layout_by_hand() -> None:
    # type 38, length 2, scaled lifetime 75 (600 s) with PLC 0, then fd64:64:64:0:0:0 (96 bits)
    option = bytes.fromhex("2602" + f"{(75 << 3):04x}" + "fd640064006400000000" + "0000")
    assert decode_pref64(option) == Pref64Option(IPv6Network("fd64:64:64::/96"), 600)


def test_lifetime_rounds_up_to_8s_and_caps() -> None:
    net = IPv6Network("64:ff9b::/96")
    assert decode_pref64(encode_pref64(net, 1)).lifetime == 8
    assert decode_pref64(encode_pref64(net, 10**6)).lifetime == 0x1FFF * 8
    assert decode_pref64(encode_pref64(net, 0)).lifetime == 0


def test_bits_beyond_the_prefix_length_are_ignored() -> None:
    option = bytearray(encode_pref64(IPv6Network("2001:db8::/32"), 600))
    option[8:16] = b"\xff" * 8
    assert decode_pref64(bytes(option)).prefix == IPv6Network("2001:db8::/32")


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        (b"", "not a PREF64"),
        (bytes.fromhex("1903") + bytes(22), "not a PREF64"),
        (bytes.fromhex("2603") + bytes(22), "length 3"),
        (bytes.fromhex("2602") + bytes(10), "length 2"),
        (bytes.fromhex("26020006") + bytes(12), "code 6"),
        (bytes.fromhex("26020007") + bytes(12), "code 7"),
    ],
)
def test_bad_options(option: bytes, fragment: str) -> None:
    with pytest.raises(Pref64Error, match=fragment):
        decode_pref64(option)


def test_netlink_round_trip_with_router_address() -> None:
    option = encode_pref64(IPv6Network("fd64:64:64::/96"), 600)
    rdnss = bytes.fromhex("1903 0000 00000e10") + IPv6Address("fd00::53").packed
    data = build_nduseropt(7, rdnss + option, ROUTER)
    # nlmsghdr (16) + nduseroptmsg (16) + options (40) + rtattr (4 + 16)
    assert len(data) == 16 + 16 + 40 + 20
    assert struct.unpack_from("=H", data, 4)[0] == RTM_NEWNDUSEROPT
    [msg] = parse_netlink(data)
    assert msg == NdUserOpt(7, 134, 0, rdnss + option, ROUTER)
    assert list(iter_options(msg.options)) == [rdnss, option]
    assert pref64_options(msg) == [Pref64Option(IPv6Network("fd64:64:64::/96"), 600)]


def test_several_messages_and_other_types_in_one_datagram() -> None:
    other = struct.pack("=IHHII", 20, 24, 0, 0, 0) + bytes(4)  # RTM_NEWROUTE, skipped
    one = build_nduseropt(2, encode_pref64(IPv6Network("64:ff9b::/96"), 80))
    two = build_nduseropt(3, encode_pref64(IPv6Network("2001:db8::/32"), 0), ROUTER)
    msgs = parse_netlink(one + other + two)
    assert [m.ifindex for m in msgs] == [2, 3]
    assert [pref64_options(m)[0].lifetime for m in msgs] == [80, 0]


def test_invalid_pref64_in_an_ra_is_skipped_and_non_ra_ignored() -> None:
    bad = bytes.fromhex("26020007") + bytes(12)
    good = encode_pref64(IPv6Network("64:ff9b::/96"), 600)
    assert [o.lifetime for o in pref64_options(NdUserOpt(1, 134, 0, bad + good, None))] == [600]
    assert pref64_options(NdUserOpt(1, 137, 0, good, None)) == []


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (struct.pack("=IHHII", 8, 68, 0, 0, 0), "bad length 8"),
        (struct.pack("=IHHII", 100, 68, 0, 0, 0), "bad length 100"),
        (struct.pack("=IHHII", 24, 68, 0, 0, 0) + bytes(8), "shorter than 16"),
        (
            struct.pack("=IHHII", 32, 68, 0, 0, 0)
            + struct.pack("=BBHiBBHI", 2, 0, 0, 1, 134, 0, 0, 0),
            "family 2",
        ),
        (
            struct.pack("=IHHII", 32, 68, 0, 0, 0)
            + struct.pack("=BBHiBBHI", 10, 0, 64, 1, 134, 0, 0, 0),
            "overruns",
        ),
    ],
)
def test_malformed_netlink(data: bytes, fragment: str) -> None:
    with pytest.raises(Pref64Error, match=fragment):
        parse_netlink(data)


def test_zero_length_nd_option_is_an_error() -> None:
    with pytest.raises(Pref64Error, match="bad length 0"):
        list(iter_options(bytes(8)))


WKA = (IPv4Address("192.0.0.170"), IPv4Address("192.0.0.171"))


@pytest.mark.parametrize(
    "prefix",
    [
        "64:ff9b::/96",
        "fd64:64:64::/96",
        "2001:db8:1:2::/64",
        "2001:db8:1:200::/56",
        "2001:db8:1::/48",
        "2001:db8:100::/40",
        "2001:db8::/32",
    ],
)
def test_rfc7050_finds_the_prefix_at_every_rfc6052_position(prefix: str) -> None:
    net = IPv6Network(prefix)
    answers = [rfc6052.synthesize(a, net) for a in WKA]
    assert rfc7050_prefixes(answers) == [net]
    assert rfc7050_prefixes(answers[:1]) == [net]


def test_rfc7050_two_prefixes_in_answer_order() -> None:
    a = IPv6Network("64:ff9b::/96")
    b = IPv6Network("2001:db8:122::/48")
    answers = [rfc6052.synthesize(WKA[0], b), rfc6052.synthesize(WKA[0], a)]
    assert rfc7050_prefixes(answers) == [b, a]


def test_rfc7050_ignores_answers_without_the_well_known_address() -> None:
    assert rfc7050_prefixes([IPv6Address("2001:db8::1"), IPv6Address("64:ff9b::c000:201")]) == []


def test_rfc7050_ambiguous_position_settled_by_the_other_address() -> None:
    # The prefix itself holds c000:aa (192.0.0.170) at the /32 position.
    prefix = IPv6Network("2001:db8:c000:aa::/96")
    answers = [rfc6052.synthesize(w, prefix) for w in WKA]
    assert rfc7050_prefixes(answers) == [prefix]
    assert rfc7050_prefixes(answers[:1]) == [prefix]  # unsettled: the longest


def test_rfc7050_suffix_is_ignored() -> None:
    address = rfc6052.synthesize(WKA[0], IPv6Network("2001:db8:1::/48")) + 1
    assert rfc7050_prefixes([address]) == [IPv6Network("2001:db8:1::/48")]
