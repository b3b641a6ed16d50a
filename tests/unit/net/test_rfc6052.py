"""RFC 6052 IPv4-embedded IPv6 addresses: §2.4 vectors, prefixes, §3.1, round trips."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtc64.errors import Rtc64Error
from rtc64.net import rfc6052
from rtc64.net.rfc6052 import (
    LOCAL_USE_PREFIX,
    PREFIX_LENGTHS,
    WELL_KNOWN_PREFIX,
    Nat64AddressError,
    Nat64PrefixError,
    extract,
    parse_prefix,
    synthesize,
    validate_prefix,
    wkp_allows,
)

from .strategies import ipv4s, ipv6s, nat64_prefixes

# RFC 6052 §2.4, Table 1 ("Text Representation of IPv4-Embedded IPv6 Address"), verbatim,
# plus the Well-Known Prefix example of the same section.
RFC6052_TABLE = [
    ("2001:db8::/32", "192.0.2.33", "2001:db8:c000:221::"),
    ("2001:db8:100::/40", "192.0.2.33", "2001:db8:1c0:2:21::"),
    ("2001:db8:122::/48", "192.0.2.33", "2001:db8:122:c000:2:2100::"),
    ("2001:db8:122:300::/56", "192.0.2.33", "2001:db8:122:3c0:0:221::"),
    ("2001:db8:122:344::/64", "192.0.2.33", "2001:db8:122:344:c0:2:2100:0"),
    ("2001:db8:122:344::/96", "192.0.2.33", "2001:db8:122:344::192.0.2.33"),
    ("64:ff9b::/96", "192.0.2.33", "64:ff9b::192.0.2.33"),
]


@pytest.mark.parametrize(("prefix", "ipv4", "ipv6"), RFC6052_TABLE)
def test_rfc6052_table_synthesize(prefix: str, ipv4: str, ipv6: str) -> None:
    assert synthesize(IPv4Address(ipv4), parse_prefix(prefix)) == IPv6Address(ipv6)


@pytest.mark.parametrize(("prefix", "ipv4", "ipv6"), RFC6052_TABLE)
def test_rfc6052_table_extract(prefix: str, ipv4: str, ipv6: str) -> None:
    assert extract(IPv6Address(ipv6), parse_prefix(prefix)) == IPv4Address(ipv4)


def test_table_covers_every_length() -> None:
    assert {IPv6Network(p).prefixlen for p, _, _ in RFC6052_TABLE} == set(PREFIX_LENGTHS)


def test_defaults_use_the_well_known_prefix() -> None:
    assert IPv6Network("64:ff9b::/96") == WELL_KNOWN_PREFIX
    assert IPv6Network("64:ff9b:1::/48") == LOCAL_USE_PREFIX
    assert synthesize(IPv4Address("8.8.8.8")) == IPv6Address("64:ff9b::808:808")
    assert extract(IPv6Address("64:ff9b::808:808")) == IPv4Address("8.8.8.8")


def test_local_use_prefix_subnets_are_usable() -> None:
    prefix = parse_prefix("64:ff9b:1:abcd::/64")
    addr = synthesize(IPv4Address("10.1.2.3"), prefix)
    assert addr in LOCAL_USE_PREFIX
    assert extract(addr, prefix) == IPv4Address("10.1.2.3")


# --- Prefixes ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["64:ff9b::/96", " 2001:db8::/32 ", "fd64:64:64::/96"])
def test_parse_prefix(text: str) -> None:
    assert parse_prefix(text) == IPv6Network(text.strip())


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("64:ff9b::/95", "/95"),
        ("64:ff9b::/128", "/128"),
        ("2001:db8::/33", "/33"),
        ("::/0", "/0"),
        ("64:ff9b::1/96", "did you mean 64:ff9b::/96?"),
        ("2001:db8::1/32", "did you mean 2001:db8::/32?"),
        ("2001:db8:0:0:ff00::/96", "0xff"),  # u-octet set
        ("2001:db8:0:0:100::/96", "0x01"),
        ("64:ff9b::", "'64:ff9b::'"),
        ("64:ff9b::/", "'64:ff9b::/'"),
        ("64:ff9b::/x", "'64:ff9b::/x'"),
        ("64:ff9b::/-96", "'64:ff9b::/-96'"),
        ("fe80::%eth0/96", "'fe80::%eth0/96'"),
        ("192.0.2.0/24", "'192.0.2.0/24'"),
        ("", "''"),
        ("nat64", "'nat64'"),
    ],
)
def test_parse_prefix_rejects_and_names_the_value(text: str, named: str) -> None:
    with pytest.raises(Nat64PrefixError) as info:
        parse_prefix(text)
    message = str(info.value)
    assert named in message
    assert "64:ff9b::/96" in message or "RFC 6052" in message
    # The CLI catches ValueError; the rest of rtc64 catches Rtc64Error.
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, Rtc64Error)


@pytest.mark.parametrize("plen", [p for p in range(129) if p not in PREFIX_LENGTHS])
def test_validate_prefix_rejects_other_lengths(plen: int) -> None:
    with pytest.raises(Nat64PrefixError, match=f"/{plen} "):
        validate_prefix(IPv6Network(("2001:db8::", plen), strict=False))


@pytest.mark.parametrize("u", [1, 0x80, 0xFF])
def test_validate_prefix_rejects_u_octet(u: int) -> None:
    prefix = IPv6Network((int(IPv6Address("2001:db8::")) | (u << 56), 96))
    with pytest.raises(Nat64PrefixError, match=f"0x{u:02x}"):
        validate_prefix(prefix)
    with pytest.raises(Nat64PrefixError):
        synthesize(IPv4Address("8.8.8.8"), prefix)
    with pytest.raises(Nat64PrefixError):
        extract(IPv6Address(int(prefix.network_address)), prefix)


def test_validate_prefix_rejects_ipv4_network() -> None:
    with pytest.raises(Nat64PrefixError, match=r"192\.0\.2\.0/24"):
        validate_prefix(IPv4Network("192.0.2.0/24"))  # type: ignore[arg-type]


@given(nat64_prefixes())
def test_validate_prefix_accepts_zero_u_octet(prefix: IPv6Network) -> None:
    assert validate_prefix(prefix) is prefix
    assert parse_prefix(str(prefix)) == prefix


# --- Extraction errors ---------------------------------------------------------------------


def test_extract_outside_prefix_names_both() -> None:
    with pytest.raises(Nat64AddressError) as info:
        extract(IPv6Address("2001:db8::1"), WELL_KNOWN_PREFIX)
    assert "2001:db8::1" in str(info.value)
    assert "64:ff9b::/96" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_extract_rejects_u_octet_in_address() -> None:
    prefix = parse_prefix("2001:db8:122::/48")
    good = synthesize(IPv4Address("192.0.2.33"), prefix)
    bad = IPv6Address(int(good) | (0x01 << 56))
    with pytest.raises(Nat64AddressError, match="u-octet") as info:
        extract(bad, prefix)
    assert str(bad) in str(info.value)


def test_extract_ignores_suffix() -> None:
    prefix = parse_prefix("2001:db8:122:344::/64")
    addr = IPv6Address("2001:db8:122:344:c0:2:2100:abcd")
    assert extract(addr, prefix) == IPv4Address("192.0.2.33")


# --- RFC 6052 §3.1: the Well-Known Prefix and non-global IPv4 -----------------------------


@pytest.mark.parametrize(
    "text",
    ["10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1", "127.0.0.1", "169.254.1.1",
     "192.0.2.33", "198.51.100.1", "203.0.113.1", "0.0.0.0", "192.0.0.1", "198.18.0.1",
     "224.0.0.1", "240.0.0.1", "255.255.255.255"],
)  # fmt: skip
def test_wkp_refuses_non_global(text: str) -> None:
    ipv4 = IPv4Address(text)
    assert not wkp_allows(ipv4)
    with pytest.raises(Nat64AddressError, match=r"RFC 6052 §3\.1") as info:
        synthesize(ipv4, WELL_KNOWN_PREFIX, strict=True)
    assert text in str(info.value)
    addr = synthesize(ipv4, WELL_KNOWN_PREFIX)  # not strict: plain §2.2 arithmetic
    with pytest.raises(Nat64AddressError, match=text):
        extract(addr, WELL_KNOWN_PREFIX, strict=True)
    assert extract(addr, WELL_KNOWN_PREFIX) == ipv4
    # A network-specific prefix may embed any IPv4 address.
    nsp = parse_prefix("fd64:64:64::/96")
    assert extract(synthesize(ipv4, nsp, strict=True), nsp, strict=True) == ipv4


@pytest.mark.parametrize("text", ["8.8.8.8", "1.1.1.1", "192.0.0.9", "192.0.0.10"])
def test_wkp_allows_global(text: str) -> None:
    ipv4 = IPv4Address(text)
    assert wkp_allows(ipv4)
    addr = synthesize(ipv4, strict=True)
    assert extract(addr, strict=True) == ipv4


# --- Properties ----------------------------------------------------------------------------


@given(ipv4s, nat64_prefixes())
def test_round_trip(ipv4: IPv4Address, prefix: IPv6Network) -> None:
    addr = synthesize(ipv4, prefix)
    assert addr in prefix
    assert (int(addr) >> 56) & 0xFF == 0  # u-octet
    assert extract(addr, prefix) == ipv4


@pytest.mark.parametrize("plen", PREFIX_LENGTHS)
@given(ipv4=ipv4s, data=st.data())
def test_round_trip_each_length(ipv4: IPv4Address, plen: int, data: st.DataObject) -> None:
    prefix = data.draw(nat64_prefixes((plen,)))
    addr = synthesize(ipv4, prefix)
    assert extract(addr, prefix) == ipv4
    # The suffix after the IPv4 bits (and the u-octet) is zero.
    used = plen + 32 + (8 if plen < 96 else 0)
    if used < 128:
        assert int(addr) & ((1 << (128 - used)) - 1) == 0


def _reference_synthesize(ipv4: IPv4Address, prefix: IPv6Network) -> IPv6Address:
    """Byte-wise §2.2 layout, written independently of the module's bit arithmetic."""
    out = bytearray(prefix.network_address.packed)
    v4 = ipv4.packed
    pos = prefix.prefixlen // 8
    for byte in v4:
        if pos == 8:
            pos = 9  # skip the u-octet
        out[pos] = byte
        pos += 1
    return IPv6Address(bytes(out))


@given(ipv4s, nat64_prefixes())
def test_synthesize_agrees_with_byte_layout(ipv4: IPv4Address, prefix: IPv6Network) -> None:
    assert synthesize(ipv4, prefix) == _reference_synthesize(ipv4, prefix)


@given(ipv6s, nat64_prefixes())
def test_extract_inverts_synthesize_on_prefix_addresses(
    ipv6: IPv6Address, prefix: IPv6Network
) -> None:
    inside = IPv6Address(
        int(prefix.network_address) | (int(ipv6) & ~int(prefix.netmask) & ~(0xFF << 56))
    )
    ipv4 = extract(inside, prefix)
    # Re-synthesising gives the same address with the suffix cleared.
    again = synthesize(ipv4, prefix)
    assert extract(again, prefix) == ipv4
    assert _reference_synthesize(ipv4, prefix) == again


def test_module_exports() -> None:
    assert rfc6052.WELL_KNOWN_PREFIX is WELL_KNOWN_PREFIX
    assert issubclass(Nat64PrefixError, rfc6052.Rfc6052Error)
    assert issubclass(Nat64AddressError, rfc6052.Rfc6052Error)
