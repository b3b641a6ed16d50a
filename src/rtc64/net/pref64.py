"""NAT64 prefixes learnt from the network: PREF64 RA options and RFC 7050 answers.

Rules (RFC 8781 §4-§5, RFC 7050 §3, RFC 6052 §2.2, Linux ``include/uapi/linux/rtnetlink.h``
and ``include/net/ndisc.h``):

- PREF64 option: type 38, length 2 (16 octets), a 16-bit field of 13-bit scaled lifetime
  (units of 8 s) and 3-bit PLC (0..5 -> /96, /64, /56, /48, /40, /32), then the highest
  96 bits of the prefix. Bits beyond the prefix length are ignored (RFC 8781 §4); a PLC
  of 6 or 7 or another length makes the option invalid. Lifetime 0 withdraws the prefix.
- The kernel passes RA options it does not handle to userspace as ``RTM_NEWNDUSEROPT``
  (type 68) on group ``RTNLGRP_ND_USEROPT`` (20) when ``accept_ra`` lets it: nlmsghdr,
  ``struct nduseroptmsg`` (family, pad, options length, ifindex, ICMP type and code,
  padding: 16 octets), the raw options, then rtattrs (``NDUSEROPT_SRCADDR`` = 1: the
  router's address). ``parse_netlink`` reads a whole ``recv`` buffer.
- RFC 7050: the AAAA answers for ``ipv4only.arpa`` embed 192.0.0.170 or 192.0.0.171; the
  prefix is found by extracting at every RFC 6052 length (suffix ignored, §2.2). When the
  WKA shows at several positions, the position where the answers hold both 170 and 171
  wins (§3); failing that, the longest prefix.
- Everything here is pure: bytes and answers in, values out. Bad bytes raise
  ``Pref64Error`` naming what is wrong.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Literal

from rtc64.errors import Rtc64Error
from rtc64.net import rfc6052

ND_OPT_PREF64 = 38
RTM_NEWNDUSEROPT = 68
RTNLGRP_ND_USEROPT = 20
NDUSEROPT_SRCADDR = 1
ICMPV6_ROUTER_ADVERTISEMENT = 134
AF_INET6 = 10
IPV4ONLY_ARPA = "ipv4only.arpa"
WELL_KNOWN_IPV4 = (IPv4Address("192.0.0.170"), IPv4Address("192.0.0.171"))

PLC_LENGTHS = (96, 64, 56, 48, 40, 32)
_NLMSGHDR = struct.Struct("=IHHII")
_NDUSEROPTMSG = struct.Struct("=BBHiBBHI")
_RTATTR = struct.Struct("=HH")

Source = Literal["config", "rfc7050", "pref64"]


class Pref64Error(Rtc64Error, ValueError):
    """A PREF64 option or netlink message is malformed; the message says how."""


@dataclass(frozen=True, slots=True)
class Nat64Prefix:
    """A NAT64 prefix and where it came from; ``lifetime`` in seconds if the source says."""

    prefix: IPv6Network
    source: Source
    lifetime: float | None = None
    """PREF64: the option's lifetime; RFC 7050: the DNS TTL of the answer (§5)."""
    interface: str | None = None

    @property
    def withdrawn(self) -> bool:
        """A PREF64 lifetime of 0 withdraws the prefix (RFC 8781 §4). A DNS TTL of 0 is a
        valid answer that must not be cached: the prefix is usable, just ask again."""
        return self.source == "pref64" and self.lifetime == 0


@dataclass(frozen=True, slots=True)
class Pref64Option:
    """A decoded PREF64 option (RFC 8781 §4)."""

    prefix: IPv6Network
    lifetime: int


@dataclass(frozen=True, slots=True)
class NdUserOpt:
    """One ``RTM_NEWNDUSEROPT`` message: the options of an RA seen on ``ifindex``."""

    ifindex: int
    icmp_type: int
    icmp_code: int
    options: bytes
    router: IPv6Address | None


