# Rules: wiring only. The server core sees (IPv4, port) sources; its actions go to the
# UDP socket or the IPv6 side: a TUN device, or (backend ``routed``) the prefix routed
# to a sink link with a packet tap and a raw socket, the core then being the router hop
# (hop limit). Either side carries the route to the prefix (and the server's own address
# prefix::1/128); ``TunnelService`` is also what ``rtc64 serve`` runs. The client's TUN
# carries the assigned address, MTU 1280 and the default IPv6 route (or the prefixes
# asked for). On a changed mapping the client swaps the address; on exit both close
# their device, which removes it, its addresses and routes (the host is restored).
# Counters are written to an optional JSON file every second and on exit.
"""Public TSP tunnel server and client processes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Network, ip_address
from pathlib import Path
from typing import Protocol

from rtc64.io import routed_prefix as routed_io
from rtc64.io import tun as tun_io
from rtc64.io import tunnel_udp
from rtc64.io.driver import clock
from rtc64.net.address import format_hostport
from rtc64.tunnel import client as tc
from rtc64.tunnel.mapping import routable
from rtc64.tunnel.server import ServerSettings, ToTun, ToUdp, TunnelServer
from rtc64.tunnel.stats import TunnelStats

log = logging.getLogger("rtc64.tunnel")


BACKENDS = ("tun", "routed")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """Where the server listens and what carries its IPv6 side."""

    host: str
    port: int
    tun: str = "tsp0"
    stats: Path | None = None
    #: the server's device MTU: larger than the tunnel's 1280, so that the core (not
    #: the kernel) enforces the tunnel MTU and answers Packet Too Big itself
    device_mtu: int = 1500
    #: ``tun``: a TUN device; ``routed``: the prefix routed to a sink link, a packet tap
    #: and a raw socket (``io/routed_prefix.py``), no TUN
    backend: str = "tun"


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """Which server the client uses and what it routes."""

    host: str
    port: int
    tun: str = "tsp0"
    routes: tuple[IPv6Network, ...] = (IPv6Network("::/0"),)
    stats: Path | None = None


def _write(path: Path | None, stats: dict[str, object]) -> None:
    if path is not None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats, sort_keys=True))
        tmp.replace(path)


class Side(Protocol):
    """The IPv6 side of the server: a TUN device or the routed prefix."""

    name: str
    write_errors: int

    def write(self, packet: bytes) -> None: ...

    def close(self) -> None: ...


class TunnelService:
    """The stateless server running: its core, UDP port and IPv6 side (``TunnelView``)."""

    def __init__(self, settings: ServerSettings, options: ServeOptions) -> None:
        if options.backend not in BACKENDS:
            raise ValueError(f"unknown tunnel backend {options.backend!r}")
        routed = options.backend == "routed"
        self.options = options
        self.core = TunnelServer(dataclasses.replace(settings, router=routed))
        self._udp: tunnel_udp.UdpPort | None = None
        self._side: Side | None = None
        self._sink = False

    async def start(self) -> None:
        """Bring up the IPv6 side, then the UDP port (OSError: nothing is left behind)."""
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        settings, options = self.core.settings, self.options
        me = f"{self.core.mapping.server_address}/128"
        mtu = max(options.device_mtu, settings.mtu)
        if options.backend == "routed":
            kind = await routed_io.create_sink(options.tun, mtu)
            self._sink = True
            self._side = routed_io.RoutedPrefix(options.tun, self._from_side)
            log.info("routed prefix %s to %s (%s sink)", settings.prefix, options.tun, kind)
        else:
            self._side = tun_io.Tun(options.tun, self._from_side)
        await tun_io.configure(self._side.name, me, mtu, [str(settings.prefix)])
        self._udp = await tunnel_udp.open_server(options.host, options.port, self._on_datagram)
        log.info(
            "tunnel server on %s:%d, prefix %s, %s backend",
            options.host,
            options.port,
            settings.prefix,
            options.backend,
        )

    def _run(self, actions: Sequence[ToUdp | ToTun]) -> None:
        for action in actions:
            if isinstance(action, ToUdp):
                if self._udp is not None:
                    self._udp.send(action.data, (str(action.addr[0]), action.addr[1]))
            elif self._side is not None:
                self._side.write(action.packet)

    def _on_datagram(self, data: bytes, addr: tunnel_udp.Addr) -> None:
        try:
            source = IPv4Address(addr[0])
        except ValueError:
            return  # an IPv6 source: signalling over IPv6 is not this profile's data path
        self._run(self.core.from_udp(data, (source, addr[1]), clock()))

    def _from_side(self, packet: bytes) -> None:
        self._run(self.core.from_tun(packet, clock()))

    def stats(self) -> TunnelStats:
        """The counters now (``TunnelView``)."""
        options = self.options
        return TunnelStats(
            listen=format_hostport(ip_address(options.host), options.port),
            prefix=str(self.core.settings.prefix),
            backend=options.backend,
            device=options.tun,
            counters=self.core.counters.snapshot(),
            udp_send_errors=0 if self._udp is None else self._udp.send_errors,
            device_write_errors=0 if self._side is None else self._side.write_errors,
        )

    async def close(self) -> None:
        """Close the port and the side; delete the sink (the host is restored)."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._side is not None:
            self._side.close()
            self._side = None
        if self._sink:
            self._sink = False
            await routed_io.delete_sink(self.options.tun)


