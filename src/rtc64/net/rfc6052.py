"""IPv4-embedded IPv6 addresses (RFC 6052): NAT64/DNS64 address synthesis and extraction.

Rules (RFC 6052 §2.1, §2.2, §2.3, §3.1; RFC 8215):

- A prefix is 32, 40, 48, 56, 64 or 96 bits long (§2.2). The IPv4 address fills the 32 bits
  after the prefix, skipping bits 64..71 (the "u" octet), which MUST be zero; the bits
  after the IPv4 address (the suffix) are written as zero and ignored when reading.
- A /96 prefix carries bits 64..71 itself: ``validate_prefix`` refuses one where they are
  not zero. Other lengths, IPv4 networks and prefixes with host bits set are refused too.
- The Well-Known Prefix 64:ff9b::/96 MUST NOT embed non-global IPv4 addresses (§3.1, e.g.
  RFC 1918 or documentation space); ``wkp_allows`` says whether it may (tayga refuses
  such translations). ``synthesize``/``extract`` enforce it only with ``strict=True``.
- Errors derive from ``ValueError`` and ``Rtc64Error`` and name the bad value and the
  expected form.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, IPv6Network

from rtc64.errors import Rtc64Error
from rtc64.net.ranges import NAT64_LOCAL_USE_PREFIX, NAT64_WELL_KNOWN_PREFIX, is_globally_reachable

WELL_KNOWN_PREFIX: IPv6Network = NAT64_WELL_KNOWN_PREFIX
"""64:ff9b::/96 (RFC 6052 §2.1)."""
LOCAL_USE_PREFIX: IPv6Network = NAT64_LOCAL_USE_PREFIX
"""64:ff9b:1::/48 (RFC 8215): a local-use range from which /96 (or shorter) prefixes are cut."""

PREFIX_LENGTHS: tuple[int, ...] = (32, 40, 48, 56, 64, 96)
EXPECTED_PREFIX = (
    "an IPv6 prefix of length 32, 40, 48, 56, 64 or 96 with no bits set after the length "
    "and, for /96, bits 64-71 zero (e.g. 64:ff9b::/96 or 2001:db8:122::/48)"
)

# prefix length -> number of IPv4 bits before the u-octet (the rest follow it).
_BITS_BEFORE_U = {32: 32, 40: 24, 48: 16, 56: 8, 64: 0}
_U_OCTET_MASK = 0xFF << 56  # bits 64..71 of the 128-bit address
_V4_MASK = 0xFFFFFFFF


class Rfc6052Error(Rtc64Error, ValueError):
    """An RFC 6052 prefix or address is not usable; the message says what and why."""


class Nat64PrefixError(Rfc6052Error):
    """A NAT64 prefix is malformed or of a length RFC 6052 does not define."""


class Nat64AddressError(Rfc6052Error):
    """An address cannot be synthesised or extracted with the given prefix."""


def parse_prefix(text: str) -> IPv6Network:
    """Parse and validate a prefix written like ``64:ff9b::/96``."""
    s = text.strip()
    addr, slash, length = s.partition("/")
    if not slash or not length.isascii() or not length.isdigit() or "%" in addr:
        raise Nat64PrefixError(f"bad NAT64 prefix {text!r}: expected {EXPECTED_PREFIX}")
    try:
        net = IPv6Network(s)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            loose = IPv6Network(s, strict=False)
            raise Nat64PrefixError(
                f"bad NAT64 prefix {text!r}: bits set after /{loose.prefixlen} "
                f"(did you mean {loose}?); expected {EXPECTED_PREFIX}"
            ) from None
        raise Nat64PrefixError(f"bad NAT64 prefix {text!r}: expected {EXPECTED_PREFIX}") from None
    return validate_prefix(net)


def validate_prefix(prefix: IPv6Network) -> IPv6Network:
    """Return ``prefix`` if RFC 6052 allows it, else raise ``Nat64PrefixError``."""
    if not isinstance(prefix, IPv6Network):
        raise Nat64PrefixError(f"bad NAT64 prefix {prefix!r}: expected {EXPECTED_PREFIX}")
    if prefix.prefixlen not in PREFIX_LENGTHS:
        raise Nat64PrefixError(
            f"bad NAT64 prefix {prefix}: length /{prefix.prefixlen} is not one of "
            f"/32, /40, /48, /56, /64, /96 (RFC 6052 §2.2)"
        )
    if int(prefix.network_address) & _U_OCTET_MASK:
        raise Nat64PrefixError(
            f"bad NAT64 prefix {prefix}: bits 64-71 (the u-octet, "
            f"0x{(int(prefix.network_address) >> 56) & 0xFF:02x}) must be zero "
            f"(RFC 6052 §2.2)"
        )
    return prefix


def wkp_allows(ipv4: IPv4Address) -> bool:
    """May ``ipv4`` be embedded in the Well-Known Prefix? Only if globally reachable (§3.1)."""
    return is_globally_reachable(ipv4)


def _check_wkp(ipv4: IPv4Address, prefix: IPv6Network) -> None:
    if prefix == WELL_KNOWN_PREFIX and not wkp_allows(ipv4):
        raise Nat64AddressError(
            f"{ipv4} is not a global IPv4 address: the well-known prefix {prefix} must not "
            f"embed it (RFC 6052 §3.1); use a network-specific prefix"
        )


def synthesize(
    ipv4: IPv4Address, prefix: IPv6Network = WELL_KNOWN_PREFIX, *, strict: bool = False
) -> IPv6Address:
    """The IPv6 address that embeds ``ipv4`` under ``prefix`` (RFC 6052 §2.2).

    With ``strict``, refuse a non-global ``ipv4`` under the Well-Known Prefix (§3.1).
    """
    validate_prefix(prefix)
    if not isinstance(ipv4, IPv4Address):
        raise Nat64AddressError(f"cannot embed {ipv4!r}: expected an IPv4 address")
    if strict:
        _check_wkp(ipv4, prefix)
    base = int(prefix.network_address)
    v4 = int(ipv4)
    plen = prefix.prefixlen
    if plen == 96:
        return IPv6Address(base | v4)
    before = _BITS_BEFORE_U[plen]
    after = 32 - before
    high = v4 >> after  # ends at bit 63
    low = v4 & ((1 << after) - 1)  # starts at bit 72
    return IPv6Address(base | (high << 64) | (low << (56 - after)))


def extract(
    ipv6: IPv6Address, prefix: IPv6Network = WELL_KNOWN_PREFIX, *, strict: bool = False
) -> IPv4Address:
    """The IPv4 address embedded in ``ipv6`` under ``prefix`` (RFC 6052 §2.3).

    Raises ``Nat64AddressError`` if ``ipv6`` is outside ``prefix`` or its u-octet is not
    zero. With ``strict``, also for a non-global IPv4 under the Well-Known Prefix (§3.1).
    """
    validate_prefix(prefix)
    if not isinstance(ipv6, IPv6Address):
        raise Nat64AddressError(f"cannot extract from {ipv6!r}: expected an IPv6 address")
    value = int(ipv6)
    plen = prefix.prefixlen
    if value & int(prefix.netmask) != int(prefix.network_address):
        raise Nat64AddressError(f"{ipv6} is not inside the NAT64 prefix {prefix}")
    if value & _U_OCTET_MASK:
        raise Nat64AddressError(
            f"{ipv6} has bits 64-71 (the u-octet) set; RFC 6052 §2.2 requires zero"
        )
    if plen == 96:
        ipv4 = IPv4Address(value & _V4_MASK)
    else:
        before = _BITS_BEFORE_U[plen]
        after = 32 - before
        high = (value >> 64) & ((1 << before) - 1)
        low = (value >> (56 - after)) & ((1 << after) - 1)
        ipv4 = IPv4Address((high << after) | low)
    if strict:
        _check_wkp(ipv4, prefix)
    return ipv4