def encode_pref64(prefix: IPv6Network, lifetime: int) -> bytes:
    """The PREF64 option for ``prefix`` (lifetime rounded up to 8 s units, max 65528)."""
    if prefix.prefixlen not in PLC_LENGTHS:
        raise Pref64Error(f"PREF64 cannot carry /{prefix.prefixlen}; use one of {PLC_LENGTHS}")
    scaled = min((lifetime + 7) // 8, 0x1FFF)
    field = (scaled << 3) | PLC_LENGTHS.index(prefix.prefixlen)
    return struct.pack("!BBH", ND_OPT_PREF64, 2, field) + prefix.network_address.packed[:12]


def decode_pref64(option: bytes) -> Pref64Option:
    """Decode one PREF64 option (type, length and all 16 octets)."""
    if len(option) < 2 or option[0] != ND_OPT_PREF64:
        raise Pref64Error(f"not a PREF64 option (type {option[:1].hex() or 'missing'})")
    if option[1] != 2 or len(option) != 16:
        raise Pref64Error(f"PREF64 option length {option[1]} (x8 octets) is not 2 (RFC 8781 §4)")
    (field,) = struct.unpack_from("!H", option, 2)
    plc = field & 0x7
    if plc >= len(PLC_LENGTHS):
        raise Pref64Error(f"PREF64 prefix length code {plc} is not 0-5 (RFC 8781 §4)")
    length = PLC_LENGTHS[plc]
    value = int.from_bytes(option[4:16] + bytes(4), "big")
    mask = ((1 << length) - 1) << (128 - length)
    prefix = IPv6Network((value & mask, length))
    return Pref64Option(prefix, (field >> 3) * 8)


def iter_options(options: bytes) -> Iterable[bytes]:
    """The ND options in ``options`` (RFC 4861 §4.6: type, length in 8-octet units)."""
    offset = 0
    while offset + 2 <= len(options):
        size = options[offset + 1] * 8
        if size == 0 or offset + size > len(options):
            raise Pref64Error(f"ND option at offset {offset} has a bad length {size}")
        yield options[offset : offset + size]
        offset += size


def pref64_options(msg: NdUserOpt) -> list[Pref64Option]:
    """The valid PREF64 options of a Router Advertisement; invalid ones are skipped."""
    if msg.icmp_type != ICMPV6_ROUTER_ADVERTISEMENT:
        return []
    found: list[Pref64Option] = []
    for option in iter_options(msg.options):
        if option[0] == ND_OPT_PREF64:
            try:
                found.append(decode_pref64(option))
            except Pref64Error:
                continue  # RFC 8781 §4: a receiver ignores an invalid option
    return found


def parse_netlink(data: bytes) -> list[NdUserOpt]:
    """The ``RTM_NEWNDUSEROPT`` messages in one netlink datagram (others are skipped)."""
    out: list[NdUserOpt] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, msg_type, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise Pref64Error(f"netlink message at offset {offset} has a bad length {length}")
        if msg_type == RTM_NEWNDUSEROPT:
            out.append(parse_nduseropt(data[offset + _NLMSGHDR.size : offset + length]))
        offset += _align4(length)
    return out


def parse_nduseropt(body: bytes) -> NdUserOpt:
    """Decode ``struct nduseroptmsg``, its options and its ``NDUSEROPT_SRCADDR``."""
    if len(body) < _NDUSEROPTMSG.size:
        raise Pref64Error(f"nduseroptmsg of {len(body)} octets is shorter than 16")
    family, _, opts_len, ifindex, icmp_type, icmp_code, _, _ = _NDUSEROPTMSG.unpack_from(body)
    if family != AF_INET6:
        raise Pref64Error(f"nduseroptmsg family {family} is not AF_INET6")
    end = _NDUSEROPTMSG.size + opts_len
    if end > len(body):
        raise Pref64Error(f"nduseroptmsg options length {opts_len} overruns the message")
    options = body[_NDUSEROPTMSG.size : end]
    router: IPv6Address | None = None
    offset = _align4(end)
    while offset + _RTATTR.size <= len(body):
        rta_len, rta_type = _RTATTR.unpack_from(body, offset)
        if rta_len < _RTATTR.size or offset + rta_len > len(body):
            raise Pref64Error(f"rtattr at offset {offset} has a bad length {rta_len}")
        if rta_type == NDUSEROPT_SRCADDR and rta_len == _RTATTR.size + 16:
            router = IPv6Address(body[offset + _RTATTR.size : offset + rta_len])
        offset += _align4(rta_len)
    return NdUserOpt(ifindex, icmp_type, icmp_code, options, router)


def build_nduseropt(ifindex: int, options: bytes, router: IPv6Address | None = None) -> bytes:
    """A netlink ``RTM_NEWNDUSEROPT`` message as the kernel sends it (for tests and fakes)."""
    body = _NDUSEROPTMSG.pack(AF_INET6, 0, len(options), ifindex, 134, 0, 0, 0) + options
    body += bytes(_align4(len(body)) - len(body))
    if router is not None:
        body += _RTATTR.pack(_RTATTR.size + 16, NDUSEROPT_SRCADDR) + router.packed
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_NEWNDUSEROPT, 0, 0, 0) + body


def rfc7050_prefixes(answers: Iterable[IPv6Address]) -> list[IPv6Network]:
    """NAT64 prefixes found in the AAAA answers for ``ipv4only.arpa`` (RFC 7050 §3)."""
    per_address = [_wka_positions(a) for a in answers]
    seen: dict[IPv6Network, set[IPv4Address]] = {}
    for found in per_address:
        for prefix, wka in found.items():
            seen.setdefault(prefix, set()).add(wka)
    out: list[IPv6Network] = []
    for found in per_address:
        candidates = list(found)
        if len(candidates) > 1:
            # §3: the other well-known address shows which position is the real one.
            candidates = [p for p in candidates if len(seen[p]) == 2] or candidates
        if candidates:
            best = max(candidates, key=lambda p: p.prefixlen)
            if best not in out:
                out.append(best)
    return out


def _wka_positions(address: IPv6Address) -> dict[IPv6Network, IPv4Address]:
    """Prefixes of every RFC 6052 length under which ``address`` embeds a WKA."""
    found: dict[IPv6Network, IPv4Address] = {}
    for length in PLC_LENGTHS:
        prefix = IPv6Network((int(address) >> (128 - length) << (128 - length), length))
        try:
            embedded = rfc6052.extract(address, prefix)
        except rfc6052.Rfc6052Error:
            continue  # u-octet set, or a /96 prefix with bits 64-71 set
        if embedded in WELL_KNOWN_IPV4:
            found[prefix] = embedded
    return found


def _align4(n: int) -> int:
    return (n + 3) & ~3
