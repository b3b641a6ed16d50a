"""The host's own addresses, and the source address the kernel picks toward a peer.

``local_addresses`` reads every interface address over rtnetlink (RTM_GETADDR) once;
``source_address`` asks the routing table which local address reaches a destination (a
connected UDP socket sends nothing). The gateway uses both to know which URIs and Routes
are its own and what to write in Via/Record-Route when it listens on a wildcard address.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from functools import lru_cache
from ipaddress import ip_address

from rtc64.net.address import IPAddress, family_of, unmap


def local_addresses() -> frozenset[IPAddress]:
    """Every address configured on this host's interfaces (all families)."""
    addresses: set[IPAddress] = set()
    try:
        from pyroute2 import IPRoute  # noqa: PLC0415 - netlink only where it exists

        with IPRoute() as ipr:
            for msg in ipr.get_addr():
                text = msg.get_attr("IFA_ADDRESS") or msg.get_attr("IFA_LOCAL")
                if text:
                    addresses.add(ip_address(str(text).split("%", 1)[0]))
    except (ImportError, OSError):  # pragma: no cover - non-Linux fallback
        for info in socket.getaddrinfo(socket.gethostname(), None):
            addresses.add(ip_address(str(info[4][0]).split("%", 1)[0]))
    addresses.update((ip_address("127.0.0.1"), ip_address("::1")))
    return frozenset(addresses)


@lru_cache(maxsize=4096)
def source_address(destination: IPAddress) -> IPAddress | None:
    """The local address the kernel would send from toward ``destination``, or None."""
    dest = unmap(destination)
    family = socket.AF_INET if family_of(dest).value == socket.AF_INET else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
        sock.connect((dest.compressed, 9))
        return ip_address(sock.getsockname()[0].split("%", 1)[0])
    return None


async def local_addresses_async() -> frozenset[IPAddress]:
    """``local_addresses`` from a worker thread (pyroute2 runs an event loop of its own)."""
    return await asyncio.to_thread(local_addresses)
