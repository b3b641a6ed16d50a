"""Peer policy: which peer addresses a TURN allocation may relay to. Deny by default.

Rules (RFC 8656 §21.3 "the server may restrict peers"; IANA special-purpose registries via
``net.ranges.SPECIAL_RANGES``; RFC 4291 §2.5.5, RFC 2765 §2.1, RFC 6052 §2.2, RFC 8215,
RFC 3056 §2, RFC 4380 §4):

- Pure: addresses in, a verdict out; ranges compare as prefixes of integers (any prefix
  length: a /25 is a /25, never rounded to bytes, CVE-2026-73213).
- A peer is judged through every address it stands for: an IPv6 address that embeds an
  IPv4 address -- IPv4-mapped ``::ffff:0:0/96``, IPv4-translated ``::ffff:0:0:0/96``,
  IPv4-compatible ``::/96``, NAT64 ``64:ff9b::/96`` and ``64:ff9b:1::/48`` (read as /96
  prefixes cut from it, the common use; other lengths come configured or discovered),
  configured and discovered NAT64 prefixes (any RFC 6052 length, the u-octet not
  trusted to be zero), 6to4 ``2002::/16``, Teredo
  ``2001::/32`` (server and inverted client address) -- is judged as that IPv4 address
  (CVE-2020-26262, CVE-2026-27624, CVE-2026-53450, CVE-2026-73212). Its IPv6 class does
  not decide; the allow- and deny-lists still see the IPv6 address too. Every address
  must pass.
- Built-in denies: every special range IANA marks not globally reachable (unspecified,
  0.0.0.0/8, loopback, link-local and 169.254.169.254, RFC 1918, CGNAT, ULA, site-local,
  multicast, broadcast, documentation, benchmarking, reserved...), anycast service
  addresses (PCP, TURN, SRP, AS112, AMT, 6to4 relay: they reach the server's own
  network), IPv6 outside global unicast 2000::/3, and the server's own listener and
  relay addresses.
- Explicit lists (operator's): the longest matching prefix of the allow- and deny-lists
  decides (a tie denies); an address no list names falls to the built-in rules. So
  ``allow 127.0.0.0/8`` opens loopback for a lab, ``deny 203.0.113.0/25`` adds a range,
  and ``allow 10.0.0.0/8`` + ``deny 10.1.0.0/16`` carves a hole.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from rtc64.net import rfc6052
from rtc64.net.address import IPAddress
from rtc64.net.ranges import (
    NAT64_LOCAL_USE_PREFIX,
    NAT64_WELL_KNOWN_PREFIX,
    AddressClass,
    most_specific_range,
)

IPNetwork = IPv4Network | IPv6Network

ANYCAST_CLASSES: frozenset[AddressClass] = frozenset(
    {
        AddressClass.PCP_ANYCAST,
        AddressClass.TURN_ANYCAST,
        AddressClass.SRP_ANYCAST,
        AddressClass.AS112,
        AddressClass.AMT,
        AddressClass.SIXTOFOUR_RELAY,
    }
)
"""Globally reachable per IANA, but anycast: the nearest instance is the server's own
network (its CPE's PCP server, another TURN server), never a peer."""

METADATA_ADDRESS = IPv4Address("169.254.169.254")
"""Cloud instance metadata (inside link-local; named for the verdict's reason)."""

_V4_MASK = 0xFFFFFFFF
_U_OCTET_MASK = 0xFF << 56
_GLOBAL_UNICAST_HIGH = 0b001  # 2000::/3


class Reason(enum.Enum):
    """Why a verdict went the way it did (for logs, counters and tests)."""

    ALLOWED = "allowed"
    ALLOW_LIST = "allow-list"
    DENY_LIST = "deny-list"
    SPECIAL = "special-purpose range"
    ANYCAST = "anycast service address"
    METADATA = "cloud metadata address"
    RESERVED_V6 = "outside IPv6 global unicast"
    OWN_ADDRESS = "the server's own address"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision on a peer: ``address`` is the (possibly embedded) one that decided."""

    allowed: bool
    reason: Reason
    address: IPAddress
    detail: str = ""

    def __str__(self) -> str:
        word = "allowed" if self.allowed else "denied"
        extra = f" ({self.detail})" if self.detail else ""
        return f"{word}: {self.address} {self.reason.value}{extra}"


class _Prefixes:
    """Explicit allow/deny prefixes of one family, longest first, keyed by network int."""

    __slots__ = ("levels",)

    def __init__(self, rules: Iterable[tuple[IPNetwork, bool]], bits: int) -> None:
        by_len: dict[int, dict[int, tuple[bool, IPNetwork]]] = {}
        for net, allow in rules:
            level = by_len.setdefault(net.prefixlen, {})
            key = int(net.network_address)
            seen = level.get(key)
            # The same prefix in both lists: deny wins.
            if seen is None or seen[0]:
                level[key] = (allow, net)
        ones = (1 << bits) - 1
        self.levels = tuple(
            (ones ^ (ones >> plen), level) for plen, level in sorted(by_len.items(), reverse=True)
        )

    def match(self, value: int) -> tuple[bool, IPNetwork] | None:
        for mask, level in self.levels:
            found = level.get(value & mask)
            if found is not None:
                return found
        return None


def _normalise(net: IPNetwork) -> IPNetwork:
    """An IPv4-mapped IPv6 network (``::ffff:10.0.0.0/104``) as the IPv4 network it maps."""
    if isinstance(net, IPv6Network) and net.prefixlen >= 96:
        base = int(net.network_address)
        if base >> 32 == 0xFFFF:
            return IPv4Network((base & _V4_MASK, net.prefixlen - 96))
    return net


def _nat64_v4(value: int, plen: int) -> IPv4Address:
    """The IPv4 address at the RFC 6052 position for a /``plen`` prefix; the u-octet and
    suffix are ignored (a translator may not check them: judge what it would reach)."""
    if plen == 96:
        return IPv4Address(value & _V4_MASK)
    prefix = IPv6Network(((value >> (128 - plen)) << (128 - plen), plen))
    return rfc6052.extract(IPv6Address(value & ~_U_OCTET_MASK), prefix)


class PeerPolicy:
    """``allowed(ip)``: may an allocation relay to ``ip``? See the module rules."""

    __slots__ = ("_allow", "_deny", "_explicit4", "_explicit6", "_nat64", "_own")

    def __init__(
        self,
        *,
        allow: Iterable[IPNetwork] = (),
        deny: Iterable[IPNetwork] = (),
        own: Iterable[IPAddress] = (),
        nat64_prefixes: Iterable[IPv6Network] = (),
    ) -> None:
        self._allow = tuple(_normalise(n) for n in allow)
        self._deny = tuple(_normalise(n) for n in deny)
        rules = [(n, True) for n in self._allow] + [(n, False) for n in self._deny]
        self._explicit4 = _Prefixes(((n, a) for n, a in rules if n.version == 4), 32)
        self._explicit6 = _Prefixes(((n, a) for n, a in rules if n.version == 6), 128)
        own_set: set[IPAddress] = set()
        for address in own:
            plain = _plain(address)
            own_set.add(plain)
            if isinstance(plain, IPv6Address) and plain.ipv4_mapped is not None:
                own_set.add(plain.ipv4_mapped)
        self._own = frozenset(own_set)
        prefixes = {NAT64_WELL_KNOWN_PREFIX}
        for prefix in nat64_prefixes:
            prefixes.add(rfc6052.validate_prefix(prefix))
        self._nat64 = tuple(sorted(prefixes, key=lambda p: (p.prefixlen, int(p.network_address))))

    @property
    def nat64_prefixes(self) -> tuple[IPv6Network, ...]:
        """The NAT64 prefixes whose addresses are judged by their IPv4 (WKP included)."""
        return self._nat64

    def with_nat64_prefixes(self, prefixes: Iterable[IPv6Network]) -> PeerPolicy:
        """The same policy with these configured/discovered NAT64 prefixes (PREF64, RFC 7050)."""
        return PeerPolicy(
            allow=self._allow, deny=self._deny, own=self._own, nat64_prefixes=prefixes
        )

    def with_own(self, addresses: Iterable[IPAddress]) -> PeerPolicy:
        """The same policy with more own addresses (relays bound after start)."""
        return PeerPolicy(
            allow=self._allow,
            deny=self._deny,
            own=(*self._own, *addresses),
            nat64_prefixes=self._nat64,
        )

    def allowed(self, ip: IPAddress) -> bool:
        """True if ``ip`` and every IPv4 address it embeds may be relayed to."""
        return self.verdict(ip).allowed

    def verdict(self, ip: IPAddress) -> Verdict:
        """The decision with its reason; the first address that fails decides."""
        ip = _plain(ip)
        embedded = self.embedded(ip)
        outer = self._judge(ip, builtin=not embedded)
        if not outer.allowed:
            return outer
        for v4 in embedded:
            inner = self._judge(v4, builtin=True)
            if not inner.allowed:
                return Verdict(False, inner.reason, v4, f"embedded in {ip}")
        return outer

    def embedded(self, ip: IPAddress) -> tuple[IPv4Address, ...]:
        """Every IPv4 address ``ip`` stands for (empty for IPv4 and plain IPv6)."""
        if not isinstance(ip, IPv6Address):
            return ()
        value = int(ip)
        high96 = value >> 32
        found: list[IPv4Address] = []
        if high96 in (0xFFFF, 0xFFFF0000) or (high96 == 0 and value > 1):
            # IPv4-mapped, IPv4-translated (SIIT), IPv4-compatible (not :: and ::1)
            found.append(IPv4Address(value & _V4_MASK))
        if value >> 112 == 0x2002:  # 6to4: IPv4 in bits 16..47
            found.append(IPv4Address((value >> 80) & _V4_MASK))
        if value >> 96 == 0x20010000:  # Teredo: server, then the inverted client address
            found.append(IPv4Address((value >> 64) & _V4_MASK))
            found.append(IPv4Address(~value & _V4_MASK))
        local = NAT64_LOCAL_USE_PREFIX
        if value & int(local.netmask) == int(local.network_address):
            found.append(IPv4Address(value & _V4_MASK))
        for prefix in self._nat64:
            if value & int(prefix.netmask) == int(prefix.network_address):
                found.append(_nat64_v4(value, prefix.prefixlen))
        return tuple(dict.fromkeys(found))

    def _judge(self, ip: IPAddress, *, builtin: bool) -> Verdict:
        """One address: explicit lists first, then (if ``builtin``) the built-in denies."""
        value = int(ip)
        explicit = (self._explicit4 if ip.version == 4 else self._explicit6).match(value)
        if explicit is not None:
            allow, net = explicit
            return Verdict(allow, Reason.ALLOW_LIST if allow else Reason.DENY_LIST, ip, str(net))
        if not builtin:
            return Verdict(True, Reason.ALLOWED, ip)
        if ip in self._own:
            return Verdict(False, Reason.OWN_ADDRESS, ip)
        if ip == METADATA_ADDRESS:
            return Verdict(False, Reason.METADATA, ip)
        row = most_specific_range(ip)
        if row is not None:
            if row.cls in ANYCAST_CLASSES:
                return Verdict(False, Reason.ANYCAST, ip, f"{row.network} {row.rfc}")
            if not row.global_:
                return Verdict(False, Reason.SPECIAL, ip, f"{row.cls.value} {row.network}")
        elif ip.version == 6 and value >> 125 != _GLOBAL_UNICAST_HIGH:
            return Verdict(False, Reason.RESERVED_V6, ip, "not in 2000::/3")
        return Verdict(True, Reason.ALLOWED, ip)


def _plain(ip: IPAddress) -> IPAddress:
    """``ip`` without an IPv6 zone id (the zone names a link, not a different address)."""
    if isinstance(ip, IPv6Address) and ip.scope_id is not None:
        return IPv6Address(int(ip))
    return ip
