"""``rtc64 probe network``: gather the facts of this host's network (verdicts: ``netcheck``).

Rules: route lookups toward documentation addresses (2001:db8::1, 192.0.2.1) tell the
default routes without sending; ``io.nat64`` asks DNS64 (RFC 7050) and listens for PREF64
(soliciting routers as root) for ``--ra-listen`` seconds; the NAT64 test is one TCP
connection to ``--nat64-target`` (IPv4 HOST:PORT, default 1.1.1.1:443) synthesised under
the first prefix found; as root (and unless ``--no-dhcp``), one DHCPDISCOVER per up
interface asks for RFC 8925 option 108 (never a REQUEST: no lease is taken).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from ipaddress import IPv4Address, IPv6Address

from rtc64.clat.service import idle_links, running_clats
from rtc64.errors import RemoteProtocolError
from rtc64.io import interfaces, nat64
from rtc64.net import rfc6052
from rtc64.net.address import parse_hostport
from rtc64.probe import dhcp, netcheck, wire
from rtc64.probe.context import Probe, Sink

DEFAULT_NAT64_TARGET = "1.1.1.1:443"
_V6 = IPv6Address("2001:db8::1")
_V4 = IPv4Address("192.0.2.1")


def parse_target(text: str) -> tuple[IPv4Address, int]:
    try:
        hp = parse_hostport(text)
    except RemoteProtocolError:
        hp = None
    if hp is None or not isinstance(hp.host, IPv4Address):
        raise ValueError(f"--nat64-target {text!r}: expected an IPv4 address with a port")
    return hp.host, hp.port or 443


async def probe_network(_text: str, probe: Probe, sink: Sink) -> None:
    settings = probe.settings
    target_text = settings.nat64_target or DEFAULT_NAT64_TARGET
    target = parse_target(target_text)
    v6 = probe.local_source(_V6)
    v4 = probe.local_source(_V4)
    addresses, dns64, (ra, solicited) = await asyncio.gather(
        interfaces.local_addresses_async(),
        nat64.rfc7050(probe.resolver),
        nat64.listen_pref64(settings.ra_listen) if settings.ra_listen > 0 else _nothing(),
    )
    facts = netcheck.NetFacts(
        v6_source=v6 if isinstance(v6, IPv6Address) else None,
        v4_source=v4 if isinstance(v4, IPv4Address) else None,
        addresses=tuple(sorted((a for a in addresses if not a.is_loopback), key=str)),
        dns64_prefixes=dns64.prefixes,
        dns64_text=dns64.describe(),
        pref64=tuple((p.prefix, p.lifetime, p.interface) for p in ra),
        pref64_listened=settings.ra_listen,
        solicited=solicited,
        nat64_target=target_text,
    )
    if facts.prefixes and facts.v6_source is not None:
        synth = rfc6052.synthesize(target[0], facts.prefixes[0])
        outcome = await _connect(synth, target[1], settings.timeout, probe)
        facts = dataclasses.replace(facts, nat64_result=(str(synth), *outcome))
    daemon = {"clat_daemon": running_clats(), "clat_idle": idle_links()}
    facts = dataclasses.replace(facts, extra={**facts.extra, **daemon})
    if os.geteuid() == 0 and settings.dhcp:
        tried, offers = await _dhcp(probe)
        facts = dataclasses.replace(facts, dhcp_tried=tried, dhcp_offers=offers)
    for check in netcheck.checks(facts):
        sink.add(check)


async def _nothing() -> tuple[list[nat64.Nat64Prefix], tuple[str, ...]]:
    return [], ()


async def _connect(
    address: IPv6Address, port: int, timeout: float, probe: Probe
) -> tuple[str, str]:
    async with probe.limit(address):
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(str(address), port)
        except ConnectionRefusedError:
            return "refused", "connection refused by the IPv4 host (translated)"
        except TimeoutError:
            return "error", "timeout"
        except OSError as exc:
            return "error", exc.strerror or str(exc)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return "ok", "TCP connected"


Offered = tuple[str, str, int | None]


async def _dhcp(probe: Probe) -> tuple[tuple[str, ...], tuple[Offered, ...]]:
    """One DHCPDISCOVER per up interface (RFC 8925 option 108 asked), OFFERs collected."""
    found = wire.interfaces_up()

    async def one(name: str, mac: bytes) -> Offered | None:
        xid = dhcp.new_xid()

        def accept(data: bytes) -> dhcp.Offer | None:
            try:
                return dhcp.parse_offer(data, xid, mac)
            except dhcp.DhcpError:
                return None

        try:
            offer = await wire.dhcp_discover(
                name, dhcp.discover(xid, mac), accept, probe.settings.timeout
            )
        except OSError:
            return None  # port 68 taken by the host's own DHCP client, or no IPv4 here
        if offer is None:
            return None
        return name, str(offer.server or "?"), offer.v6only_wait

    results = await asyncio.gather(*(one(n, m) for n, m in found))
    return tuple(n for n, _ in found), tuple(r for r in results if r is not None)
