"""DNS lookups for SIP targets: A and AAAA with dnspython's async resolver.

Both families are always asked (RFC 7984: never abandon one family because the other
answered); answers are cached for their TTL, failures for a short negative TTL. A
configured server list (``dns.servers``, ``HOST[:PORT]``/``[v6]:port``) replaces the
system's resolv.conf. Names in /etc/hosts (``localhost``) are answered without DNS.
RFC 3263 NAPTR/SRV ordering builds on this in the call-routing work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

import dns.asyncresolver
import dns.exception
import dns.resolver

from rtc64.errors import ConfigError, RemoteProtocolError
from rtc64.net.address import IPAddress, parse_hostport

NEGATIVE_TTL = 30.0
MAX_TTL = 3600.0


class ResolveError(RemoteProtocolError):
    """A name did not resolve; ``status`` is what a proxy answers (503 or 404)."""


@dataclass(frozen=True, slots=True)
class _Entry:
    addresses: tuple[IPAddress, ...]
    expires: float


class Resolver:
    """A/AAAA lookups with a TTL cache, IPv6 answers listed before IPv4."""

    def __init__(self, servers: Sequence[str] = (), timeout: float = 2.0) -> None:
        if servers:
            self._dns = dns.asyncresolver.Resolver(configure=False)
            self._dns.nameservers = []
            ports = set()
            for text in servers:
                try:
                    hp = parse_hostport(text)
                except RemoteProtocolError:
                    raise ConfigError("dns.servers", text, "HOST[:PORT] or [IPv6]:PORT") from None
                if isinstance(hp.host, str):
                    raise ConfigError("dns.servers", text, "an IP address, not a name")
                self._dns.nameservers.append(hp.host.compressed)
                ports.add(hp.port or 53)
            if len(ports) > 1:
                raise ConfigError("dns.servers", list(servers), "one port for all servers")
            self._dns.port = ports.pop()
        else:
            try:
                self._dns = dns.asyncresolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                self._dns = dns.asyncresolver.Resolver(configure=False)
                self._dns.nameservers = ["127.0.0.1", "::1"]
        self._dns.lifetime = timeout
        self._hosts = read_hosts()
        self._cache: dict[str, _Entry] = {}
        self.queries = 0
        self.failures = 0

    async def addresses(self, name: str) -> tuple[IPAddress, ...]:
        """IPv6 then IPv4 addresses of ``name`` (an IP literal answers itself)."""
        try:
            return (ip_address(name),)
        except ValueError:
            pass
        now = time.monotonic()
        cached = self._cache.get(name)
        if cached is not None and cached.expires > now:
            if not cached.addresses:
                raise ResolveError(f"Not Found: {name} has no A or AAAA record", 404)
            return cached.addresses
        local = self._hosts.get(name.lower().rstrip("."))
        if local:
            return local
        self.queries += 1
        v6, v4 = await asyncio.gather(self._query(name, "AAAA"), self._query(name, "A"))
        addresses = tuple(a for a, _ in v6) + tuple(a for a, _ in v4)
        ttls = [ttl for _, ttl in (*v6, *v4)]
        ttl = min(ttls, default=NEGATIVE_TTL)
        self._cache[name] = _Entry(addresses, now + min(ttl, MAX_TTL))
        if not addresses:
            self.failures += 1
            raise ResolveError(f"Not Found: {name} has no A or AAAA record", 404)
        return addresses

    async def _query(self, name: str, rdtype: str) -> list[tuple[IPAddress, float]]:
        try:
            answer = await self._dns.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            self.failures += 1
            raise ResolveError(
                f"Service Unavailable: DNS lookup of {name} {rdtype} failed ({type(exc).__name__})",
                503,
            ) from None
        ttl = float(answer.rrset.ttl) if answer.rrset is not None else NEGATIVE_TTL
        return [(ip_address(r.address), ttl) for r in answer]


def read_hosts(path: str = "/etc/hosts") -> dict[str, tuple[IPAddress, ...]]:
    """Names in a hosts file and their addresses, IPv6 first."""
    table: dict[str, list[IPAddress]] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.readlines()
    except OSError:
        return {}
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            address = ip_address(fields[0].split("%", 1)[0])
        except ValueError:
            continue
        for name in fields[1:]:
            table.setdefault(name.lower(), []).append(address)
    return {
        name: tuple(sorted(a for a in addrs if isinstance(a, IPv6Address)))
        + tuple(sorted(a for a in addrs if isinstance(a, IPv4Address)))
        for name, addrs in table.items()
    }
