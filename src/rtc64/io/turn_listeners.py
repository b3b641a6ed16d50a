# TURN listeners (RFC 8656 §3.1, §12.5; RFC 6062 §4.3): UDP, TCP and TLS sockets of both
# families (IPv6 sockets V6ONLY, ``io.sockets``), one socket per listen spec.
#
# Rules:
# - UDP: a datagram whose first byte is 0x40-0x7F is ChannelData: forwarded on the fast
#   path when that source has the channel bound (``io.turn_fastpath``), else dropped and
#   counted. A datagram that can be STUN (first two bits 0, at least 20 bytes) goes to the
#   sink (the service, then the core); anything else is garbage: counted, dropped.
# - With the native build (``io.turn_fastpath.NATIVE``) a UDP listener is read by its C
#   ``Reader`` (a loop reader, recvmmsg): it forwards the ChannelData the pure path would
#   forward, from the same tables (``native_clients`` maps a client's ``struct sockaddr``
#   to its channels dict, kept with ``clients``), and hands every other datagram to
#   ``datagram_received`` with the address tuple the loop would give. The listener then
#   sends with the reader (a datagram the kernel refuses is dropped and counted, not
#   queued). ``TurnListeners(native=False)`` keeps the loop's transport.
# - TCP/TLS: ``stun.channeldata.frame_length`` cuts the byte stream into STUN messages and
#   ChannelData frames (padded to 4), whatever the segmentation. A frame larger than
#   ``max_frame``, a buffer over the cap without a whole frame, bytes that are neither
#   STUN nor ChannelData, or ChannelData on a connection without an allocation (an HTTP
#   request looks like one) close the connection (counted). After an RFC 6062 ConnectionBind
#   the connection is spliced to its peer connection: raw bytes both ways.
# - Connections get ids (never reused in a process). A connection holding no allocation and
#   quiet for ``idle_timeout`` is closed (counted); so is one whose unsent data passes
#   ``max_buffered`` (relayed frames are dropped before that). At most ``max_connections``.
# - Nothing a client sends raises out of a callback.
"""UDP, TCP and TLS listeners of the TURN server, with stream framing."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from rtc64.errors import ConfigError, RemoteProtocolError
from rtc64.io.sockets import listen_socket, udp_socket
from rtc64.io.turn_fastpath import (
    NATIVE,
    ClientOut,
    Route,
    SockAddr,
    forward_channel_data,
    hashed_ip,
    raw_address,
    source_address,
)
from rtc64.io.turn_stream import Splice, SplicedStream
from rtc64.net.address import IPAddress, format_hostport, from_sockaddr
from rtc64.net.endpoint import BoundListener, ListenSpec, Transport
from rtc64.stun.channeldata import frame_length

if TYPE_CHECKING:
    from rtc64.io import _turn_native

Address = tuple[IPAddress, int]

_ids = itertools.count(1)


def next_connection_id() -> int:
    """A process-wide connection id (client and RFC 6062 peer connections share them)."""
    return next(_ids)


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """Resource limits of the TURN listeners."""

    max_connections: int = 10_000
    idle_timeout: float = 60.0
    """Seconds a stream connection without an allocation may stay quiet."""
    max_buffered: int = 256 * 1024
    """Unsent bytes per connection: relayed frames beyond are dropped, twice that closes."""
    max_frame: int = 65_535 + 20
    handshake_timeout: float = 10.0
    sweep_interval: float = 5.0
    udp_rcvbuf: int = 4 * 1024 * 1024


@dataclass(slots=True)
class ListenerStats:
    """Counters of the TURN listeners (read by the service's stats snapshot)."""

    datagrams: int = 0
    frames: int = 0
    garbage: int = 0
    channel_unbound: int = 0
    channel_refused: int = 0
    oversize: int = 0
    idle_closed: int = 0
    refused_connections: int = 0
    send_dropped: int = 0
    connections: int = 0


class ClientSink(Protocol):
    """Where the listeners deliver what the fast path does not handle (the service)."""

    def from_client(
        self, data: bytes, transport: Transport, local: Address, remote: Address, connection: int
    ) -> None: ...

    def connection_closed(
        self, transport: Transport, local: Address, remote: Address, connection: int
    ) -> None: ...


class Sender(Protocol):
    """How a UDP listener sends: the loop's datagram transport or the native reader."""

    def sendto(self, data: bytes, addr: SockAddr, /) -> object: ...

    def is_closing(self) -> bool: ...

    def close(self) -> None: ...


class UdpClient:
    """A UDP client with an allocation: its source address on one listener."""

    __slots__ = ("addr", "channels", "holds", "key", "listener", "stream")

    def __init__(self, listener: UdpListener, addr: SockAddr) -> None:
        self.listener = listener
        self.addr = addr
        self.channels: dict[int, Route] = {}
        self.stream = False
        self.holds = 0
        self.key: bytes | None = None
        """Its ``struct sockaddr`` in the listener's ``native_clients`` (None: not there)."""

    def send(self, data: bytes) -> None:
        transport = self.listener.transport
        if transport is not None:
            transport.sendto(data, self.addr)


SOURCE_CACHE = 4096
"""Client source addresses a UDP listener keeps parsed."""


class UdpListener(asyncio.DatagramProtocol):
    """One UDP listening socket."""

    def __init__(
        self, local: Address, sock: socket.socket, sink: ClientSink, stats: ListenerStats
    ) -> None:
        self.local = local
        self.sock = sock
        self.sink = sink
        self.stats = stats
        self.transport: Sender | None = None
        self.clients: dict[SockAddr, UdpClient] = {}
        self._sources: dict[SockAddr, Address] = {}  # the loop's form -> (ip, port)
        self._raw: dict[Address, SockAddr] = {}  # and back, for answers
        self.native_clients: dict[bytes, dict[int, Route]] = {}
        self.reader: _turn_native.Reader | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start_native(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read with the native reader (``NATIVE`` must be loaded) instead of a transport."""
        assert NATIVE is not None
        fd = self.sock.fileno()
        stats = self.stats
        self.reader = reader = NATIVE.Reader(fd, self.native_clients, self.datagram_received, stats)  # type: ignore[arg-type]
        self.transport = reader
        self._loop = loop
        loop.add_reader(fd, reader.read)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: SockAddr) -> None:
        if len(data) >= 4 and 0x40 <= data[0] < 0x80:
            # ``forward_channel_data`` inlined: one Python call less per relayed packet
            client = self.clients.get(addr)
            route = None if client is None else client.channels.get((data[0] << 8) | data[1])
            length = (data[2] << 8) | data[3]
            if route is None or length > len(data) - 4:
                self.stats.channel_unbound += 1
            elif not route.relay.to_peer(data[4 : 4 + length], route.host, route.peer):
                self.stats.channel_refused += 1
            return
        if len(data) < 20 or data[0] >= 0x40:
            self.stats.garbage += 1
            return
        self.stats.datagrams += 1
        remote = self._sources.get(addr)
        if remote is None:  # parsed once per source (a client sends several requests)
            try:
                remote = source_address(addr)
            except (TypeError, ValueError):
                self.stats.garbage += 1
                return
            if len(self._sources) >= SOURCE_CACHE:
                self._sources.clear()  # bounded: a flood of sources only misses
                self._raw.clear()
            self._sources[addr] = remote
            self._raw[remote] = addr
        self.sink.from_client(data, Transport.UDP, self.local, remote, 0)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors from clients that went away

    def client(self, remote: Address) -> UdpClient:
        addr = self._raw.get(remote)  # parsed when the request arrived
        if addr is None:
            addr = raw_address(*remote)
        client = self.clients.get(addr)
        if client is None:
            client = self.clients[addr] = UdpClient(self, addr)
            if self.reader is not None and NATIVE is not None:
                try:
                    client.key = NATIVE.sockaddr(addr)
                except (TypeError, ValueError):  # the pure path serves it
                    pass
                else:
                    self.native_clients[client.key] = client.channels
        return client

    def forget(self, client: UdpClient) -> None:
        """Drop a client's fast-path entries (its last allocation ended)."""
        client.channels.clear()
        if self.clients.get(client.addr) is client:
            del self.clients[client.addr]
            if client.key is not None:
                self.native_clients.pop(client.key, None)

    def send(self, data: bytes, remote: Address) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            self.stats.send_dropped += 1
            return False
        addr = self._raw.get(remote)
        if transport.sendto(data, raw_address(*remote) if addr is None else addr) is False:
            self.stats.send_dropped += 1  # the native reader: refused by the kernel
            return False
        return True

    def close(self) -> None:
        reader = self.reader
        if reader is not None:
            if not reader.is_closing():
                reader.close()
                if self._loop is not None and not self._loop.is_closed():
                    self._loop.remove_reader(self.sock.fileno())
                self.sock.close()
        elif self.transport is not None:
            self.transport.close()
        else:
            self.sock.close()


class StreamConnection(SplicedStream):
    """One client connection over TCP or TLS: framed until spliced (RFC 6062)."""

    def __init__(self, owner: TurnListeners, kind: Transport, local: Address) -> None:
        self.owner = owner
        self.kind = kind
        self.local = local
        self.id = next_connection_id()
        self.remote: Address | None = None
        self.transport: asyncio.Transport | None = None
        self.channels: dict[int, Route] = {}
        self.stream = True
        self.holds = 0
        self.closed = False
        self.partner: Splice | None = None
        self.last_activity = 0.0
        self._buf = bytearray()

    # --- asyncio ----------------------------------------------------------------------------

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, base)
        transport.set_write_buffer_limits(high=self.owner.limits.max_buffered // 2)
        try:
            self.remote = from_sockaddr(transport.get_extra_info("peername"))
        except (TypeError, ValueError):
            transport.abort()
            self.closed = True
            return
        self.last_activity = self.owner.loop.time()
        if not self.owner.attach(self):
            self.closed = True
            transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_activity = self.owner.loop.time()
        if self.partner is not None:
            self.partner.write(data)
            return
        buf = self._buf
        buf += data
        stats = self.owner.stats
        limits = self.owner.limits
        while buf and not self.closed:
            try:
                size = frame_length(buf)
            except RemoteProtocolError:
                stats.garbage += 1
                self.abort()
                return
            if size is None:
                if len(buf) > limits.max_frame:
                    stats.oversize += 1
                    self.abort()
                return
            if size > limits.max_frame:
                stats.oversize += 1
                self.abort()
                return
            if buf[0] >= 0x40 and self.holds == 0 and not self.channels:
                stats.garbage += 1  # ChannelData before any allocation: not a TURN client
                self.abort()
                return
            if len(buf) < size:
                return
            frame = bytes(buf[:size])
            del buf[:size]
            partner = self._frame(frame)
            if partner is not None:  # ConnectionBind succeeded: raw bytes from now on
                if buf:
                    rest = bytes(buf)
                    buf.clear()
                    partner.write(rest)
                return

    def _frame(self, frame: bytes) -> Splice | None:
        """Handle one frame; the partner when it spliced this connection."""
        stats = self.owner.stats
        if frame[0] >= 0x40:
            result = forward_channel_data(self, frame)
            if result == 1:
                stats.channel_unbound += 1
            elif result == 2:
                stats.channel_refused += 1
            return None
        stats.frames += 1
        assert self.remote is not None
        self.owner.sink.from_client(frame, self.kind, self.local, self.remote, self.id)
        return self.partner

    def eof_received(self) -> bool | None:
        if self.partner is not None:
            self.partner.eof()
            return self.kind is Transport.TCP  # half-close: the peer may still answer
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.channels.clear()
        self.unsplice()
        self.owner.detach(self)

    # --- ClientOut and the owner's use -------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write a relayed frame; dropped (counted) when the client does not keep up."""
        transport = self.transport
        if transport is None or self.closed:
            return
        if transport.get_write_buffer_size() > self.owner.limits.max_buffered:
            self.owner.stats.send_dropped += 1
            return
        transport.write(data)

    def send_message(self, data: bytes) -> bool:
        """Write a STUN message from the core (closes the connection past twice the cap)."""
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            return False
        if transport.get_write_buffer_size() > 2 * self.owner.limits.max_buffered:
            self.owner.stats.send_dropped += 1
            self.abort()
            return False
        transport.write(data)
        return True

    def splice(self, partner: Splice) -> None:
        """Join this connection to ``partner``: raw bytes both ways (RFC 6062 §5.4)."""
        self.partner = partner
        self.channels.clear()

    # --- Splice (seen from the peer connection; the rest is ``SplicedStream``'s) -----------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def __str__(self) -> str:
        remote = "?" if self.remote is None else format_hostport(*self.remote)
        return f"{self.kind.value}#{self.id} {remote}"


class TurnListeners:
    """Every TURN listening socket, the client connections and how to answer clients."""

    def __init__(
        self,
        specs: Sequence[ListenSpec],
        sink: ClientSink,
        *,
        server_tls: ssl.SSLContext | None = None,
        limits: ListenerLimits | None = None,
        log: logging.Logger | None = None,
        native: bool = True,
    ) -> None:
        self.specs = tuple(specs)
        self.native = native and NATIVE is not None
        """UDP listeners read by the native reader (when it is built)."""
        self.sink = sink
        self.server_tls = server_tls
        self.limits = limits or ListenerLimits()
        self.log = log or logging.getLogger("rtc64.io.turn")
        self.stats = ListenerStats()
        self.loop = asyncio.get_running_loop()
        self.bound: list[BoundListener] = []
        self.udp: dict[Address, UdpListener] = {}
        self.connections: dict[int, StreamConnection] = {}
        self._servers: list[asyncio.Server] = []
        self._server_of: dict[ListenSpec, asyncio.Server] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self) -> list[BoundListener]:
        """Bind every listener; a failure closes those bound and raises ``ConfigError``
        naming the endpoint (``turn.listen``)."""
        try:
            for spec in self.specs:
                try:
                    await self._start_one(spec)
                except OSError as exc:
                    expected = f"an address to bind ({exc})"
                    raise ConfigError("turn.listen", str(spec), expected) from exc
        except BaseException:
            await self.stop()
            raise
        self._sweeper = self.loop.call_later(self.limits.sweep_interval, self._sweep)
        return list(self.bound)

    async def _start_one(self, spec: ListenSpec) -> None:
        if spec.transport is Transport.UDP:
            sock = udp_socket(spec.address, spec.port, self.limits.udp_rcvbuf)
            port = sock.getsockname()[1]
            local = (hashed_ip(spec.address), port)  # in every ClientFlow's hash
            listener = UdpListener(local, sock, self.sink, self.stats)
            if self.native:
                listener.start_native(self.loop)
            else:
                await self.loop.create_datagram_endpoint(lambda: listener, sock=sock)
            self.udp[local] = listener
        elif spec.transport in (Transport.TCP, Transport.TLS):
            if spec.transport is Transport.TLS and self.server_tls is None:
                raise ConfigError("turn.tls_cert", "", f"a certificate for {spec}")
            sock = listen_socket(spec.address, spec.port)
            port = sock.getsockname()[1]
            local = (hashed_ip(spec.address), port)  # in every ClientFlow's hash
            kind = spec.transport
            secure = kind is Transport.TLS
            server = await self.loop.create_server(
                lambda: StreamConnection(self, kind, local),
                sock=sock,
                ssl=self.server_tls if secure else None,
                ssl_handshake_timeout=self.limits.handshake_timeout if secure else None,
            )
            self._servers.append(server)
            self._server_of[spec] = server
        else:
            raise ConfigError("turn.listen", str(spec), "a udp:, tcp: or tls: endpoint")
        self.bound.append(BoundListener(spec, port))

    async def relisten(
        self, specs: Sequence[ListenSpec]
    ) -> tuple[list[ListenSpec], list[ListenSpec]]:
        """A reload: open the listeners of ``specs`` not open yet, close those no longer
        in it; connections accepted earlier stay until they end, allocations made through
        a closed UDP listener lose their path and expire. Returns (opened, closed). A
        listener that cannot be bound closes those opened here and raises ``ConfigError``
        naming it: the listeners stay as they were."""
        wanted = list(dict.fromkeys(specs))
        current = [b.spec for b in self.bound]
        added = [s for s in wanted if s not in current]
        removed = [s for s in current if s not in wanted]
        opened: list[ListenSpec] = []
        try:
            for spec in added:
                try:
                    await self._start_one(spec)
                except OSError as exc:
                    expected = f"an address to bind ({exc})"
                    raise ConfigError("turn.listen", str(spec), expected) from exc
                opened.append(spec)
        except BaseException:
            for spec in opened:
                self._close_one(spec)
            raise
        for spec in removed:
            self._close_one(spec)
        self.specs = tuple(wanted)
        return added, removed

    def _close_one(self, spec: ListenSpec) -> None:
        for bound in [b for b in self.bound if b.spec == spec]:
            self.bound.remove(bound)
            listener = self.udp.pop((spec.address, bound.port), None)
            if listener is not None:
                listener.close()
        server = self._server_of.pop(spec, None)
        if server is not None:
            server.close()
            self._servers.remove(server)

    # --- connections ---------------------------------------------------------------------------

    def attach(self, conn: StreamConnection) -> bool:
        if len(self.connections) >= self.limits.max_connections:
            self.stats.refused_connections += 1
            return False
        self.connections[conn.id] = conn
        self.stats.connections = len(self.connections)
        return True

    def detach(self, conn: StreamConnection) -> None:
        if self.connections.pop(conn.id, None) is not None:
            self.stats.connections = len(self.connections)
            if conn.remote is not None:
                self.sink.connection_closed(conn.kind, conn.local, conn.remote, conn.id)

    def _sweep(self) -> None:
        now = self.loop.time()
        limit = self.limits.idle_timeout
        for conn in list(self.connections.values()):
            if conn.holds == 0 and conn.partner is None and now - conn.last_activity > limit:
                self.stats.idle_closed += 1
                conn.abort()
        self._sweeper = self.loop.call_later(self.limits.sweep_interval, self._sweep)

    # --- toward clients ----------------------------------------------------------------------

    def send(
        self, data: bytes, transport: Transport, local: Address, remote: Address, connection: int
    ) -> bool:
        """Send a STUN message to a client over the path its request came in on."""
        if transport is Transport.UDP:
            listener = self.udp.get(local)
            if listener is None:
                self.stats.send_dropped += 1
                return False
            return listener.send(data, remote)
        conn = self.connections.get(connection)
        if conn is None:
            self.stats.send_dropped += 1
            return False
        return conn.send_message(data)

    def client_out(
        self, transport: Transport, local: Address, remote: Address, connection: int
    ) -> UdpClient | StreamConnection | None:
        """The fast-path handle of a client (None when its listener/connection is gone)."""
        if transport is Transport.UDP:
            listener = self.udp.get(local)
            return None if listener is None else listener.client(remote)
        return self.connections.get(connection)

    def forget_client(self, client: ClientOut) -> None:
        """A UDP client's last allocation ended: drop its fast-path entry."""
        if isinstance(client, UdpClient) and client.holds <= 0:
            client.listener.forget(client)

    def connection(self, connection: int) -> StreamConnection | None:
        return self.connections.get(connection)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for server in self._servers:
            server.close()
        for conn in list(self.connections.values()):
            conn.abort()
        for listener in self.udp.values():
            listener.close()
        self.udp.clear()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self._server_of.clear()
