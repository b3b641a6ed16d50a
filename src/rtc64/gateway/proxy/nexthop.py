"""Where a next-hop URI leads: the hops a branch may use, in the order to try them.

Rules (RFC 3263 §4, RFC 3261 §16.5 and §19.1.1, RFC 6052, RFC 7984):

- An IP literal is its own hop (transport from ``transport=``, default port per
  transport); ``maddr`` overrides the host and is resolved by A/AAAA only (§16.5); a host
  name goes through NAPTR → SRV → AAAA+A, both families always, IPv6 first, interleaved.
- Only hops we have a listener for (same transport and family) are kept. A gateway without
  IPv4 reaches IPv4-only targets through the NAT64 prefix (RFC 6052 synthesis).
- We never open a WebSocket toward a client (RFC 7118 §5): WS/WSS hops without an open
  connection are dropped, and when nothing else remains the answer is 430 Flow Failed
  (RFC 5626 §5.3).
- No usable hop at all is a 503 naming the families the target offered.
- A first usable hop that is not the first one named is a DNS fallback, counted by kind
  (``nat64``: synthesised, ``family``: the other family) and the family used.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Network
from typing import Protocol

from rtc64.errors import RemoteProtocolError
from rtc64.gateway.identity import Identity, uri_transport
from rtc64.gateway.proxy import hops
from rtc64.gateway.proxy.hops import Hop
from rtc64.gateway.stats import Fallbacks
from rtc64.net import rfc6052
from rtc64.net.address import IPAddress, family_of
from rtc64.net.endpoint import Transport
from rtc64.net.rfc3263 import Target, UriLike
from rtc64.sip.uri import SipUri


class HostResolver(Protocol):
    """What routing needs of DNS (``io.resolver.Resolver``)."""

    async def addresses(self, name: str) -> tuple[IPAddress, ...]: ...

    async def targets(self, uri: UriLike) -> list[Target]: ...


class NextHops:
    """RFC 3263 resolution filtered by our listeners, with NAT64 synthesis."""

    def __init__(
        self,
        resolver: HostResolver,
        identity: Identity,
        *,
        connected: Callable[[Transport, IPAddress, int], bool],
        nat64: IPv6Network | None = None,
        fallbacks: Fallbacks | None = None,
    ) -> None:
        self.resolver = resolver
        self.identity = identity
        self.connected = connected
        self.nat64 = nat64
        self.fallbacks = fallbacks or Fallbacks()

    async def resolve(self, uri: SipUri) -> list[Hop]:
        """Every hop ``uri`` names (RFC 3263), usable here or not."""
        transport = uri_transport(uri)
        port = uri.port if uri.port is not None else transport.default_port
        maddr = uri.param(b"maddr")
        host_text = maddr.decode("ascii", "replace") if maddr else None
        if host_text is None and not isinstance(uri.host, str):
            return [Hop(transport, uri.host, port)]
        if host_text is not None:  # §16.5: maddr overrides the host, A/AAAA only
            addresses = await self.resolver.addresses(host_text)
            return [Hop(transport, a, port, server_name=host_text) for a in addresses]
        # RFC 3263: NAPTR/SRV/AAAA/A, both families, IPv6 first and interleaved. A TLS
        # server proves the URI's domain, not the SRV target's name (RFC 5922 §4.1).
        return [
            Hop(t.transport, t.address, t.port, server_name=str(uri.host))
            for t in await self.resolver.targets(uri)
        ]

    def usable_literal(self, uri: SipUri) -> Hop | None:
        """The hop an IP-literal ``uri`` without ``maddr`` names when we have a listener
        toward it (not WS/WSS): ``candidates`` is that hop alone, found without waiting."""
        host = uri.host
        if isinstance(host, str) or uri.param(b"maddr"):
            return None
        transport = uri_transport(uri)
        if transport in hops.INBOUND_ONLY or self.identity.listener_for(transport, host) is None:
            return None
        return Hop(transport, host, uri.port if uri.port is not None else transport.default_port)

    async def candidates(self, uri: SipUri) -> list[Hop]:
        """Where ``uri`` leads (RFC 3263), keeping hops we have a listener for."""
        literal = self.usable_literal(uri)
        if literal is not None:  # an IP literal: usable as it is
            return [literal]
        found = await self.resolve(uri)
        usable: list[Hop] = []
        gone = [h for h in found if h.transport in hops.INBOUND_ONLY and not self._open(h)]
        if gone and len(gone) == len(found):
            # RFC 5626 §5.3 / RFC 7118 §5: we cannot open a WebSocket toward a client.
            raise RemoteProtocolError(f"Flow Failed: no open connection to {gone[0]}", 430)
        for hop in found:
            if hop in gone:
                continue
            if self.identity.listener_for(hop.transport, hop.ip) is not None:
                usable.append(hop)
            elif self.nat64 is not None and isinstance(hop.ip, IPv4Address):
                # An IPv6-only gateway reaches IPv4-only targets through the NAT64 (RFC 6052).
                synth = Hop(hop.transport, rfc6052.synthesize(hop.ip, self.nat64), hop.port,
                            server_name=hop.server_name)  # fmt: skip
                if self.identity.listener_for(synth.transport, synth.ip) is not None:
                    usable.append(synth)
        if usable:
            self._count(found, usable)
            return usable
        families = "/".join(sorted({f"IPv{h.ip.version}" for h in found}))
        raise RemoteProtocolError(
            f"Service Unavailable: no listener of the target's family ({families})", 503
        )

    def _count(self, found: list[Hop], usable: list[Hop]) -> None:
        """A DNS fallback when the first hop usable is not the first the target named:
        reached through the NAT64, or on the other family (``gateway.stats.Fallbacks``)."""
        first, chosen = found[0], usable[0]
        if first == chosen:
            return
        family = family_of(chosen.ip)
        if chosen not in found:
            self.fallbacks.dns["nat64", family] += 1
        elif family_of(first.ip) is not family:
            self.fallbacks.dns["family", family] += 1

    def _open(self, hop: Hop) -> bool:
        return self.connected(hop.transport, hop.ip, hop.port)

    async def first(self, uri: SipUri) -> Hop:
        """The first usable hop for ``uri`` (stateless forwarding: ACK, our own requests)."""
        return (await self.candidates(uri))[0]
