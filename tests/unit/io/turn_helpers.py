"""Shared pieces of the TURN io tests: a recording sink, UDP/TCP test endpoints, waits."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import ip_address

from rtc64.io.turn_fastpath import RelaySocket
from rtc64.io.turn_listeners import Address, ListenerLimits, TurnListeners
from rtc64.io.turn_relay import TurnRelays
from rtc64.io.turn_tcp import TcpRelays
from rtc64.net.address import Family
from rtc64.net.endpoint import Transport, parse_listen
from rtc64.relay.ports import PortPool
from rtc64.turn.events import ClientFlow
from rtc64.turn.protocols import UDP

V4 = ip_address("127.0.0.1")
V6 = ip_address("::1")


def port_range(size: int = 40) -> tuple[int, int]:
    """A port range of this test process (parallel test runs rarely share it)."""
    low = 42000 + (os.getpid() * 97 % 400) * 40
    return low, low + size


@dataclass
class Sink:
    """Records what the listeners deliver."""

    got: list[tuple[bytes, Transport, Address, Address, int]] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)

    def from_client(
        self, data: bytes, transport: Transport, local: Address, remote: Address, connection: int
    ) -> None:
        self.got.append((data, transport, local, remote, connection))

    def connection_closed(
        self, transport: Transport, local: Address, remote: Address, connection: int
    ) -> None:
        self.closed.append(connection)


class Endpoint(asyncio.DatagramProtocol):
    """A UDP test client or peer."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, tuple[object, ...]]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
        self.got.append((data, addr))

    def send(self, data: bytes, addr: tuple[object, ...]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    @property
    def address(self) -> Address:
        assert self.transport is not None
        name = self.transport.get_extra_info("sockname")
        return ip_address(name[0]), int(name[1])

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def endpoint(host: str = "127.0.0.1") -> Endpoint:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(Endpoint, local_addr=(host, 0))
    return proto


async def wait_for(cond: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait until ``cond()`` is true (fails the test after ``timeout``)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


async def settle() -> None:
    """Let packets in flight on loopback arrive (used only before asserting absence)."""
    await asyncio.sleep(0.1)


@dataclass
class Rig:
    sink: Sink
    listeners: TurnListeners
    relays: TurnRelays
    tcp: TcpRelays
    pool: PortPool

    def local(self, transport: Transport, version: int = 4) -> Address:
        for bound in self.listeners.bound:
            if bound.transport is transport and bound.family.value == (2 if version == 4 else 10):
                return bound.local
        raise AssertionError("no such listener")

    async def stop(self) -> None:
        self.relays.stop()
        self.tcp.stop()
        await self.listeners.stop()


async def rig(
    *,
    bandwidth: int = 0,
    limits: ListenerLimits | None = None,
    pool: PortPool | None = None,
    specs: tuple[str, ...] = ("udp:127.0.0.1:0", "tcp:127.0.0.1:0", "udp:[::1]:0"),
    native: bool = True,
) -> Rig:
    sink = Sink()
    listeners = TurnListeners([parse_listen(s) for s in specs], sink, limits=limits, native=native)
    await listeners.start()
    tcp = TcpRelays(lambda relay, peer: None, lambda cid, ok: False)
    pool = pool or PortPool([V4, V6], *port_range())
    addresses = [a for family in sorted(pool.families) for a in pool.addresses(family)]
    relays = TurnRelays([pool], addresses, listeners, tcp, bandwidth=bandwidth)
    return Rig(sink, listeners, relays, tcp, pool)


def raw(address: tuple) -> tuple:  # type: ignore[type-arg]
    """A socket address as the sockets module takes it (the host as text)."""
    return (str(address[0]), address[1])


async def allocation(
    r: Rig, client: Endpoint, family: Family = Family.INET
) -> tuple[ClientFlow, Address, RelaySocket]:
    """A UDP relay of ``family`` reserved while serving ``client`` (as the core does), on
    the UDP listener of the client's family; its socket is open."""
    version = 4 if client.address[0].version == 4 else 6
    flow = ClientFlow(Transport.UDP, client.address, r.local(Transport.UDP, version), 0)
    r.relays.serving = flow
    try:
        relay = r.relays.reserve(family, UDP, even=False, reserve_next=False)
    finally:
        r.relays.serving = None
    sock = r.relays.relay_of(relay)
    assert sock is not None
    await wait_for(lambda: sock.transport is not None)
    return flow, relay, sock
