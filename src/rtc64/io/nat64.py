"""NAT64 prefix discovery: configuration, RFC 7050 (DNS64) and PREF64 (RFC 8781).

Rules (RFC 7050 §3 and §5, RFC 8781 §5-§6, RFC 4861 §6.3.7, LAB-NOTES "NAT64, DNS64"):

- RFC 7050: ask the configured resolver for ``ipv4only.arpa`` AAAA; a DNS64 answers
  with 192.0.0.170/171 embedded, and ``pref64.rfc7050_prefixes`` finds the prefix. The
  answer's TTL is the prefix lifetime (§5). No AAAA means no DNS64 on this path.
- PREF64: the kernel hands RA options it does not use to userspace as
  ``RTM_NEWNDUSEROPT`` on ``RTNLGRP_ND_USEROPT`` (an interface needs ``accept_ra``
  1 without forwarding, or 2). We subscribe on a raw ``AF_NETLINK`` socket first, then
  send a Router Solicitation (ICMPv6 type 133, hop limit 255, to ff02::2) on every up,
  non-loopback interface so routers answer now rather than at their next periodic RA,
  and listen ``listen_ra`` seconds. Sending needs CAP_NET_RAW; without it we only listen.
- Results come in source order config, rfc7050, pref64; the same prefix may appear
  from several sources. A PREF64 lifetime of 0 (withdrawn) is reported as 0
  (``Nat64Prefix.withdrawn``); an RFC 7050 TTL of 0 is a valid answer not to be cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

from rtc64.net.pref64 import (
    IPV4ONLY_ARPA,
    RTNLGRP_ND_USEROPT,
    Nat64Prefix,
    NdUserOpt,
    Pref64Error,
    parse_netlink,
    pref64_options,
    rfc7050_prefixes,
)
from rtc64.net.rfc3263 import Query, RdType, Status

from .resolver import Resolver

__all__ = ["Dns64", "Nat64Prefix", "discover", "discover_report", "listen_pref64", "rfc7050"]

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
ROUTER_SOLICITATION = bytes((133, 0, 0, 0, 0, 0, 0, 0))  # RFC 4861 §4.1, no options
ALL_ROUTERS = "ff02::2"
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8


@dataclass(frozen=True, slots=True)
class Dns64:
    """What the resolver says about ``ipv4only.arpa`` AAAA (the network's DNS64)."""

    status: Status
    addresses: tuple[IPv6Address, ...]
    prefixes: tuple[IPv6Network, ...]
    ttl: float

    @property
    def present(self) -> bool:
        return bool(self.prefixes)

    def describe(self) -> str:
        if self.status.failed:
            return f"unknown: DNS {self.status.text} for {IPV4ONLY_ARPA} AAAA"
        if not self.addresses:
            return f"none: {IPV4ONLY_ARPA} has no AAAA record (no DNS64 on this resolver)"
        shown = ", ".join(str(a) for a in self.addresses)
        if not self.prefixes:
            return f"odd: {IPV4ONLY_ARPA} AAAA {shown} embed neither 192.0.0.170 nor .171"
        return f"yes: {IPV4ONLY_ARPA} AAAA {shown} (synthesised)"


@dataclass(frozen=True, slots=True)
class Discovery:
    prefixes: tuple[Nat64Prefix, ...]
    dns64: Dns64 | None
    solicited: tuple[str, ...]
    """Interfaces a Router Solicitation went out on."""


async def rfc7050(resolver: Resolver) -> Dns64:
    """Ask for ``ipv4only.arpa`` AAAA and extract the NAT64 prefixes (RFC 7050 §3)."""
    answer = await resolver.query(Query(IPV4ONLY_ARPA, RdType.AAAA))
    addresses = tuple(r for r in answer.records if isinstance(r, IPv6Address))
    return Dns64(answer.status, addresses, tuple(rfc7050_prefixes(addresses)), answer.ttl)


async def discover(
    resolver: Resolver | None, *, listen_ra: float, configured: Sequence[IPv6Network] = ()
) -> list[Nat64Prefix]:
    """Every NAT64 prefix known here: configured, RFC 7050 via ``resolver``, PREF64."""
    report = await discover_report(resolver, listen_ra=listen_ra, configured=configured)
    return list(report.prefixes)


async def discover_report(
    resolver: Resolver | None, *, listen_ra: float, configured: Sequence[IPv6Network] = ()
) -> Discovery:
    """Like ``discover``, with the DNS64 verdict and the interfaces solicited."""
    dns_task = rfc7050(resolver) if resolver is not None else _none()
    ra_task = listen_pref64(listen_ra) if listen_ra > 0 else _no_ra()
    dns64, (ra, solicited) = await asyncio.gather(dns_task, ra_task)
    found = [Nat64Prefix(p, "config") for p in configured]
    if dns64 is not None:
        found += [Nat64Prefix(p, "rfc7050", dns64.ttl) for p in dns64.prefixes]
    found += ra
    return Discovery(tuple(found), dns64, solicited)


async def _none() -> None:
    return None


async def _no_ra() -> tuple[list[Nat64Prefix], tuple[str, ...]]:
    return [], ()


async def listen_pref64(seconds: float) -> tuple[list[Nat64Prefix], tuple[str, ...]]:
    """PREF64 prefixes from RAs seen within ``seconds``, and the interfaces solicited."""
    loop = asyncio.get_running_loop()
    latest: dict[tuple[IPv6Network, int], Nat64Prefix] = {}
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    except OSError:
        return [], ()  # no rtnetlink here (a restricted sandbox): RFC 7050 still works
    try:
        sock.bind((0, 0))
        sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_ND_USEROPT)
        sock.setblocking(False)
        solicited = solicit_routers()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 65536), left)
            except TimeoutError:
                break
            for msg in _messages(data):
                name = _ifname(msg.ifindex)
                for opt in pref64_options(msg):
                    latest[(opt.prefix, msg.ifindex)] = Nat64Prefix(
                        opt.prefix, "pref64", float(opt.lifetime), name
                    )
    finally:
        sock.close()
    return list(latest.values()), solicited


def _messages(data: bytes) -> list[NdUserOpt]:
    try:
        return parse_netlink(data)
    except Pref64Error:
        return []  # a malformed datagram is dropped; the kernel will not send another


def solicit_routers() -> tuple[str, ...]:
    """Send a Router Solicitation on each up, non-loopback interface; names that worked."""
    sent: list[str] = []
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    except OSError:
        return ()  # no CAP_NET_RAW (or no IPv6): listen for periodic RAs only
    with sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        for index, name in socket.if_nameindex():
            if not _is_up(name):
                continue
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
                sock.sendto(ROUTER_SOLICITATION, (ALL_ROUTERS, 0, 0, index))
                sent.append(name)
    return tuple(sent)


def _is_up(name: str) -> bool:
    try:
        flags = int(Path(f"/sys/class/net/{name}/flags").read_text().strip(), 16)
    except (OSError, ValueError):
        return False
    return bool(flags & _IFF_UP) and not flags & _IFF_LOOPBACK


def _ifname(index: int) -> str | None:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return None
