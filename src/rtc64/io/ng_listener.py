# Rules: one UDP socket (``ng.listen``), one datagram in, at most one reply out, sent back
# to the datagram's source. The protocol lives in the handler (``rtc64.relay.ng``); this
# adapter only moves bytes. Whatever the handler raises is logged and counted, and the
# request is answered with an error reply when it carries a cookie: a bad request or a
# failing command never stops the listener. A reply too large for one datagram is
# replaced by an error reply. The handler gets ``time.monotonic()`` (the relay's clock)
# and the Unix time, for the times it reports.
"""UDP adapter for rtpengine's ng control protocol."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import asdict, dataclass
from typing import Protocol, cast

from rtc64.io import sockets
from rtc64.net.address import IPAddress, format_hostport, from_sockaddr, to_sockaddr
from rtc64.net.endpoint import ListenSpec, Transport

MAX_REPLY = 65507
"""Largest UDP payload over IPv4; larger replies become an error reply."""
NG_RCVBUF = 1024 * 1024


class DatagramHandler(Protocol):
    """The protocol core the listener feeds (``rtc64.relay.ng.NgProtocol``)."""

    def handle(self, data: bytes, now: float, wall: float | None = None) -> bytes | None: ...

    def error_for(self, data: bytes, reason: str) -> bytes | None: ...


@dataclass(slots=True)
class NgListenerStats:
    """Counters of the ng socket (the protocol's own are in the handler's stats)."""

    received: int = 0
    sent: int = 0
    send_errors: int = 0
    internal_errors: int = 0
    """Requests whose handling raised: logged, answered with an error when possible."""
    oversized: int = 0
    """Replies too large for a datagram, replaced by an error reply."""

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


class NgListener(asyncio.DatagramProtocol):
    """Receives ng requests on one socket and sends the handler's replies."""

    def __init__(self, handler: DatagramHandler, sock: socket.socket, log: logging.Logger) -> None:
        self.handler = handler
        self.sock = sock
        self.log = log
        self.local = from_sockaddr(sock.getsockname())
        self.stats = NgListenerStats()
        self._transport: asyncio.DatagramTransport | None = None
        self._closed: asyncio.Future[None] | None = None

    @property
    def port(self) -> int:
        return self.local[1]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.stats.received += 1
        try:
            remote = from_sockaddr(addr)
        except (TypeError, ValueError):
            return
        try:
            out = self.handler.handle(data, time.monotonic(), time.time())
        except Exception:
            self.stats.internal_errors += 1
            self.log.exception("ng request from %s failed", format_hostport(*remote))
            out = self.handler.error_for(data, "internal error")
        if out is not None and len(out) > MAX_REPLY:
            self.stats.oversized += 1
            self.log.warning(
                "ng reply of %d bytes to %s too large", len(out), format_hostport(*remote)
            )
            out = self.handler.error_for(data, "reply too large for a datagram")
        if out is None:
            self.log.debug("ng datagram from %s without cookie dropped", format_hostport(*remote))
            return
        self._send(out, remote)

    def _send(self, data: bytes, remote: tuple[IPAddress, int]) -> None:
        if self._transport is None or self._transport.is_closing():
            self.stats.send_errors += 1
            return
        address, port = remote
        try:
            self._transport.sendto(data, to_sockaddr(address, port))
        except (OSError, ValueError) as exc:
            self.stats.send_errors += 1
            self.log.debug("ng reply to %s failed: %s", format_hostport(*remote), exc)
            return
        self.stats.sent += 1

    def error_received(self, exc: Exception) -> None:
        self.log.debug("ng socket %s: %s", format_hostport(*self.local), exc)

    async def stop(self) -> None:
        """Close the socket and wait until it is closed."""
        if self._transport is None:
            self.sock.close()
            return
        self._transport.close()
        if self._closed is not None:
            await self._closed


async def start(spec: ListenSpec, handler: DatagramHandler, log: logging.Logger) -> NgListener:
    """Bind ``spec`` (``udp:HOST:PORT``) and serve ng requests with ``handler``.

    Raises ``OSError`` when the socket cannot be bound, ``ValueError`` for a non-UDP spec.
    """
    if spec.transport is not Transport.UDP:
        raise ValueError(f"ng control socket must be UDP, not {spec.transport.value}")
    sock = sockets.udp_socket(spec.address, spec.port, rcvbuf=NG_RCVBUF)
    listener = NgListener(handler, sock, log)
    try:
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: listener, sock=sock)
    except BaseException:
        sock.close()
        raise
    log.info("ng control listening on udp:%s", format_hostport(*listener.local))
    return listener
