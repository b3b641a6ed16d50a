"""Special-purpose ranges: table, classification, reachability, media trust, embedded IPv4."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtc64.net.address import IPAddress
from rtc64.net.ranges import (
    MEDIA_UNTRUSTED,
    NAT64_LOCAL_USE_PREFIX,
    NAT64_WELL_KNOWN_PREFIX,
    SPECIAL_RANGES,
    AddressClass,
    SpecialRange,
    classify,
    embedded_ipv4,
    is_globally_reachable,
    is_nat64_embedded,
    is_private_or_unusable_for_media,
    most_specific_range,
    special_ranges,
)

from .strategies import any_address, in_range, ipv4s, ipv6s, special_addresses

A = AddressClass
V4 = IPv4Address
V6 = IPv6Address


def _ip(text: str) -> IPAddress:
    return V6(text) if ":" in text else V4(text)


# --- The table -------------------------------------------------------------------------


def test_table_is_well_formed() -> None:
    seen = set()
    for row in SPECIAL_RANGES:
        assert isinstance(row.cls, AddressClass)
        assert row.rfc.startswith("RFC ")
        assert row.network == ip_network(str(row.network))  # no host bits
        assert row.network not in seen, row
        seen.add(row.network)
    assert {row.cls for row in SPECIAL_RANGES} == set(AddressClass)


REQUIRED = [
    ("127.0.0.0/8", A.LOOPBACK),
    ("::1/128", A.LOOPBACK),
    ("0.0.0.0/32", A.UNSPECIFIED),
    ("::/128", A.UNSPECIFIED),
    ("0.0.0.0/8", A.THIS_NETWORK),
    ("169.254.0.0/16", A.LINK_LOCAL),
    ("fe80::/10", A.LINK_LOCAL),
    ("fc00::/7", A.ULA),
    ("10.0.0.0/8", A.PRIVATE),
    ("172.16.0.0/12", A.PRIVATE),
    ("192.168.0.0/16", A.PRIVATE),
    ("100.64.0.0/10", A.CGNAT),
    ("192.0.0.0/29", A.CLAT),
    ("192.0.0.0/24", A.IETF_PROTOCOL),
    ("192.0.2.0/24", A.DOCUMENTATION),
    ("198.51.100.0/24", A.DOCUMENTATION),
    ("203.0.113.0/24", A.DOCUMENTATION),
    ("2001:db8::/32", A.DOCUMENTATION),
    ("3fff::/20", A.DOCUMENTATION),
    ("198.18.0.0/15", A.BENCHMARKING),
    ("2001:2::/48", A.BENCHMARKING),
    ("224.0.0.0/4", A.MULTICAST),
    ("ff00::/8", A.MULTICAST),
    ("255.255.255.255/32", A.BROADCAST),
    ("240.0.0.0/4", A.RESERVED),
    ("::ffff:0:0/96", A.IPV4_MAPPED),
    ("2002::/16", A.SIXTOFOUR),
    ("2001::/32", A.TEREDO),
    ("64:ff9b::/96", A.NAT64_WKP),
    ("64:ff9b:1::/48", A.NAT64_LOCAL),
    ("192.0.0.170/32", A.NAT64_DISCOVERY),
    ("192.0.0.171/32", A.NAT64_DISCOVERY),
    ("192.0.0.10/32", A.TURN_ANYCAST),
    ("2001:1::2/128", A.TURN_ANYCAST),
]


@pytest.mark.parametrize(("net", "cls"), REQUIRED)
def test_required_rows(net: str, cls: AddressClass) -> None:
    assert (ip_network(net), cls) in {(r.network, r.cls) for r in SPECIAL_RANGES}


# --- Classification ----------------------------------------------------------------------

CASES = [
    ("127.0.0.1", {A.LOOPBACK}),
    ("::1", {A.LOOPBACK}),
    ("0.0.0.0", {A.THIS_NETWORK, A.UNSPECIFIED}),
    ("0.1.2.3", {A.THIS_NETWORK}),
    ("::", {A.UNSPECIFIED}),
    ("10.1.2.3", {A.PRIVATE}),
    ("172.31.255.255", {A.PRIVATE}),
    ("172.32.0.0", set()),
    ("192.168.1.1", {A.PRIVATE}),
    ("100.64.0.1", {A.CGNAT}),
    ("100.127.255.255", {A.CGNAT}),
    ("100.128.0.0", set()),
    ("192.0.0.1", {A.IETF_PROTOCOL, A.CLAT}),
    ("192.0.0.7", {A.IETF_PROTOCOL, A.CLAT}),
    ("192.0.0.8", {A.IETF_PROTOCOL, A.DUMMY}),
    ("192.0.0.9", {A.IETF_PROTOCOL, A.PCP_ANYCAST}),
    ("192.0.0.170", {A.IETF_PROTOCOL, A.NAT64_DISCOVERY}),
    ("192.0.0.200", {A.IETF_PROTOCOL}),
    ("192.0.2.33", {A.DOCUMENTATION}),
    ("198.19.255.255", {A.BENCHMARKING}),
    ("224.0.0.1", {A.MULTICAST}),
    ("239.255.255.250", {A.MULTICAST}),
    ("240.0.0.1", {A.RESERVED}),
    ("255.255.255.255", {A.RESERVED, A.BROADCAST}),
    ("169.254.1.1", {A.LINK_LOCAL}),
    ("8.8.8.8", set()),
    ("fe80::1", {A.LINK_LOCAL}),
    ("fe80::1%eth0", {A.LINK_LOCAL}),
    ("febf:ffff::1", {A.LINK_LOCAL}),
    ("fec0::1", {A.SITE_LOCAL}),
    ("fd00::1", {A.ULA}),
    ("fc00::1", {A.ULA}),
    ("ff02::1", {A.MULTICAST}),
    ("::ffff:10.0.0.1", {A.IPV4_MAPPED}),
    ("64:ff9b::192.0.2.33", {A.NAT64_WKP}),
    ("64:ff9b:1::1", {A.NAT64_LOCAL}),
    ("64:ff9b:2::1", set()),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", {A.IETF_PROTOCOL, A.TEREDO}),
    ("2001:1::2", {A.IETF_PROTOCOL, A.TURN_ANYCAST}),
    ("2001:db8::1", {A.DOCUMENTATION}),
    ("3fff:fff::1", {A.DOCUMENTATION}),
    ("3fff:1000::1", set()),
    ("2002:c000:221::1", {A.SIXTOFOUR}),
    ("2606:4700::1111", set()),
    ("100::1", {A.DISCARD}),
    ("5f00::1", {A.SEGMENT_ROUTING}),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_classify(text: str, expected: set[AddressClass]) -> None:
    assert classify(_ip(text)) == frozenset(expected)


def test_most_specific_range() -> None:
    row = most_specific_range(V4("192.0.0.10"))
    assert row is not None
    assert row.cls is A.TURN_ANYCAST
    assert row.rfc == "RFC 8155"
    assert most_specific_range(V4("8.8.8.8")) is None
    assert [r.cls for r in special_ranges(V4("192.0.0.1"))] == [A.CLAT, A.IETF_PROTOCOL]


def _naive_rows(addr: IPAddress) -> list[SpecialRange]:
    rows = [r for r in SPECIAL_RANGES if addr.version == r.network.version and addr in r.network]
    return sorted(rows, key=lambda r: -r.network.prefixlen)


@given(any_address)
def test_classify_agrees_with_naive_reference(addr: IPAddress) -> None:
    rows = _naive_rows(addr)
    assert classify(addr) == frozenset(r.cls for r in rows)
    assert list(special_ranges(addr)) == rows
    assert most_specific_range(addr) == (rows[0] if rows else None)


@pytest.mark.parametrize("row", SPECIAL_RANGES, ids=lambda r: f"{r.network}")
@given(data=st.data())
def test_every_range_classifies_its_addresses(row: SpecialRange, data: st.DataObject) -> None:
    addr = data.draw(in_range(row))
    assert row.cls in classify(addr)
    assert row in special_ranges(addr)


@pytest.mark.parametrize("row", SPECIAL_RANGES, ids=lambda r: f"{r.network}")
def test_range_edges(row: SpecialRange) -> None:
    net = row.network
    assert row.cls in classify(net.network_address)
    assert row.cls in classify(net.broadcast_address)
    top = (1 << net.max_prefixlen) - 1
    cls = type(net.network_address)
    before, after = int(net.network_address) - 1, int(net.broadcast_address) + 1
    for outside in (before, after):
        if 0 <= outside <= top:
            assert row not in special_ranges(cls(outside))


# --- Global reachability -----------------------------------------------------------------

GLOBAL = [
    "8.8.8.8",
    "1.1.1.1",
    "192.0.0.9",
    "192.0.0.10",
    "192.31.196.1",
    "2606:4700::1111",
    "2a00:1450:4001::1",
    "64:ff9b::8.8.8.8",
    "2001:1::1",
    "2001:1::2",
    "2001:20::1",
    "2620:4f:8000::1",
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo, client 8.8.8.8
    "::ffff:8.8.8.8",  # judged by the IPv4 address it maps
]
NOT_GLOBAL = [
    "10.0.0.1",
    "100.64.0.1",
    "127.0.0.1",
    "169.254.0.1",
    "192.0.0.1",
    "192.0.0.8",
    "192.0.0.170",
    "192.0.2.1",
    "198.18.0.1",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "0.0.0.0",
    "::",
    "::1",
    "::ffff:10.0.0.1",
    "::2",  # reserved by IETF, outside 2000::/3
    "1000::1",
    "4000::1",
    "64:ff9b:1::1",
    "64:ff9b::10.0.0.1",  # the row is global; RFC 6052 §3.1 forbids this one (see rfc6052)
    "100::1",
    "2001:db8::1",
    "3fff::1",
    "2001:2::1",
    "2001:10::1",
    "2001::1",  # inside 2001::/23 but Teredo with client 255.255.255.254
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:c000:221::1",  # 6to4 of 192.0.2.33
    "5f00::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fec0::1",
    "ff0e::1",
]


@pytest.mark.parametrize("text", GLOBAL)
def test_globally_reachable(text: str) -> None:
    assert is_globally_reachable(_ip(text))


@pytest.mark.parametrize("text", [t for t in NOT_GLOBAL if t != "64:ff9b::10.0.0.1"])
def test_not_globally_reachable(text: str) -> None:
    assert not is_globally_reachable(_ip(text))


def test_wkp_row_is_global_whatever_it_embeds() -> None:
    # Reachability follows the table; the §3.1 rule lives in rfc6052.wkp_allows.
    assert is_globally_reachable(V6("64:ff9b::10.0.0.1"))


def _naive_global(addr: IPAddress) -> bool:
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    rows = _naive_rows(addr)
    if not rows:
        return addr.version == 4 or addr in ip_network("2000::/3")
    if rows[0].global_ is None:
        inner = embedded_ipv4(addr)
        return inner is not None and _naive_global(inner)
    return rows[0].global_


@given(any_address)
def test_reachability_agrees_with_naive_reference(addr: IPAddress) -> None:
    assert is_globally_reachable(addr) == _naive_global(addr)


# --- Media trust -------------------------------------------------------------------------

UNTRUSTED = [
    "10.0.0.1",
    "172.16.5.4",
    "192.168.0.10",
    "100.64.1.1",
    "192.0.0.2",  # CLAT
    "169.254.10.10",
    "127.0.0.1",
    "0.0.0.0",
    "::",
    "::1",
    "fe80::1",
    "fe80::1%eth0",
    "fd00::1",
    "::ffff:192.168.1.1",
    "::ffff:0.0.0.0",
]
TRUSTED = ["8.8.8.8", "2001:db8::1", "2606:4700::1", "64:ff9b::8.8.8.8", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("text", UNTRUSTED)
def test_private_or_unusable_for_media(text: str) -> None:
    assert is_private_or_unusable_for_media(_ip(text))


@pytest.mark.parametrize("text", TRUSTED)
def test_usable_for_media(text: str) -> None:
    assert not is_private_or_unusable_for_media(_ip(text))


def test_media_untrusted_covers_the_brief() -> None:
    required = {A.PRIVATE, A.CGNAT, A.CLAT, A.LINK_LOCAL, A.LOOPBACK, A.UNSPECIFIED, A.ULA}
    assert required <= MEDIA_UNTRUSTED


@given(any_address)
def test_media_trust_agrees_with_classes(addr: IPAddress) -> None:
    plain = addr.ipv4_mapped if isinstance(addr, IPv6Address) and addr.ipv4_mapped else addr
    expected = any(r.cls in MEDIA_UNTRUSTED for r in _naive_rows(plain))
    assert is_private_or_unusable_for_media(addr) == expected


# --- NAT64 and embedded IPv4 ---------------------------------------------------------------


def test_is_nat64_embedded() -> None:
    nsp = IPv6Network("fd64:64:64::/96")
    assert is_nat64_embedded(V6("64:ff9b::192.0.2.33"))
    assert is_nat64_embedded(V6("64:ff9b:1:2::1"))
    assert not is_nat64_embedded(V6("64:ff9b:2::1"))
    assert not is_nat64_embedded(V6("fd64:64:64::c000:221"))
    assert is_nat64_embedded(V6("fd64:64:64::c000:221"), [nsp])
    assert is_nat64_embedded(V6("fd64:64:64::c000:221"), (n for n in [nsp]))
    assert not is_nat64_embedded(V6("fd64:64:65::1"), [nsp])
    assert not is_nat64_embedded(V4("192.0.2.33"), [nsp])
    assert IPv6Network("64:ff9b::/96") == NAT64_WELL_KNOWN_PREFIX
    assert IPv6Network("64:ff9b:1::/48") == NAT64_LOCAL_USE_PREFIX


@given(ipv6s, st.integers(0, 128))
def test_is_nat64_embedded_agrees_with_membership(addr: IPv6Address, plen: int) -> None:
    prefix = IPv6Network((int(addr) >> (128 - plen) << (128 - plen) if plen else 0, plen))
    assert is_nat64_embedded(addr, [prefix])
    other = IPv6Network("fd64:64:64::/96")
    expected = addr in NAT64_WELL_KNOWN_PREFIX or addr in NAT64_LOCAL_USE_PREFIX or addr in other
    assert is_nat64_embedded(addr, [other]) == expected


EMBEDDED = [
    ("::ffff:192.0.2.1", "192.0.2.1"),
    ("2002:c000:221::1", "192.0.2.33"),
    ("2002:c000:221:ffff:ffff:ffff:ffff:ffff", "192.0.2.33"),
    # RFC 4380 §4 example: server 65.54.227.120, client 192.0.2.45 (obfuscated).
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.45"),
    ("64:ff9b::192.0.2.33", "192.0.2.33"),
]


@pytest.mark.parametrize(("text", "v4"), EMBEDDED)
def test_embedded_ipv4(text: str, v4: str) -> None:
    assert embedded_ipv4(V6(text)) == V4(v4)


@pytest.mark.parametrize("text", ["2001:db8::1", "64:ff9b:1::c000:221", "::1", "192.0.2.1"])
def test_no_embedded_ipv4(text: str) -> None:
    assert embedded_ipv4(_ip(text)) is None


@given(st.one_of(ipv6s, special_addresses.filter(lambda a: a.version == 6)))
def test_embedded_ipv4_agrees_with_ipaddress(addr: IPv6Address) -> None:
    expected: IPv4Address | None = None
    if addr.ipv4_mapped is not None:
        expected = addr.ipv4_mapped
    elif addr.sixtofour is not None:
        expected = addr.sixtofour
    elif addr.teredo is not None:
        expected = addr.teredo[1]
    elif addr in NAT64_WELL_KNOWN_PREFIX:
        expected = V4(int(addr) & 0xFFFFFFFF)
    assert embedded_ipv4(addr) == expected


@given(ipv4s)
def test_ipv4_has_no_embedded(addr: IPv4Address) -> None:
    assert embedded_ipv4(addr) is None
    assert not is_nat64_embedded(addr)
