# Rules: one UDP socket for the tunnel (server: bound to --listen, on a [::] socket
# IPv4 peers arrive and are answered as IPv4-mapped addresses; client: connected to
# the server). Each datagram goes to ``on_datagram(data, (host, port))`` unchanged;
# send errors (ICMP unreachable, buffer full) are counted, never raised: a lost datagram
# is what UDP means. No business logic here.
"""UDP socket adapter for the Public TSP tunnel."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import cast

Addr = tuple[str, int]


class UdpPort(asyncio.DatagramProtocol):
    """Delivers datagrams to a callback; sends without raising."""

    def __init__(self, on_datagram: Callable[[bytes, Addr], None]) -> None:
        self._on_datagram = on_datagram
        self._transport: asyncio.DatagramTransport | None = None
        self._v6 = False
        self.send_errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        self._v6 = sock is not None and sock.family == socket.AF_INET6

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        host, port = addr[0], addr[1]
        if isinstance(host, str) and isinstance(port, int):
            self._on_datagram(data, (host.removeprefix("::ffff:"), port))

    def error_received(self, exc: Exception) -> None:
        self.send_errors += 1

    def send(self, data: bytes, addr: Addr | None = None) -> None:
        if self._transport is None:
            return
        if addr is not None and ":" not in addr[0] and self._v6:
            addr = (f"::ffff:{addr[0]}", addr[1])  # a dual-stack [::] socket
        try:
            self._transport.sendto(data, addr)
        except OSError:
            self.send_errors += 1

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    @property
    def local(self) -> Addr:
        if self._transport is None:
            raise RuntimeError("not open")
        sock = cast(socket.socket, self._transport.get_extra_info("socket"))
        name = sock.getsockname()
        return str(name[0]), int(name[1])


async def open_server(host: str, port: int, on_datagram: Callable[[bytes, Addr], None]) -> UdpPort:
    """Bind the tunnel port."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    _, protocol = await loop.create_datagram_endpoint(lambda: UdpPort(on_datagram), sock=sock)
    return protocol


async def open_client(host: str, port: int, on_datagram: Callable[[bytes, Addr], None]) -> UdpPort:
    """A socket connected to the tunnel server."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: UdpPort(on_datagram), remote_addr=(host, port), family=socket.AF_INET
    )
    return protocol
