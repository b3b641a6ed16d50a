"""CLAT addressing: instance slots in 192.0.0.0/29 and the CLAT's IPv6 address policy.

Rules (RFC 7335, RFC 6877 §6.3, RFC 6724 §5 rule 8 and §10.6, RFC 3021, RFC 4862 §5.4,
draft-ietf-v6ops-claton §4):

- 192.0.0.0/29 is split into four /31 point-to-point pairs (RFC 3021): slot ``i`` gives the
  CLAT side ``192.0.0.(2i)`` and the host side ``192.0.0.(2i+1)``; at most ``MAX_SLOTS``
  instances. Slots are handed out lowest first, so names and addresses are deterministic.
- The CLAT needs an IPv6 address of its own (RFC 6877 §6.3 "dedicated IPv6 prefix or
  address"): from the on-link SLAAC prefix of the uplink (a /64 global or ULA address of
  the host, not deprecated), an interface identifier derived from the interface name and
  the slot (stable across restarts), checked by DAD before use.
- A link that gives only a /128 (DHCPv6 IA_NA, a static address, no /64) cannot carry a
  dedicated address: the CLAT then SHARES the host's address (RFC 6877 §6.3 "if the CLAT
  does not have a dedicated IPv6 prefix"): the translator maps to an internal address
  (``internal_address``, from a ULA kept for this) and the host rewrites it to the shared
  address with a stateful SNAT of its own (the engine's nftables table).
- Source prefix choice: GUA over ULA, then the longest common prefix with the PLAT prefix
  (RFC 6724 rule 8 spirit), then the numerically lowest, for determinism.
- Pure: values in, values out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Interface, IPv6Network

CLAT_RANGE = IPv4Network("192.0.0.0/29")
MAX_SLOTS = 4
ULA = IPv6Network("fc00::/7")
GUA = IPv6Network("2000::/3")
INTERNAL_V6 = IPv6Network("fdc1:a764:464::/48")
"""ULA (RFC 4193, random-looking global ID) for the translators' internal addresses in the
shared-address policy; never seen outside the host."""


@dataclass(frozen=True, slots=True)
class Slot:
    """One instance's place in 192.0.0.0/29: a /31 pair and deterministic names."""

    index: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < MAX_SLOTS:
            raise ValueError(f"CLAT slot {self.index} out of range 0..{MAX_SLOTS - 1}")

    @property
    def clat_v4(self) -> IPv4Address:
        """The translator's side of the pair (the host's IPv4 next hop)."""
        return CLAT_RANGE.network_address + 2 * self.index

    @property
    def host_v4(self) -> IPv4Address:
        """The host's IPv4 address: the source every IPv4 socket on the host uses."""
        return CLAT_RANGE.network_address + 2 * self.index + 1

    @property
    def namespace(self) -> str:
        return f"rtc64-clat{self.index}"

    @property
    def host_veth(self) -> str:
        return f"r64clat{self.index}"

    @property
    def ns_veth(self) -> str:
        return f"r64clatp{self.index}"

    @property
    def uplink(self) -> str:
        """The macvlan on the uplink, moved into the namespace."""
        return f"r64clatv{self.index}"

    @property
    def tun(self) -> str:
        return f"r64clatt{self.index}"


def free_slot(used: Iterable[int]) -> Slot | None:
    """The lowest slot not in ``used``, or None when 192.0.0.0/29 is full."""
    taken = set(used)
    for index in range(MAX_SLOTS):
        if index not in taken:
            return Slot(index)
    return None


def _rank(address: IPv6Interface, plat: IPv6Network) -> tuple[int, int, int]:
    is_gua = address.ip in GUA
    common = 128 - (int(address.ip) ^ int(plat.network_address)).bit_length()
    return (0 if is_gua else 1, -common, int(address.network.network_address))


def usable_source(address: IPv6Interface) -> bool:
    """A host address a CLAT address can be derived from: a /64 global or ULA prefix."""
    return address.network.prefixlen == 64 and (address.ip in GUA or address.ip in ULA)


def internal_address(slot: Slot) -> IPv6Address:
    """The translator's internal IPv6 address in the shared-address policy (per slot)."""
    return INTERNAL_V6.network_address + (slot.index << 64) + 0x64


def shareable(address: IPv6Interface) -> bool:
    """A host address the CLAT may share: global or ULA, on no /64 (a /128 lease)."""
    return address.network.prefixlen != 64 and (address.ip in GUA or address.ip in ULA)


def choose_shared(
    addresses: Iterable[IPv6Interface], plat: IPv6Network
) -> tuple[IPv6Address | None, str]:
    """The host address to share when no /64 is on the link, and why (for the log)."""
    candidates = [a for a in addresses if shareable(a) and a.ip not in INTERNAL_V6]
    if not candidates:
        return None, "no global or ULA IPv6 address on the link (only link-local)"
    best = min(candidates, key=lambda a: _rank(a, plat))
    kind = "GUA" if best.ip in GUA else "ULA"
    return best.ip, (
        f"shared {kind} address {best.ip} (the link gives no /64 for a dedicated one): "
        "the translator's internal address is rewritten to it by rtc64's own nftables SNAT"
    )


def choose_prefix(
    addresses: Iterable[IPv6Interface], plat: IPv6Network
) -> tuple[IPv6Network | None, str]:
    """The SLAAC prefix to take the CLAT address from, and why (for the log)."""
    candidates = [a for a in addresses if usable_source(a)]
    if not candidates:
        return None, "no /64 global or ULA prefix on the link (only /128 or link-local)"
    best = min(candidates, key=lambda a: _rank(a, plat))
    kind = "GUA" if best.ip in GUA else "ULA"
    others = len({a.network for a in candidates}) - 1
    why = f"{kind} prefix {best.network}"
    if others:
        why += f" (GUA over ULA, longest match to {plat}, among {others + 1})"
    return best.network, why


def clat_address(prefix: IPv6Network, ifname: str, slot: Slot, attempt: int = 0) -> IPv6Address:
    """A stable interface identifier under ``prefix`` for this link and slot; ``attempt``
    moves to another one after a DAD failure (RFC 4862 §5.4.5)."""
    seed = f"rtc64-clat/{ifname}/{slot.index}/{attempt}".encode()
    iid = int.from_bytes(hashlib.sha256(seed).digest()[:8], "big")
    iid &= ~(0x02 << 56)  # universal/local bit clear: a locally made identifier
    if iid in (0, 1) or iid >> 8 == 0xFDFFFFFFFFFFFF:  # subnet anycast, RFC 5453 reserved
        iid ^= 0x4000
    return IPv6Address(int(prefix.network_address) | iid)
