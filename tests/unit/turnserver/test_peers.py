"""Peer policy: the built-in deny table, embedded IPv4, explicit lists, the coturn CVEs."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtc64.net import rfc6052
from rtc64.net.address import IPAddress
from rtc64.net.ranges import SPECIAL_RANGES
from rtc64.turnserver.peers import PeerPolicy, Reason

V4 = IPv4Address
V6 = IPv6Address


def _ip(text: str) -> IPAddress:
    return V6(text) if ":" in text else V4(text)


DEFAULT = PeerPolicy()

# Every address a TURN server must never relay to without an operator's rule.
DENIED_TABLE = [
    # unspecified and "this network" (CVE-2020-26262)
    "0.0.0.0",
    "0.1.2.3",
    "0.255.255.255",
    "::",
    # loopback
    "127.0.0.1",
    "127.255.255.254",
    "::1",
    # link-local and cloud metadata
    "169.254.0.1",
    "169.254.169.254",
    "fe80::1",
    "febf:ffff::1",
    # RFC 1918
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.0.1",
    "192.168.255.255",
    # CGNAT
    "100.64.0.1",
    "100.127.255.255",
    # ULA and site-local
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",
    "feff::1",
    # multicast and broadcast
    "224.0.0.1",
    "239.255.255.250",
    "ff02::1",
    "ff0e::1",
    "255.255.255.255",
    # documentation
    "192.0.2.1",
    "198.51.100.7",
    "203.0.113.200",
    "2001:db8::1",
    "3fff::1",
    # benchmarking
    "198.18.0.1",
    "198.19.255.255",
    "2001:2::1",
    # IETF protocol assignments, CLAT, reserved, discard
    "192.0.0.1",
    "192.0.0.8",
    "240.0.0.1",
    "100::1",
    # anycast service addresses
    "192.0.0.9",
    "192.0.0.10",
    "192.88.99.1",
    "2001:1::1",
    "2001:1::2",
    # IPv6 outside 2000::/3
    "4000::1",
    "e000::1",
    "1::1",
    # IPv4 embedded in IPv6 (CVE-2026-27624, CVE-2026-53450, CVE-2026-73212)
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:0.0.0.0",
    "::ffff:169.254.169.254",
    "::ffff:0:127.0.0.1",  # IPv4-translated (SIIT)
    "::127.0.0.1",  # IPv4-compatible
    "::10.1.2.3",
    "::0.0.0.2",
    "64:ff9b::127.0.0.1",  # NAT64 well-known prefix
    "64:ff9b::a00:1",
    "64:ff9b::c0a8:101",
    "64:ff9b:1::7f00:1",  # local-use, read as /96
    "64:ff9b:1:abcd:0:1:a9fe:a9fe",  # local-use, another /96 cut from it
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "2002:0:0::1",  # 6to4 of 0.0.0.0
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1 (inverted)
    "2001:0:4136:e378::f5ff:fffe",  # Teredo, client 10.0.0.1
    "2001:0:a00:1:8000:63bf:3fff:fdd2",  # Teredo, server 10.0.0.1
]

ALLOWED_TABLE = [
    "1.1.1.1",
    "8.8.8.8",
    "192.0.1.255",
    "192.0.3.1",
    "172.15.255.255",
    "172.32.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "169.253.255.255",
    "223.255.255.255",
    "198.17.255.255",
    "198.20.0.0",
    "2001:4860:4860::8888",
    "2a00:1450::1",
    "2606:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "64:ff9b::1.1.1.1",
    "2002:808:808::1",
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo: server 65.54.227.120, client 8.8.8.8
]


@pytest.mark.parametrize("text", DENIED_TABLE)
def test_denied_by_default(text: str) -> None:
    verdict = DEFAULT.verdict(_ip(text))
    assert not verdict.allowed, verdict
    assert not DEFAULT.allowed(_ip(text))


@pytest.mark.parametrize("text", ALLOWED_TABLE)
def test_allowed_by_default(text: str) -> None:
    assert DEFAULT.allowed(_ip(text)), DEFAULT.verdict(_ip(text))


def test_reasons_name_what_decided() -> None:
    assert DEFAULT.verdict(V4("169.254.169.254")).reason is Reason.METADATA
    assert DEFAULT.verdict(V4("192.0.0.9")).reason is Reason.ANYCAST
    assert DEFAULT.verdict(V6("4000::1")).reason is Reason.RESERVED_V6
    inner = DEFAULT.verdict(V6("::ffff:127.0.0.1"))
    assert inner.address == V4("127.0.0.1")
    assert inner.reason is Reason.SPECIAL
    assert "embedded in ::ffff:7f00:1" in str(inner)


def test_every_non_global_special_range_is_denied() -> None:
    """Each row IANA marks not globally reachable: its first and last address are denied."""
    for row in SPECIAL_RANGES:
        if row.global_ is not False:
            continue
        net = row.network
        for value in (int(net.network_address), int(net.broadcast_address)):
            address = net.network_address.__class__(value)
            assert not DEFAULT.allowed(address), (row, address)


def test_teredo_client_is_inverted() -> None:
    # RFC 4380 §4: the client's IPv4 is stored with every bit inverted.
    teredo = V6("2001:0:4136:e378:8000:63bf:3fff:fdd2")
    assert V4("192.0.2.45") in DEFAULT.embedded(teredo)
    assert V4("65.54.227.120") in DEFAULT.embedded(teredo)
    assert not DEFAULT.allowed(teredo)  # 192.0.2.45 is documentation space


# --- the coturn bypasses named in the issue --------------------------------------------


@pytest.mark.parametrize("text", ["0.0.0.0", "::", "0.0.0.1", "::ffff:0.0.0.0"])
def test_cve_2020_26262_unspecified_reaches_loopback(text: str) -> None:
    assert not DEFAULT.allowed(_ip(text))


@pytest.mark.parametrize("text", ["::ffff:127.0.0.1", "::ffff:7f00:1", "::ffff:127.1.2.3"])
def test_cve_2026_27624_and_53450_mapped_loopback(text: str) -> None:
    assert not DEFAULT.allowed(_ip(text))
    # even when an operator denied 127.0.0.0/8 explicitly, the mapped form is caught
    assert not PeerPolicy(deny=[ip_network("127.0.0.0/8")]).allowed(_ip(text))


@pytest.mark.parametrize(
    "text", ["2002:7f00:1::", "64:ff9b::7f00:1", "::127.0.0.1", "64:ff9b:1::7f00:1"]
)
def test_cve_2026_73212_6to4_nat64_compatible(text: str) -> None:
    assert not DEFAULT.allowed(_ip(text))


def test_cve_2026_73212_configured_and_discovered_nat64_prefixes() -> None:
    for prefix_text in ("2001:db8:64::/96", "2001:db8:100::/40", "2a00:64::/32", "2a00:1::/56"):
        prefix = IPv6Network(prefix_text)
        policy = DEFAULT.with_nat64_prefixes([prefix])
        loop = rfc6052.synthesize(V4("127.0.0.1"), prefix)
        private = rfc6052.synthesize(V4("192.168.1.1"), prefix)
        public = rfc6052.synthesize(V4("8.8.8.8"), prefix)
        assert not policy.allowed(loop), (prefix, loop)
        assert not policy.allowed(private), (prefix, private)
        if prefix_text.startswith("2a00"):
            assert policy.allowed(public), (prefix, public)
            # without the prefix, the address is plain global unicast
            assert DEFAULT.allowed(loop)


def test_cve_2026_73213_ranges_not_aligned_to_bytes() -> None:
    policy = PeerPolicy(
        deny=[ip_network("8.8.8.0/25"), ip_network("9.9.9.8/31"), ip_network("2a00::/19")]
    )
    assert not policy.allowed(V4("8.8.8.0"))
    assert not policy.allowed(V4("8.8.8.127"))
    assert policy.allowed(V4("8.8.8.128"))
    assert policy.allowed(V4("8.8.7.255"))
    assert not policy.allowed(V4("9.9.9.8"))
    assert not policy.allowed(V4("9.9.9.9"))
    assert policy.allowed(V4("9.9.9.10"))
    assert not policy.allowed(V6("2a00:1fff:ffff::1"))
    assert policy.allowed(V6("2a00:2000::1"))
    # the denied IPv4 range also catches its IPv6 forms
    assert not policy.allowed(V6("::ffff:8.8.8.100"))
    assert policy.allowed(V6("::ffff:8.8.8.200"))
    assert not policy.allowed(V6("64:ff9b::8.8.8.1"))
    assert not policy.allowed(V6("2002:808:801::1"))


# --- explicit lists ---------------------------------------------------------------------


def test_allow_list_opens_loopback_for_a_lab() -> None:
    lab = PeerPolicy(allow=[ip_network("127.0.0.0/8"), ip_network("::1/128")])
    assert lab.allowed(V4("127.0.0.1"))
    assert lab.allowed(V6("::1"))
    assert lab.allowed(V6("::ffff:127.0.0.1"))  # judged as the IPv4 address
    assert lab.verdict(V4("127.0.0.1")).reason is Reason.ALLOW_LIST
    assert not lab.allowed(V4("10.0.0.1"))
    assert not lab.allowed(V6("fe80::1"))


def test_allow_list_wins_over_own_addresses() -> None:
    own = [V4("127.0.0.1"), V6("::1")]
    assert not PeerPolicy(own=own).allowed(V4("127.0.0.1"))
    lab = PeerPolicy(allow=[ip_network("127.0.0.0/8")], own=own)
    assert lab.allowed(V4("127.0.0.1"))


def test_own_addresses_denied_in_every_form() -> None:
    policy = PeerPolicy(own=[V4("8.8.8.8"), V6("2a00:1450::5"), V6("::ffff:1.1.1.1")])
    assert policy.verdict(V4("8.8.8.8")).reason is Reason.OWN_ADDRESS
    assert not policy.allowed(V6("::ffff:8.8.8.8"))
    assert not policy.allowed(V6("64:ff9b::808:808"))
    assert not policy.allowed(V6("2a00:1450::5"))
    assert not policy.allowed(V6("2a00:1450::5%eth0"))
    assert not policy.allowed(V4("1.1.1.1"))
    assert policy.allowed(V4("8.8.4.4"))
    assert not policy.with_own([V4("8.8.4.4")]).allowed(V4("8.8.4.4"))


def test_longest_explicit_prefix_decides() -> None:
    policy = PeerPolicy(
        allow=[ip_network("10.0.0.0/8"), ip_network("8.8.8.8/32")],
        deny=[ip_network("10.1.0.0/16"), ip_network("8.8.8.0/24")],
    )
    assert policy.allowed(V4("10.2.0.1"))
    assert not policy.allowed(V4("10.1.0.1"))
    assert policy.allowed(V4("8.8.8.8"))
    assert not policy.allowed(V4("8.8.8.9"))
    tie = PeerPolicy(allow=[ip_network("10.0.0.0/8")], deny=[ip_network("10.0.0.0/8")])
    assert not tie.allowed(V4("10.0.0.1"))


def test_explicit_deny_of_ipv6_range_sees_the_outer_address() -> None:
    policy = PeerPolicy(deny=[ip_network("2002::/16"), ip_network("64:ff9b::/96")])
    assert not policy.allowed(V6("2002:808:808::1"))
    assert not policy.allowed(V6("64:ff9b::808:808"))
    assert policy.allowed(V4("8.8.8.8"))


def test_allowing_the_outer_range_does_not_open_the_embedded_ipv4() -> None:
    policy = PeerPolicy(allow=[ip_network("2002::/16"), ip_network("64:ff9b::/96")])
    assert not policy.allowed(V6("2002:7f00:1::1"))
    assert not policy.allowed(V6("64:ff9b::7f00:1"))
    assert policy.allowed(V6("2002:808:808::1"))


def test_mapped_network_in_a_list_is_the_ipv4_network() -> None:
    policy = PeerPolicy(allow=[IPv6Network("::ffff:127.0.0.0/104")])
    assert policy.allowed(V4("127.0.0.1"))
    assert policy.allowed(V6("::ffff:127.0.0.1"))


def test_bad_nat64_prefix_refused() -> None:
    with pytest.raises(rfc6052.Nat64PrefixError):
        PeerPolicy(nat64_prefixes=[IPv6Network("2001:db8::/80")])


# --- properties -------------------------------------------------------------------------

DENIED_V4_NETS = [
    IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]


@st.composite
def denied_v4(draw: st.DrawFn) -> IPv4Address:
    net = draw(st.sampled_from(DENIED_V4_NETS))
    return IPv4Address(int(net.network_address) + draw(st.integers(0, net.num_addresses - 1)))


def _embeddings(v4: IPv4Address, rest: int) -> list[IPv6Address]:
    """Every IPv6 form of ``v4`` the default policy knows; ``rest`` fills ignored bits."""
    value = int(v4)
    low80 = rest & ((1 << 80) - 1)
    teredo_middle = rest & ((1 << 64) - 1)  # server IPv4, flags, port
    local96 = int(rfc6052.LOCAL_USE_PREFIX.network_address) | (rest & 0xFFFF_00FFFFFF) << 32
    forms = [
        IPv6Address((0xFFFF << 32) | value),  # mapped
        IPv6Address((0xFFFF0000 << 32) | value),  # translated
        IPv6Address((0x2002 << 112) | (value << 80) | low80),  # 6to4
        IPv6Address((0x20010000 << 96) | (teredo_middle << 32) | (~value & 0xFFFFFFFF)),
        rfc6052.synthesize(v4, rfc6052.WELL_KNOWN_PREFIX),
        rfc6052.synthesize(v4, IPv6Network((local96, 96))),
    ]
    if value > 1:  # :: and ::1 are not IPv4-compatible addresses (RFC 4291 §2.5.5.1)
        forms.append(IPv6Address(value))
    return forms


@st.composite
def nat64_prefixes(draw: st.DrawFn) -> IPv6Network:
    """A valid RFC 6052 prefix of any length anywhere (u-octet zero for /96)."""
    plen = draw(st.sampled_from(rfc6052.PREFIX_LENGTHS))
    bits = draw(st.integers(0, 2**plen - 1)) << (128 - plen)
    if plen == 96:
        bits &= ~(0xFF << 56)
    return IPv6Network((bits, plen))


@given(denied_v4(), nat64_prefixes(), st.integers(0, 2**128 - 1))
def test_configured_prefix_embedding_a_denied_ipv4_is_denied(
    v4: IPv4Address, prefix: IPv6Network, noise: int
) -> None:
    policy = PeerPolicy(nat64_prefixes=[prefix])
    address = rfc6052.synthesize(v4, prefix)
    assert not policy.allowed(address), address
    if prefix.prefixlen < 96:
        # a forged u-octet and suffix do not hide the IPv4 address
        forged = IPv6Address(
            int(address) | (noise & (0xFF << 56)) | (noise & _suffix_mask(prefix.prefixlen))
        )
        assert v4 in policy.embedded(forged), forged
        assert not policy.allowed(forged), forged


def _suffix_mask(plen: int) -> int:
    """The bits after the embedded IPv4 address for a /plen prefix (RFC 6052 §2.2)."""
    end = plen + 32 + (8 if plen <= 64 else 0)  # IPv4 bits plus the u-octet they skip
    return (1 << (128 - end)) - 1


@given(denied_v4(), st.integers(0, 2**128 - 1))
def test_any_address_embedding_a_denied_ipv4_is_denied(v4: IPv4Address, rest: int) -> None:
    assert not DEFAULT.allowed(v4)
    for form in _embeddings(v4, rest):
        assert v4 in DEFAULT.embedded(form), form
        assert not DEFAULT.allowed(form), form


@given(denied_v4(), st.integers(0, 2**128 - 1))
def test_explicit_ipv4_deny_reaches_every_embedding(v4: IPv4Address, rest: int) -> None:
    policy = PeerPolicy(allow=[ip_network("0.0.0.0/0")], deny=[IPv4Network((int(v4), 32))])
    for form in _embeddings(v4, rest):
        assert not policy.allowed(form), form


@given(st.integers(0, 2**32 - 1), st.integers(1, 32))
def test_any_prefix_length_matches_exactly(value: int, plen: int) -> None:
    net = IPv4Network((value >> (32 - plen) << (32 - plen), plen))
    policy = PeerPolicy(deny=[net])
    first, last = int(net.network_address), int(net.broadcast_address)
    inside = IPv4Address(first + (value % net.num_addresses))
    assert not policy.allowed(inside)
    for outside in (first - 1, last + 1):
        if 0 <= outside < 2**32:
            address = IPv4Address(outside)
            assert policy.allowed(address) == DEFAULT.allowed(address)


@given(st.integers(0, 2**128 - 1))
def test_ipv6_embedding_never_allowed_when_its_ipv4_is_not(value: int) -> None:
    address = IPv6Address(value)
    embedded = DEFAULT.embedded(address)
    if any(not DEFAULT.allowed(v4) for v4 in embedded):
        assert not DEFAULT.allowed(address)
