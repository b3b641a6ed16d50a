"""rtnetlink for the CLAT: a snapshot of links, addresses and default routes, and events.

Rules (Linux ``include/uapi/linux/rtnetlink.h``, ``if_addr.h``; LAB-NOTES "NAT64, DNS64,
PREF64, CLAT"):

- ``Events`` is a raw ``NETLINK_ROUTE`` socket bound to the link, IPv4/IPv6 address and
  route groups and to ``RTNLGRP_ND_USEROPT``: any link/address/route message only says
  "something changed" (the caller re-reads a snapshot); ``RTM_NEWNDUSEROPT`` messages are
  decoded (``net.pref64``) and handed over. A malformed datagram is dropped and counted.
- ``snapshot()`` reads the state with pyroute2 dumps (never ``ip`` output). pyroute2 0.9
  runs its own asyncio loop: call it through ``asyncio.to_thread``.
- Addresses that are tentative, deprecated or DAD-failed are left out of ``ipv6``.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv6Address, IPv6Interface, ip_interface

from rtc64.net.pref64 import RTNLGRP_ND_USEROPT, NdUserOpt, Pref64Error, parse_netlink

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR
GROUPS |= RTMGRP_IPV6_ROUTE
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_LOWER_UP = 0x10000
IFA_F_DADFAILED = 0x08
IFA_F_DEPRECATED = 0x20
IFA_F_TENTATIVE = 0x40
_UNUSABLE = IFA_F_DADFAILED | IFA_F_DEPRECATED | IFA_F_TENTATIVE


@dataclass(frozen=True, slots=True)
class LinkInfo:
    index: int
    name: str
    up: bool
    loopback: bool
    mtu: int
    kind: str | None
    ipv4: tuple[IPv4Interface, ...]
    ipv4_default: bool
    ipv6: tuple[IPv6Interface, ...]
    ipv6_all: tuple[tuple[IPv6Interface, int], ...]
    """Every IPv6 address with its flags (DAD state for the engine)."""
    router: IPv6Address | None


def snapshot() -> list[LinkInfo]:
    """Links, their addresses and default routes (blocking: run it in a thread)."""
    from pyroute2 import IPRoute  # noqa: PLC0415  (heavy import, only where used)

    with IPRoute() as ipr:
        links = ipr.get_links()
        addrs = ipr.get_addr()
        v4_routes = ipr.get_routes(family=socket.AF_INET, dst_len=0, table=254)
        v6_routes = ipr.get_routes(family=socket.AF_INET6, dst_len=0, table=254)
    v4_default = {r.get("oif") for r in v4_routes if r.get("dst") is None}
    routers: dict[int, IPv6Address] = {}
    for r in v6_routes:
        if r.get("dst") is None and r.get("gateway") and r.get("oif") is not None:
            routers.setdefault(int(r.get("oif")), IPv6Address(r.get("gateway")))
    out: list[LinkInfo] = []
    for link in links:
        index = int(link["index"])
        v4: list[IPv4Interface] = []
        v6: list[IPv6Interface] = []
        v6_all: list[tuple[IPv6Interface, int]] = []
        for a in addrs:
            if int(a["index"]) != index or a.get("address") is None:
                continue
            iface = ip_interface(f"{a.get('address')}/{a['prefixlen']}")
            flags = int(a.get("IFA_FLAGS") or a["flags"])
            if isinstance(iface, IPv4Interface):
                v4.append(iface)
            else:
                v6_all.append((iface, flags))
                if not flags & _UNUSABLE and not iface.ip.is_link_local:
                    v6.append(iface)
        info = link.get("IFLA_LINKINFO")
        flags = int(link["flags"])
        out.append(
            LinkInfo(
                index=index,
                name=str(link.get("ifname")),
                up=bool(flags & IFF_UP and flags & IFF_LOWER_UP),
                loopback=bool(flags & IFF_LOOPBACK),
                mtu=int(link.get("mtu") or 1500),
                kind=str(info.get("IFLA_INFO_KIND")) if info is not None else None,
                ipv4=tuple(v4),
                ipv4_default=index in v4_default,
                ipv6=tuple(v6),
                ipv6_all=tuple(v6_all),
                router=routers.get(index),
            )
        )
    return out


class Events:
    """rtnetlink change notifications and ND user options; ``close`` when done."""

    def __init__(self) -> None:
        self.dropped = 0
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self._sock.bind((0, GROUPS))
            self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_ND_USEROPT)
            self._sock.setblocking(False)
        except OSError:
            self._sock.close()
            raise

    async def next(self, timeout: float | None) -> list[NdUserOpt] | None:
        """Wait up to ``timeout`` s; None on timeout, else the ND user options received
        (possibly empty: links, addresses or routes changed). Drains what is queued."""
        loop = asyncio.get_running_loop()
        try:
            data = await asyncio.wait_for(loop.sock_recv(self._sock, 65536), timeout)
        except TimeoutError:
            return None
        except OSError:  # ENOBUFS: events were lost; a fresh snapshot covers them
            return []
        found = self._decode(data)
        while True:
            try:
                data = self._sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return found
            except OSError:
                return found
            found += self._decode(data)

    def _decode(self, data: bytes) -> list[NdUserOpt]:
        try:
            return parse_netlink(data)
        except Pref64Error:
            self.dropped += 1
            return []

    def close(self) -> None:
        self._sock.close()
