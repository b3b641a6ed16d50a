"""Hypothesis strategies shared by the net/ tests."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, IPv6Network

from hypothesis import strategies as st

from rtc64.net.ranges import SPECIAL_RANGES, SpecialRange

ipv4s = st.integers(0, 2**32 - 1).map(IPv4Address)
ipv6s = st.integers(0, 2**128 - 1).map(IPv6Address)
ports = st.integers(0, 65535)

_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_ALPHA = "abcdefghijklmnopqrstuvwxyz"


@st.composite
def _label(draw: st.DrawFn, first: str) -> str:
    head = draw(st.sampled_from(first))
    if not draw(st.booleans()):
        return head
    middle = draw(st.text(_ALNUM + "-", max_size=10))
    return head + middle + draw(st.sampled_from(_ALNUM))


@st.composite
def domains(draw: st.DrawFn) -> str:
    """RFC 3261 ``hostname``, lower-case, with or without a trailing dot."""
    labels = draw(st.lists(_label(_ALNUM), max_size=4))
    top = draw(_label(_ALPHA))
    dot = "." if draw(st.booleans()) else ""
    return ".".join([*labels, top]) + dot


def in_range(row: SpecialRange) -> st.SearchStrategy[IPv4Address | IPv6Address]:
    """Addresses inside one special range (its edges are likely)."""
    net = row.network
    base = int(net.network_address)
    cls = type(net.network_address)
    return st.integers(0, net.num_addresses - 1).map(lambda i: cls(base + i))


special_addresses = st.sampled_from(SPECIAL_RANGES).flatmap(in_range)
any_address = st.one_of(ipv4s, ipv6s, special_addresses)


@st.composite
def nat64_prefixes(
    draw: st.DrawFn, lengths: tuple[int, ...] = (32, 40, 48, 56, 64, 96)
) -> IPv6Network:
    """Random RFC 6052 prefixes with a zero u-octet."""
    plen = draw(st.sampled_from(lengths))
    value = draw(st.integers(0, 2**128 - 1))
    value &= ((1 << plen) - 1) << (128 - plen)
    value &= ~(0xFF << 56)
    return IPv6Network((value, plen))
