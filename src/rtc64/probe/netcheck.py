"""Network probe verdicts from gathered facts (no I/O): routes, DNS64, PREF64, NAT64, CLAT.

Rules (RFC 6147 DNS64, RFC 7050 discovery, RFC 8781 PREF64, RFC 6877 464XLAT with the
CLAT in 192.0.0.0/29 (RFC 7335), RFC 8925 option 108):

- The host is "IPv6-only" when it has an IPv6 default route and no IPv4 route except a
  CLAT's. On such a host a missing DNS64 fails, a missing PREF64 warns (clients then rely
  on RFC 7050 guessing), a missing CLAT warns (IPv4 literals in SDP and apps break).
- NAT64 works when a TCP connection to the synthesised address of ``--nat64-target``
  succeeds; a refused connection also proves the translator passed it on.
- RFC 8925 (as root): a DHCPDISCOVER asking for option 108 on each up interface; an OFFER
  carrying it passes, an OFFER without it on an IPv6-capable network with NAT64 warns
  (IPv6-mostly could be on), no answer is information, not running as root is skipped.
- Leaks: the source address toward the IPv4 and IPv6 Internet is what a SIP client
  without ICE writes in SDP; private, CGNAT, CLAT or ULA there is a warning, and every
  such interface address is listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from rtc64.net.address import IPAddress
from rtc64.net.ranges import AddressClass, classify, is_private_or_unusable_for_media
from rtc64.probe.verdict import Check, Status, Template

CLAT_NET = IPv4Network("192.0.0.0/29")
_LEAK_CLASSES = {
    AddressClass.PRIVATE,
    AddressClass.CGNAT,
    AddressClass.CLAT,
    AddressClass.ULA,
    AddressClass.SITE_LOCAL,
}


@dataclass(frozen=True, slots=True)
class NetFacts:
    """What the host looks like from inside."""

    v6_source: IPv6Address | None = None
    v4_source: IPv4Address | None = None
    addresses: tuple[IPAddress, ...] = ()
    dns64_prefixes: tuple[IPv6Network, ...] = ()
    dns64_text: str = ""
    pref64: tuple[tuple[IPv6Network, float | None, str | None], ...] = ()
    pref64_listened: float = 0.0
    solicited: tuple[str, ...] = ()
    nat64_target: str = ""
    nat64_result: tuple[str, str, str] | None = None
    """(synthesised address, outcome code ok/refused/error, text) of the NAT64 test."""
    dhcp_tried: tuple[str, ...] | None = None
    """Interfaces a DHCPDISCOVER went out on; None when not tried (not root)."""
    dhcp_offers: tuple[tuple[str, str, int | None], ...] = ()
    """(interface, server, V6ONLY_WAIT or None) per OFFER received."""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def clat(self) -> tuple[IPv4Address, ...]:
        return tuple(a for a in self.addresses if isinstance(a, IPv4Address) and a in CLAT_NET)

    @property
    def native_v4(self) -> bool:
        return self.v4_source is not None and self.v4_source not in CLAT_NET

    @property
    def ipv6_only(self) -> bool:
        return self.v6_source is not None and not self.native_v4

    @property
    def prefixes(self) -> tuple[IPv6Network, ...]:
        return tuple(dict.fromkeys((*self.dns64_prefixes, *(p for p, _, _ in self.pref64))))


def checks(f: NetFacts) -> list[Check]:
    return [
        _route6(f),
        _route4(f),
        _dns64(f),
        _pref64(f),
        _nat64(f),
        _clat(f),
        _leaks(f),
        _option108(f),
    ]


def _route6(f: NetFacts) -> Check:
    make = Template(
        "net.ipv6",
        evidence={"source": str(f.v6_source) if f.v6_source else None},
        family=6,
        reach=True,
    )
    if f.v6_source is None:
        return make(Status.FAIL, "net.no-ipv6-route", "no IPv6 default route")
    return make(Status.PASS, "net.ipv6-default-route", f"IPv6 default route, source {f.v6_source}")


def _route4(f: NetFacts) -> Check:
    make = Template(
        "net.ipv4", family=4, evidence={"source": str(f.v4_source) if f.v4_source else None}
    )
    if f.v4_source is None:
        return make(Status.INFO, "net.ipv4-absent", "no IPv4 route: an IPv6-only host")
    if not f.native_v4:
        return make(
            Status.INFO,
            "net.ipv4-absent",
            f"IPv4 only through a CLAT ({f.v4_source}): an IPv6-only host with 464XLAT",
        )
    return make(Status.INFO, "net.ipv4-present", f"IPv4 route, source {f.v4_source}")


def _dns64(f: NetFacts) -> Check:
    make = Template(
        "net.dns64",
        evidence={"prefixes": [str(p) for p in f.dns64_prefixes], "resolver": f.dns64_text},
    )
    if f.dns64_prefixes:
        shown = ", ".join(map(str, f.dns64_prefixes))
        return make(Status.PASS, "net.dns64", f"DNS64 synthesises with {shown} (RFC 7050)")
    status = Status.FAIL if f.ipv6_only else Status.INFO
    return make(status, "net.no-dns64", f"no DNS64 on this resolver ({f.dns64_text})")


def _pref64(f: NetFacts) -> Check:
    make = Template(
        "net.pref64",
        evidence={
            "prefixes": [
                {"prefix": str(p), "lifetime": life, "interface": ifname}
                for p, life, ifname in f.pref64
            ],
            "listened_seconds": f.pref64_listened,
            "solicited": list(f.solicited),
        },
    )
    if f.pref64:
        shown = ", ".join(f"{p} on {i or '?'}" for p, _, i in f.pref64)
        return make(Status.PASS, "net.pref64", f"PREF64 in router advertisements: {shown}")
    status = Status.WARN if f.ipv6_only else Status.INFO
    return make(
        status,
        "net.no-pref64",
        f"no PREF64 option in router advertisements within {f.pref64_listened:g} s",
    )


def _nat64(f: NetFacts) -> Check:
    make = Template(
        "net.nat64",
        evidence={
            "prefixes": [str(p) for p in f.prefixes],
            "target": f.nat64_target,
            "result": list(f.nat64_result) if f.nat64_result else None,
        },
    )
    if not f.prefixes:
        status = Status.WARN if f.ipv6_only else Status.INFO
        return make(
            status,
            "net.no-nat64",
            "no NAT64 prefix known: IPv4-only services unreachable"
            if f.ipv6_only
            else "no NAT64 prefix known (not needed with native IPv4)",
        )
    if f.nat64_result is None:
        return make(Status.INFO, "net.no-nat64", "NAT64 prefix known, not tested (no route)")
    synth, outcome, text = f.nat64_result
    if outcome in ("ok", "refused"):
        return make(
            Status.PASS,
            "net.nat64-ok",
            f"NAT64 works: {f.nat64_target} reached as {synth} ({text})",
        )
    return make(Status.FAIL, "net.nat64-broken", f"NAT64 prefix known but {synth} fails: {text}")


def _clat(f: NetFacts) -> Check:
    evidence: dict[str, object] = {"clat_addresses": [str(a) for a in f.clat]}
    daemon, idle = f.extra.get("clat_daemon"), f.extra.get("clat_idle")
    if isinstance(daemon, list) and daemon:
        evidence["clat_daemon"] = daemon
    if isinstance(idle, list) and idle:
        evidence["clat_idle"] = idle
    make = Template("net.clat", evidence=evidence)
    if f.clat and isinstance(daemon, list) and daemon:  # run by ``rtc64 clat``: say how
        ours = "; ".join(
            f"{c['ipv4']} on {c['interface']} -> {c['clat_ipv6']} via {c['prefix']} "
            f"(prefix from {c['prefix_source']}, {c.get('policy') or 'dedicated'} address, "
            f"{c['engine']})"
            for c in daemon
        )
        return make(Status.PASS, "net.clat", f"CLAT present, run by rtc64 clat: {ours}")
    if f.clat:
        return make(Status.PASS, "net.clat", f"CLAT present ({', '.join(map(str, f.clat))})")
    why = ""
    if isinstance(idle, list) and idle:  # ``rtc64 clat`` runs but keeps no CLAT up: why
        why = "; rtc64 clat runs but: " + "; ".join(
            f"{c['interface']} {c['state']}: {c['reason']}"
            + (f" ({c['detail']})" if c.get("detail") else "")
            for c in idle
        )
    if f.ipv6_only and f.prefixes:
        return make(
            Status.WARN,
            "net.no-clat",
            f"IPv6-only with NAT64 but no CLAT: IPv4 literals (SDP, apps) fail{why}",
        )
    return make(Status.INFO, "net.no-clat", f"no CLAT address (192.0.0.0/29) on this host{why}")


def leak_candidates(addresses: Sequence[IPAddress]) -> list[str]:
    out = []
    for a in addresses:
        kinds = classify(a) & _LEAK_CLASSES
        if kinds:
            out.append(f"{a} ({', '.join(sorted(k.value for k in kinds))})")
    return out


def _leaks(f: NetFacts) -> Check:
    listed = leak_candidates(f.addresses)
    sources = [a for a in (f.v6_source, f.v4_source) if a is not None]
    leaking = [str(a) for a in sources if is_private_or_unusable_for_media(a)]
    make = Template(
        "net.leaks", evidence={"non_global": listed, "sources": [str(a) for a in sources]}
    )
    if leaking:
        return make(
            Status.WARN,
            "net.leak",
            f"SIP clients without ICE would put {', '.join(leaking)} in SDP",
        )
    if listed:
        return make(Status.INFO, "net.leak", f"non-global addresses here: {', '.join(listed)}")
    return make(Status.PASS, "net.no-leak", "the addresses toward the Internet are global")


def _option108(f: NetFacts) -> Check:
    offers = [{"interface": i, "server": srv, "v6only_wait": w} for i, srv, w in f.dhcp_offers]
    make = Template(
        "net.option108",
        evidence={"interfaces": list(f.dhcp_tried or ()), "offers": offers},
    )
    if f.dhcp_tried is None:
        return make(Status.SKIPPED, "local.not-root", "DHCPv4 option 108 not tested: needs root")
    with_108 = [o for o in f.dhcp_offers if o[2] is not None]
    if with_108:
        ifname, server, wait = with_108[0]
        return make(
            Status.PASS,
            "net.option108",
            f"DHCPv4 server {server} on {ifname} offers IPv6-only preferred "
            f"(option 108, V6ONLY_WAIT {wait} s)",
        )
    if f.dhcp_offers:
        ifname, server, _ = f.dhcp_offers[0]
        ready = f.v6_source is not None and bool(f.prefixes)
        return make(
            Status.WARN if ready else Status.INFO,
            "net.no-option108",
            f"DHCPv4 server {server} on {ifname} does not offer option 108 (RFC 8925)",
        )
    tried = ", ".join(f.dhcp_tried) or "no interface"
    return make(Status.INFO, "net.no-dhcpv4", f"no DHCPv4 server answered on {tried}")
