# Rules (the Public TSP profile's stateless mapping): a client's IPv6 address is
#   /64 prefix | IPv4 (32 bits) | UDP port (16 bits) | local part (16 bits)
# with the IPv4 address and port as the server observed them (after NAT). The mapping
# is a pure function both ways, so no server keeps per-client state. Embedded IPv4
# addresses that are not unicast hosts (0/8, loopback, multicast, broadcast, link-local,
# class E) and port 0 map to nothing: the server never sends there (no reflection).
# The server's own address in the prefix is local part 1 with IPv4 0.0.0.0 and port 0.
"""The stateless address mapping between (IPv4, port) and the tunnel prefix."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from rtc64.errors import LocalProtocolError

CLIENT_LOCAL_PART = 1
_UNROUTABLE = tuple(
    IPv4Network(n)
    for n in ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4")
)


@dataclass(frozen=True, slots=True)
class Mapping:
    """One /64 tunnel prefix and the rules that map endpoints into it."""

    prefix: IPv6Network

    def __post_init__(self) -> None:
        if self.prefix.prefixlen != 64:
            raise LocalProtocolError(f"tunnel prefix {self.prefix} is not a /64")

    @property
    def server_address(self) -> IPv6Address:
        """The server's own address (keepalive target): prefix::1."""
        return self.prefix[1]

    def client_address(
        self, ipv4: IPv4Address, port: int, local: int = CLIENT_LOCAL_PART
    ) -> IPv6Address:
        """The client's IPv6 address for the observed IPv4 address and port."""
        if not 0 <= port <= 0xFFFF or not 0 <= local <= 0xFFFF:
            raise LocalProtocolError("port or local part out of range")
        base = int(self.prefix.network_address)
        return IPv6Address(base | int(ipv4) << 32 | port << 16 | local)

    def contains(self, address: IPv6Address) -> bool:
        """True when the address is inside the tunnel prefix."""
        return address in self.prefix

    def endpoint(self, address: IPv6Address) -> tuple[IPv4Address, int] | None:
        """The (IPv4, port) embedded in a prefix address, or None (outside or not a host)."""
        if address not in self.prefix:
            return None
        value = int(address)
        ipv4 = IPv4Address(value >> 32 & 0xFFFFFFFF)
        port = value >> 16 & 0xFFFF
        if port == 0 or not routable(ipv4):
            return None
        return ipv4, port

    def embeds(self, address: IPv6Address, ipv4: IPv4Address, port: int) -> bool:
        """The egress filter: the address is in the prefix and embeds exactly ipv4:port."""
        return self.endpoint(address) == (ipv4, port)


def routable(ipv4: IPv4Address) -> bool:
    """True for an IPv4 address a tunnel endpoint may have."""
    return ipv4 != IPv4Address("255.255.255.255") and not any(ipv4 in n for n in _UNROUTABLE)
