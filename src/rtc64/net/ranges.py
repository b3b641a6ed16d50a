"""Special-purpose address ranges of both families, and what they mean for media.

Rules (IANA IPv4/IPv6 Special-Purpose Address Registries, RFC 6890; RFC 1918, RFC 6598,
RFC 7335, RFC 5737, RFC 3849, RFC 9637, RFC 4193, RFC 4291, RFC 6052, RFC 8215, RFC 3056,
RFC 4380):

- ``SPECIAL_RANGES`` is the one table: ``(network, AddressClass, RFC, globally reachable)``.
  ``classify`` returns every class whose network holds the address; the most specific row
  decides global reachability (``192.0.0.9`` is in the non-global 192.0.0.0/24 but is the
  globally reachable PCP anycast address). Rows whose reachability IANA gives as "N/A"
  (6to4, Teredo) are judged by the IPv4 address they embed.
- An address outside every row is globally reachable for IPv4; for IPv6 only inside
  global unicast 2000::/3 (the rest is reserved by the IETF, RFC 4291 §2.4).
- Multicast and broadcast are never "globally reachable": the helpers here are about
  unicast peers.
- An IPv4-mapped address (``::ffff:a.b.c.d``) never appears on the wire: ``classify``
  reports it as ``IPV4_MAPPED``; the media and reachability helpers judge the IPv4
  address it maps.
- Lookups are a handful of dict probes (one per distinct prefix length, longest first)
  on integer values; no string work.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import NamedTuple

from rtc64.net.address import IPAddress

IPNetwork = IPv4Network | IPv6Network


class AddressClass(enum.Enum):
    """Kinds of special-purpose address. Several rows may share a class."""

    UNSPECIFIED = "unspecified"  # 0.0.0.0/32, ::/128
    THIS_NETWORK = "this-network"  # 0.0.0.0/8 (RFC 791)
    LOOPBACK = "loopback"
    LINK_LOCAL = "link-local"
    PRIVATE = "private"  # RFC 1918
    CGNAT = "cgnat"  # RFC 6598 shared address space
    CLAT = "clat"  # RFC 7335 IPv4 service continuity prefix (464XLAT CLAT)
    IETF_PROTOCOL = "ietf-protocol"  # 192.0.0.0/24, 2001::/23
    DUMMY = "dummy"  # RFC 7600, RFC 9780
    PCP_ANYCAST = "pcp-anycast"
    TURN_ANYCAST = "turn-anycast"
    SRP_ANYCAST = "srp-anycast"  # DNS-SD Service Registration Protocol
    NAT64_DISCOVERY = "nat64-discovery"  # ipv4only.arpa, RFC 7050/8880
    DOCUMENTATION = "documentation"
    AS112 = "as112"
    AMT = "amt"
    SIXTOFOUR_RELAY = "6to4-relay-anycast"  # deprecated, RFC 7526
    BENCHMARKING = "benchmarking"
    MULTICAST = "multicast"
    BROADCAST = "broadcast"  # limited broadcast 255.255.255.255
    RESERVED = "reserved"  # 240.0.0.0/4
    ULA = "ula"
    SITE_LOCAL = "site-local"  # deprecated, RFC 3879
    IPV4_MAPPED = "ipv4-mapped"
    NAT64_WKP = "nat64-well-known"
    NAT64_LOCAL = "nat64-local-use"
    DISCARD = "discard"
    TEREDO = "teredo"
    ORCHID = "orchid"
    DRIP = "drip"
    LISP_EID = "lisp-eid"
    SIXTOFOUR = "6to4"
    SEGMENT_ROUTING = "segment-routing"


class SpecialRange(NamedTuple):
    """One row of ``SPECIAL_RANGES``. ``global_`` is None where IANA says "N/A"."""

    network: IPNetwork
    cls: AddressClass
    rfc: str
    global_: bool | None


def _v4(net: str, cls: AddressClass, rfc: str, global_: bool | None) -> SpecialRange:
    return SpecialRange(IPv4Network(net), cls, rfc, global_)


def _v6(net: str, cls: AddressClass, rfc: str, global_: bool | None) -> SpecialRange:
    return SpecialRange(IPv6Network(net), cls, rfc, global_)


_C = AddressClass
SPECIAL_RANGES: tuple[SpecialRange, ...] = (
    # IPv4 (IANA IPv4 Special-Purpose Address Registry, plus multicast).
    _v4("0.0.0.0/8", _C.THIS_NETWORK, "RFC 791", False),
    _v4("0.0.0.0/32", _C.UNSPECIFIED, "RFC 1122", False),
    _v4("10.0.0.0/8", _C.PRIVATE, "RFC 1918", False),
    _v4("100.64.0.0/10", _C.CGNAT, "RFC 6598", False),
    _v4("127.0.0.0/8", _C.LOOPBACK, "RFC 1122", False),
    _v4("169.254.0.0/16", _C.LINK_LOCAL, "RFC 3927", False),
    _v4("172.16.0.0/12", _C.PRIVATE, "RFC 1918", False),
    _v4("192.0.0.0/24", _C.IETF_PROTOCOL, "RFC 6890", False),
    _v4("192.0.0.0/29", _C.CLAT, "RFC 7335", False),
    _v4("192.0.0.8/32", _C.DUMMY, "RFC 7600", False),
    _v4("192.0.0.9/32", _C.PCP_ANYCAST, "RFC 7723", True),
    _v4("192.0.0.10/32", _C.TURN_ANYCAST, "RFC 8155", True),
    _v4("192.0.0.170/32", _C.NAT64_DISCOVERY, "RFC 8880", False),
    _v4("192.0.0.171/32", _C.NAT64_DISCOVERY, "RFC 8880", False),
    _v4("192.0.2.0/24", _C.DOCUMENTATION, "RFC 5737", False),
    _v4("192.31.196.0/24", _C.AS112, "RFC 7535", True),
    _v4("192.52.193.0/24", _C.AMT, "RFC 7450", True),
    _v4("192.88.99.0/24", _C.SIXTOFOUR_RELAY, "RFC 7526", True),
    _v4("192.168.0.0/16", _C.PRIVATE, "RFC 1918", False),
    _v4("192.175.48.0/24", _C.AS112, "RFC 7534", True),
    _v4("198.18.0.0/15", _C.BENCHMARKING, "RFC 2544", False),
    _v4("198.51.100.0/24", _C.DOCUMENTATION, "RFC 5737", False),
    _v4("203.0.113.0/24", _C.DOCUMENTATION, "RFC 5737", False),
    _v4("224.0.0.0/4", _C.MULTICAST, "RFC 5771", False),
    _v4("240.0.0.0/4", _C.RESERVED, "RFC 1112", False),
    _v4("255.255.255.255/32", _C.BROADCAST, "RFC 919", False),
    # IPv6 (IANA IPv6 Special-Purpose Address Registry, plus the address-space registry).
    _v6("::/128", _C.UNSPECIFIED, "RFC 4291", False),
    _v6("::1/128", _C.LOOPBACK, "RFC 4291", False),
    _v6("::ffff:0:0/96", _C.IPV4_MAPPED, "RFC 4291", False),
    _v6("64:ff9b::/96", _C.NAT64_WKP, "RFC 6052", True),
    _v6("64:ff9b:1::/48", _C.NAT64_LOCAL, "RFC 8215", False),
    _v6("100::/64", _C.DISCARD, "RFC 6666", False),
    _v6("100:0:0:1::/64", _C.DUMMY, "RFC 9780", False),
    _v6("2001::/23", _C.IETF_PROTOCOL, "RFC 2928", False),
    _v6("2001::/32", _C.TEREDO, "RFC 4380", None),
    _v6("2001:1::1/128", _C.PCP_ANYCAST, "RFC 7723", True),
    _v6("2001:1::2/128", _C.TURN_ANYCAST, "RFC 8155", True),
    _v6("2001:1::3/128", _C.SRP_ANYCAST, "RFC 9665", True),
    _v6("2001:2::/48", _C.BENCHMARKING, "RFC 5180", False),
    _v6("2001:3::/32", _C.AMT, "RFC 7450", True),
    _v6("2001:4:112::/48", _C.AS112, "RFC 7535", True),
    _v6("2001:5::/32", _C.LISP_EID, "RFC 7954", True),
    _v6("2001:10::/28", _C.ORCHID, "RFC 4843", False),
    _v6("2001:20::/28", _C.ORCHID, "RFC 7343", True),
    _v6("2001:30::/28", _C.DRIP, "RFC 9374", True),
    _v6("2001:db8::/32", _C.DOCUMENTATION, "RFC 3849", False),
    _v6("2002::/16", _C.SIXTOFOUR, "RFC 3056", None),
    _v6("2620:4f:8000::/48", _C.AS112, "RFC 7534", True),
    _v6("3fff::/20", _C.DOCUMENTATION, "RFC 9637", False),
    _v6("5f00::/16", _C.SEGMENT_ROUTING, "RFC 9602", False),
    _v6("fc00::/7", _C.ULA, "RFC 4193", False),
    _v6("fe80::/10", _C.LINK_LOCAL, "RFC 4291", False),
    _v6("fec0::/10", _C.SITE_LOCAL, "RFC 3879", False),
    _v6("ff00::/8", _C.MULTICAST, "RFC 4291", False),
)

NAT64_WELL_KNOWN_PREFIX = IPv6Network("64:ff9b::/96")
"""RFC 6052 §2.1 Well-Known Prefix."""
NAT64_LOCAL_USE_PREFIX = IPv6Network("64:ff9b:1::/48")
"""RFC 8215 local-use IPv4/IPv6 translation prefix."""
_WKP_HIGH = int(NAT64_WELL_KNOWN_PREFIX.network_address) >> 32
GLOBAL_UNICAST_V6 = IPv6Network("2000::/3")
"""IPv6 global unicast space (RFC 4291 §2.4); the rest is reserved or special."""

MEDIA_UNTRUSTED: frozenset[AddressClass] = frozenset(
    {
        AddressClass.PRIVATE,
        AddressClass.CGNAT,
        AddressClass.CLAT,
        AddressClass.LINK_LOCAL,
        AddressClass.LOOPBACK,
        AddressClass.UNSPECIFIED,
        AddressClass.THIS_NETWORK,
        AddressClass.ULA,
        AddressClass.SITE_LOCAL,
        AddressClass.DUMMY,
        AddressClass.BROADCAST,
        AddressClass.RESERVED,
        AddressClass.DISCARD,
    }
)
"""Classes that, in SDP, mean "latch on the source address, don't trust the SDP"."""


class _Index:
    """Rows of one family, grouped by prefix length, longest first, keyed by network int."""

    __slots__ = ("levels",)

    def __init__(self, rows: Iterable[SpecialRange], bits: int) -> None:
        by_len: dict[int, dict[int, list[SpecialRange]]] = {}
        for row in rows:
            level = by_len.setdefault(row.network.prefixlen, {})
            level.setdefault(int(row.network.network_address), []).append(row)
        all_ones = (1 << bits) - 1
        self.levels: tuple[tuple[int, dict[int, tuple[SpecialRange, ...]]], ...] = tuple(
            (all_ones ^ (all_ones >> plen), {k: tuple(v) for k, v in level.items()})
            for plen, level in sorted(by_len.items(), reverse=True)
        )

    def lookup(self, value: int) -> tuple[SpecialRange, ...]:
        found: tuple[SpecialRange, ...] = ()
        for mask, level in self.levels:
            rows = level.get(value & mask)
            if rows is not None:
                found += rows
        return found

    def most_specific(self, value: int) -> SpecialRange | None:
        for mask, level in self.levels:
            rows = level.get(value & mask)
            if rows is not None:
                return rows[0]
        return None


_INDEX_V4 = _Index((r for r in SPECIAL_RANGES if r.network.version == 4), 32)
_INDEX_V6 = _Index((r for r in SPECIAL_RANGES if r.network.version == 6), 128)


def special_ranges(addr: IPAddress) -> tuple[SpecialRange, ...]:
    """Every row of ``SPECIAL_RANGES`` holding ``addr``, most specific first."""
    index = _INDEX_V4 if addr.version == 4 else _INDEX_V6
    return index.lookup(int(addr))


def most_specific_range(addr: IPAddress) -> SpecialRange | None:
    """The most specific row holding ``addr`` (for reports: class and RFC), or None."""
    index = _INDEX_V4 if addr.version == 4 else _INDEX_V6
    return index.most_specific(int(addr))


def classify(addr: IPAddress) -> frozenset[AddressClass]:
    """The classes of every special range holding ``addr``; empty for ordinary unicast."""
    return frozenset(row.cls for row in special_ranges(addr))


def _mapped(addr: IPAddress) -> IPAddress:
    if isinstance(addr, IPv6Address):
        v4 = addr.ipv4_mapped
        if v4 is not None:
            return v4
    return addr


def is_globally_reachable(addr: IPAddress) -> bool:
    """True for a unicast address that IANA marks globally reachable.

    The most specific special range decides; 6to4 and Teredo addresses follow the IPv4
    address they embed; IPv4-mapped addresses follow the IPv4 address they map.
    """
    addr = _mapped(addr)
    value = int(addr)
    if addr.version == 4:
        row = _INDEX_V4.most_specific(value)
        return row is None or bool(row.global_)
    row = _INDEX_V6.most_specific(value)
    if row is None:
        return value >> 125 == 0b001  # 2000::/3
    if row.global_ is None:
        v4 = embedded_ipv4(addr)
        return v4 is not None and is_globally_reachable(v4)
    return row.global_


def is_private_or_unusable_for_media(addr: IPAddress) -> bool:
    """True when an SDP address of this kind must not be trusted: latch on the source.

    RFC 1918, CGNAT, CLAT, link-local, loopback, unspecified/"this network", ULA and the
    other ``MEDIA_UNTRUSTED`` classes. An IPv4-mapped address is judged by its IPv4 address.
    """
    return not MEDIA_UNTRUSTED.isdisjoint(classify(_mapped(addr)))


def is_nat64_embedded(addr: IPAddress, prefixes: Iterable[IPv6Network] = ()) -> bool:
    """True if ``addr`` is inside the well-known, local-use or a configured NAT64 prefix."""
    if not isinstance(addr, IPv6Address):
        return False
    value = int(addr)
    for net in (NAT64_WELL_KNOWN_PREFIX, NAT64_LOCAL_USE_PREFIX, *prefixes):
        if value & int(net.netmask) == int(net.network_address):
            return True
    return False


def embedded_ipv4(addr: IPAddress) -> IPv4Address | None:
    """The IPv4 address an IPv6 address carries, where the format defines it.

    IPv4-mapped (RFC 4291 §2.5.5.2), 6to4 (RFC 3056 §2), Teredo client's public address
    (RFC 4380 §4) and the well-known NAT64 prefix (RFC 6052 §2.2, /96). None otherwise,
    and for IPv4 input. Network-specific NAT64 prefixes need ``rfc6052.extract``.
    """
    if not isinstance(addr, IPv6Address):
        return None
    value = int(addr)
    if value >> 32 == 0xFFFF:  # ::ffff:0:0/96
        return IPv4Address(value & 0xFFFFFFFF)
    if value >> 112 == 0x2002:  # 2002::/16, IPv4 in bits 16..47
        return IPv4Address((value >> 80) & 0xFFFFFFFF)
    if value >> 96 == 0x20010000:  # 2001::/32, client IPv4 inverted in the last 32 bits
        return IPv4Address(~value & 0xFFFFFFFF)
    if value >> 32 == _WKP_HIGH:  # 64:ff9b::/96
        return IPv4Address(value & 0xFFFFFFFF)
    return None
