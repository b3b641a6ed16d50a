"""Per-link CLAT state machine: when a CLAT runs on an uplink, with which prefix.

Rules (RFC 6877 §6.3, RFC 8781 §4-§5, RFC 7050 §3 and §5, RFC 8925 §3.4,
draft-ietf-v6ops-claton §4-§6):

- Inputs: link snapshots (``LinkView``: up, IPv4 addresses and default route, IPv6
  addresses and default router), PREF64 options from RAs (with their lifetime), RFC 7050
  results, DHCPv4 option 108 (IPv6-only preferred), a CLAT run by someone else on the link,
  and the clock as a number. Output: ``decide(now)`` -> ``Want`` (a CLAT should run with
  this prefix) or ``Off`` with the reason, and ``get_timer()``, the next deadline.
- A CLAT runs only when the link is up, has no IPv4 of its own (an address outside
  169.254/16 and 192.0.0.0/29, or an IPv4 default route), or option 108 told us IPv6-only
  is preferred; it has a NAT64 prefix; an IPv6 default router; a /64 to take an address
  from, or else a global/ULA address to share (``addressing``: a /128-only link); and no
  other CLAT (NetworkManager, systemd-networkd, clatd) on it.
- Prefix precedence: PREF64 (RFC 8781 §5 and claton §5: the RA wins), then RFC 7050, then
  the configured prefix. A PREF64 expires at its lifetime; lifetime 0 withdraws it at once.
  An RFC 7050 prefix stays until a new answer replaces it; re-asked after its TTL, but no
  sooner than ``DNS64_MIN_REFRESH`` (a TTL of 0 must not turn into a query flood).
- At most ``MAX_PREF64`` PREF64 prefixes are remembered per link (the oldest RA's goes
  first): forged RAs with ever new prefixes cannot grow memory.
- Option 108 holds for its V6ONLY_WAIT (RFC 8925 §3.4: at least 300 s) and is renewed by
  each DHCP offer carrying it.
- Pure: no clock reads, no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)

from rtc64.net.pref64 import Nat64Prefix
from rtc64.net.rfc6052 import validate_prefix

from .addressing import CLAT_RANGE, choose_prefix, choose_shared

DNS64_MIN_REFRESH = 60.0
MAX_PREF64 = 8
V6ONLY_WAIT_MIN = 300.0
IPV4_LINK_LOCAL = IPv4Network("169.254.0.0/16")


class Reason(enum.Enum):
    """Why no CLAT runs on a link (status and log wording)."""

    LINK_DOWN = "link down"
    IPV4_PRESENT = "IPv4 present on the link"
    NO_NAT64 = "no NAT64 prefix found (no PREF64, no DNS64 answer, none configured)"
    NO_ROUTER = "no IPv6 default router on the link"
    NO_PREFIX = "no global or ULA IPv6 address to take or share a CLAT address from"
    FOREIGN_CLAT = "another CLAT is active on the link"


@dataclass(frozen=True, slots=True)
class LinkView:
    """What netlink says about one link right now."""

    index: int
    name: str
    up: bool
    mtu: int = 1500
    ipv4: tuple[IPv4Interface, ...] = ()
    ipv4_default: bool = False
    ipv6: tuple[IPv6Interface, ...] = ()
    """Usable addresses: not tentative, not deprecated, not ours."""
    router: IPv6Address | None = None


@dataclass(frozen=True, slots=True)
class Want:
    """A CLAT should run on this link."""

    link: LinkView
    prefix: Nat64Prefix
    source: IPv6Network
    """The /64 the CLAT address comes from (the shared address's /128 when shared)."""
    why: str
    shared: IPv6Address | None = None
    """The host address the CLAT shares (a /128-only link), None for a dedicated one."""


@dataclass(frozen=True, slots=True)
class Off:
    reason: Reason
    detail: str = ""


Decision = Want | Off


@dataclass(slots=True)
class LinkState:
    """The CLAT state of one uplink; see the module rules."""

    index: int
    configured: IPv6Network | None = None
    view: LinkView | None = None
    pref64: dict[IPv6Network, float] = field(default_factory=dict)
    """PREF64 prefix -> absolute expiry."""
    pref64_order: list[IPv6Network] = field(default_factory=list)
    dns64: tuple[IPv6Network, ...] = ()
    dns64_ttl: float = 0.0
    dns64_asked: float | None = None
    v6only_until: float | None = None
    foreign: str | None = None

    def observe(self, view: LinkView) -> None:
        if view.index != self.index:
            raise ValueError(f"link {view.index} fed to the state of link {self.index}")
        self.view = view

    def pref64_seen(self, prefix: IPv6Network, lifetime: float, now: float) -> None:
        """A PREF64 option from an RA on this link (RFC 8781)."""
        validate_prefix(prefix)
        if lifetime <= 0:
            self.pref64.pop(prefix, None)
            if prefix in self.pref64_order:
                self.pref64_order.remove(prefix)
            return
        self.pref64[prefix] = now + lifetime
        if prefix in self.pref64_order:
            self.pref64_order.remove(prefix)
        self.pref64_order.append(prefix)  # the latest RA's prefix first in line
        while len(self.pref64_order) > MAX_PREF64:  # a flood of forged RAs stays bounded
            del self.pref64[self.pref64_order.pop(0)]

    def dns64_result(self, prefixes: Sequence[IPv6Network], ttl: float, now: float) -> None:
        """An RFC 7050 answer (possibly empty: no DNS64 on this resolver)."""
        self.dns64 = tuple(prefixes)
        self.dns64_ttl = max(ttl, DNS64_MIN_REFRESH)
        self.dns64_asked = now

    def option108(self, v6only_wait: float, now: float) -> None:
        self.v6only_until = now + max(v6only_wait, V6ONLY_WAIT_MIN)

    def foreign_clat(self, owner: str | None) -> None:
        self.foreign = owner

    def wants_dns64(self, now: float) -> bool:
        """Time to ask (again) for ipv4only.arpa: never asked, or the TTL has passed."""
        return self.dns64_asked is None or now >= self.dns64_asked + self.dns64_ttl

    def get_timer(self) -> float | None:
        deadlines = list(self.pref64.values())
        if self.dns64_asked is not None:
            deadlines.append(self.dns64_asked + self.dns64_ttl)
        if self.v6only_until is not None:
            deadlines.append(self.v6only_until)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        for prefix, expiry in list(self.pref64.items()):
            if expiry <= now:
                self.pref64_seen(prefix, 0, now)
        if self.v6only_until is not None and self.v6only_until <= now:
            self.v6only_until = None

    def current_prefix(self, now: float) -> Nat64Prefix | None:
        live = [p for p in self.pref64_order if self.pref64[p] > now]
        if live:
            prefix = live[-1]
            return Nat64Prefix(prefix, "pref64", self.pref64[prefix] - now)
        if self.dns64:
            return Nat64Prefix(self.dns64[0], "rfc7050", self.dns64_ttl)
        if self.configured is not None:
            return Nat64Prefix(self.configured, "config")
        return None

    def ipv4_present(self, now: float) -> str | None:
        """What IPv4 the link has of its own, or None (option 108 overrides)."""
        view = self.view
        if view is None or (self.v6only_until is not None and now < self.v6only_until):
            return None
        own = [
            a
            for a in view.ipv4
            if a.ip not in IPV4_LINK_LOCAL and a.ip not in CLAT_RANGE and not a.ip.is_loopback
        ]
        if own:
            return f"IPv4 address {own[0]}"
        return "IPv4 default route" if view.ipv4_default else None

    def decide(self, now: float) -> Decision:
        view = self.view
        if view is None or not view.up:
            return Off(Reason.LINK_DOWN)
        if self.foreign is not None:
            return Off(Reason.FOREIGN_CLAT, self.foreign)
        if (v4 := self.ipv4_present(now)) is not None:
            return Off(Reason.IPV4_PRESENT, v4)
        prefix = self.current_prefix(now)
        if prefix is None:
            return Off(Reason.NO_NAT64)
        if view.router is None:
            return Off(Reason.NO_ROUTER)
        source, why = choose_prefix(view.ipv6, prefix.prefix)
        if source is not None:
            return Want(view, prefix, source, why)
        shared, why = choose_shared(view.ipv6, prefix.prefix)
        if shared is None:
            return Off(Reason.NO_PREFIX, why)
        return Want(view, prefix, IPv6Network(shared), why, shared)


def is_clat_v4(address: IPv4Address) -> bool:
    """An address of 192.0.0.0/29: a CLAT's, never to be offered in SDP."""
    return address in CLAT_RANGE