async def serve(settings: ServerSettings, options: ServeOptions, stop: asyncio.Event) -> int:
    """Run the stateless server until ``stop`` is set."""
    service = TunnelService(settings, options)
    try:
        await service.start()
        while not stop.is_set():
            _write(options.stats, service.stats().as_json())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        return 0
    finally:
        stats = service.stats().as_json()
        await service.close()
        _write(options.stats, stats)


async def connect(options: ConnectOptions, stop: asyncio.Event) -> int:
    """Run the client until ``stop`` is set (1 when the exchange fails)."""
    core = tc.TunnelClient()
    device: tun_io.Tun | None = None
    failed: list[tc.Failed] = []
    changes: asyncio.Queue[tc.Configured] = asyncio.Queue()
    counters = {"up_packets": 0, "down_packets": 0, "restarts": 0}
    address = {"address": ""}

    def on_datagram(data: bytes, addr: tunnel_udp.Addr) -> None:
        out, events = core.receive(data, clock())
        send(out)
        for event in events:
            if isinstance(event, tc.Inbound):
                if device is not None:
                    counters["down_packets"] += 1
                    device.write(event.packet)
            elif isinstance(event, tc.Failed):
                failed.append(event)
                stop.set()
            else:
                changes.put_nowait(event)

    def on_packet(packet: bytes) -> None:
        data = core.outbound(packet)
        if data is not None:
            counters["up_packets"] += 1
            udp.send(data)

    def send(datagrams: Sequence[bytes]) -> None:
        for data in datagrams:
            udp.send(data)

    udp = await tunnel_udp.open_client(options.host, options.port, on_datagram)
    current: tc.Configured | None = None
    try:
        send(core.start(clock()))
        while not stop.is_set():
            deadline = core.get_timer()
            wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - clock()))
            try:
                info = await asyncio.wait_for(changes.get(), wait)
            except TimeoutError:
                out, events = core.handle_timer(clock())
                send(out)
                for event in events:
                    if isinstance(event, tc.Failed):
                        failed.append(event)
                        stop.set()
                counters["restarts"] = core.restarts
                _write(options.stats, {**counters, **address})
                continue
            if device is None:
                device = tun_io.Tun(options.tun, on_packet)
            if current is not None and current.address != info.address:
                await tun_io.unconfigure_address(device.name, f"{current.address}/128")
            routes = [str(r) for r in options.routes]
            await tun_io.configure(device.name, f"{info.address}/128", 1280, routes)
            current = info
            address["address"] = str(info.address)
            counters["restarts"] = core.restarts
            log.info("tunnel up: %s via %s", info.address, options.host)
            _write(options.stats, {**counters, **address})
        if failed:
            log.error("tunnel exchange failed: %d %s", failed[0].status, failed[0].reason)
            return 1
        return 0
    finally:
        udp.close()
        if device is not None:
            device.close()
        counters["restarts"] = core.restarts
        _write(options.stats, {**counters, **address})


def server_ipv4_for(host: str) -> IPv4Address:
    """The IPv4 address announced as the server's (the listen address unless wildcard)."""
    try:
        address = IPv4Address(host)
    except ValueError:
        return IPv4Address(0)
    return address if routable(address) else IPv4Address(0)
