# Rules (RFC 3261 §18, RFC 5626 §3-5, RFC 7118): every ListenSpec is its own socket of one
# family (IPv6 sockets are V6ONLY). Received messages go to ``on_message(msg, flow)``;
# unparsable datagrams and WebSocket messages to ``on_bad_datagram(data, error, flow)``
# (also a stream message framed correctly but malformed inside, with ``data`` empty).
# Sending (§18.1.1, §18.2.2): UDP leaves from the flow's listener, else from the first UDP
# listener of the destination's family; TCP/TLS/WS/WSS reuse the flow's connection, else
# any open connection of that transport to the destination; else TCP/TLS connect from the
# listener address of that transport and family, queueing data until the connection is up
# (not when the caller's flow named a connection that has since closed: RFC 5626 §5.3).
# WebSocket is inbound only. Connections idle for ``limits.idle_timeout`` are closed; the
# number of connections and the bytes buffered per connection are capped. A failing
# callback is logged and never stops a listener.
"""The SIP transport layer: listeners, connections and sending for all SIP transports."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from rtc64.errors import ConfigError, RemoteProtocolError
from rtc64.io import eyeballs_tcp, sockets
from rtc64.io.connection import Connection, Limits, StreamConnection
from rtc64.io.flow import Flow, SockAddr
from rtc64.io.stats import TransportStats
from rtc64.io.tls import client_context
from rtc64.io.udp import UdpListener
from rtc64.io.websocket import WebSocketConnection
from rtc64.net.address import Family, IPAddress, family_of, format_hostport, to_sockaddr
from rtc64.net.endpoint import ListenSpec, Transport
from rtc64.net.eyeballs import Race
from rtc64.sip.message import Message

StreamTargetT = TypeVar("StreamTargetT", bound=eyeballs_tcp.StreamTarget)
OnMessage = Callable[[Message, Flow], None]
OnBadDatagram = Callable[[bytes, RemoteProtocolError, Flow], None]
OnSendError = Callable[[Transport, SockAddr, Exception], None]


@dataclass(frozen=True, slots=True)
class BoundListener:
    """A listen spec and the port it is actually bound to (differs when the spec says 0)."""

    spec: ListenSpec
    port: int

    @property
    def transport(self) -> Transport:
        return self.spec.transport

    @property
    def family(self) -> Family:
        return self.spec.family

    @property
    def local(self) -> SockAddr:
        return (self.spec.address, self.port)

    @property
    def wildcard(self) -> bool:
        return self.spec.address.is_unspecified

    def name(self) -> str:
        """Stable text naming this listener (stored with registrations)."""
        return f"{self.transport.value}:{format_hostport(self.spec.address, self.port)}"


class SipTransportLayer:
    """Opens the SIP listeners, delivers what they receive and sends for the gateway."""

    def __init__(
        self,
        specs: Sequence[ListenSpec],
        on_message: OnMessage,
        on_bad_datagram: OnBadDatagram,
        *,
        server_tls: ssl.SSLContext | None = None,
        client_tls: ssl.SSLContext | None = None,
        limits: Limits | None = None,
        on_send_error: OnSendError | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        if server_tls is None and any(s.transport.secure for s in specs):
            raise ConfigError("sip.listen", ", ".join(map(str, specs)), "a TLS certificate")
        self.specs = tuple(specs)
        self.limits = limits or Limits()
        self.stats = TransportStats()
        self.log = log or logging.getLogger("rtc64.sip.transport")
        self._on_message = on_message
        self._on_bad_datagram = on_bad_datagram
        self._on_send_error = on_send_error
        self._server_tls = server_tls
        self._client_tls = client_tls
        self._ids = itertools.count(1)
        self._listeners: list[BoundListener] = []
        self._udp: list[tuple[BoundListener, UdpListener]] = []
        self._servers: list[asyncio.Server] = []
        self._conns: dict[int, Connection] = {}
        self._by_remote: dict[tuple[Transport, SockAddr], dict[int, Connection]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    # lifecycle

    async def start(self) -> None:
        """Bind every listener; on any failure close those already open and raise
        ``ConfigError`` naming the endpoint."""
        try:
            for spec in self.specs:
                await self._open(spec)
        except BaseException:
            await self.stop()
            raise
        self._sweeper = asyncio.create_task(self._sweep(), name="sip-idle-sweeper")
        for listener in self._listeners:
            self.log.info("SIP listening on %s", _describe(listener))

    async def _open(self, spec: ListenSpec) -> None:
        loop = asyncio.get_running_loop()
        try:
            if spec.transport is Transport.UDP:
                sock = sockets.udp_socket(spec.address, spec.port, self.limits.udp_rcvbuf)
            else:
                sock = sockets.listen_socket(spec.address, spec.port)
        except OSError as exc:
            raise ConfigError("sip.listen", str(spec), f"an address to bind ({exc})") from exc
        bound = BoundListener(spec, sock.getsockname()[1])
        kind = spec.transport
        try:
            if kind is Transport.UDP:
                udp = UdpListener(self, sock)
                await loop.create_datagram_endpoint(lambda: udp, sock=sock)
                self._udp.append((bound, udp))
            else:
                server = await loop.create_server(
                    self._factory(kind),
                    sock=sock,
                    ssl=self._server_tls if kind.secure else None,
                    ssl_handshake_timeout=self.limits.handshake_timeout if kind.secure else None,
                )
                self._servers.append(server)
        except BaseException:
            sock.close()
            raise
        self._listeners.append(bound)

    def _factory(self, kind: Transport) -> Callable[[], Connection]:
        if kind in (Transport.WS, Transport.WSS):
            return lambda: WebSocketConnection(self, kind, next(self._ids))
        return lambda: StreamConnection(self, kind, next(self._ids))

    async def stop(self) -> None:
        """Close listeners and connections; pending connects are cancelled."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for task in list(self._tasks):
            task.cancel()
        for server in self._servers:
            server.close()
        for _, udp in self._udp:
            udp.close()
        for conn in list(self._conns.values()):
            conn.close()
        for _ in range(100):  # let connection_lost callbacks run (bounded)
            if not self._conns and not self._tasks:
                break
            await asyncio.sleep(0.01)
        for conn in list(self._conns.values()):
            conn.abort()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers.clear()
        self._udp.clear()
        self._listeners.clear()

    # introspection

    @property
    def listeners(self) -> tuple[BoundListener, ...]:
        """The open listeners with their bound ports."""
        return tuple(self._listeners)

    def connection(self, conn_id: int) -> Connection | None:
        """The open (or opening) connection with that id."""
        return self._conns.get(conn_id)

    def has_connection(self, transport: Transport, address: IPAddress, port: int) -> bool:
        """Whether ``send`` has an open connection of ``transport`` to ``(address, port)``
        (a flow token's connection, RFC 5626 §5.3); UDP needs none."""
        if not transport.reliable:
            return True
        return self._connection_for(transport, (address, port), None) is not None

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    # sending

    def send(
        self,
        data: bytes,
        transport: Transport,
        address: IPAddress,
        port: int,
        *,
        flow: Flow | None = None,
        server_name: str | None = None,
    ) -> bool:
        """Send one SIP message; True if written or queued on a connection being opened.

        ``flow`` (where the request came from) makes the reply leave the same way; if its
        connection has closed, another open one to the same remote is used, else the send
        fails (no new connection: send again without ``flow`` to the Via address for that).
        ``server_name`` is the TLS name to verify when a new TLS connection is opened
        (default: the address itself).
        """
        remote = (address, port)
        if flow is not None and flow.transport is not transport:
            flow = None
        if transport is Transport.UDP:
            udp = self._udp_for(family_of(address), flow)
            if udp is None:
                return self._fail(transport, remote, "no UDP listener of that family")
            return udp.send(data, remote)
        conn = self._connection_for(transport, remote, flow)
        if conn is None:
            if flow is not None and flow.connection_id is not None:
                # RFC 5626 §5.3: a dead flow is not replaced by a new connection here;
                # the caller may send again without it (RFC 3261 §18.2.2 Via fallback).
                return self._fail(transport, remote, f"connection #{flow.connection_id} closed")
            if transport in (Transport.WS, Transport.WSS):
                return self._fail(transport, remote, "no WebSocket connection to that peer")
            conn = self._connect(transport, remote, server_name)
            if conn is None:
                return False
        return conn.send_message(data)

    def _udp_for(self, family: Family, flow: Flow | None) -> UdpListener | None:
        if flow is not None:
            for bound, udp in self._udp:
                if bound.local == flow.local:
                    return udp
        for bound, udp in self._udp:
            if bound.family is family:
                return udp
        return None

    def _connection_for(
        self, transport: Transport, remote: SockAddr, flow: Flow | None
    ) -> Connection | None:
        if flow is not None and flow.connection_id is not None:
            conn = self._conns.get(flow.connection_id)
            if conn is not None and not conn.is_closing():
                return conn
        candidates = self._by_remote.get((transport, remote))
        if candidates:
            for conn in reversed(candidates.values()):
                if not conn.is_closing():
                    return conn
        return None

    def _connect(
        self, transport: Transport, remote: SockAddr, server_name: str | None
    ) -> Connection | None:
        family = family_of(remote[0])
        local = next(
            (b for b in self._listeners if b.transport is transport and b.family is family), None
        )
        if local is None:
            self._fail(transport, remote, f"no {transport.value} listener of that family")
            return None
        if len(self._conns) >= self.limits.max_connections:
            self._fail(transport, remote, "connection limit reached")
            return None
        conn = StreamConnection(self, transport, next(self._ids), remote=remote)
        self._register(conn)
        task = asyncio.create_task(self._dial(conn, local.spec.address, server_name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return conn

    async def connect_race(
        self,
        transport: Transport,
        targets: Sequence[StreamTargetT],
        *,
        attempt_delay: float | None,
        server_name: str | None = None,
    ) -> tuple[StreamTargetT, Race[StreamTargetT] | None]:
        """Race stream connections to ``targets`` (RFC 8305 §5: IPv6 first, the next one
        ``attempt_delay`` later); the winner becomes a connection that ``send`` reuses.
        Returns the winner and the finished race (None when an open connection to one of
        the targets was reused without racing), for the caller's family health cache.
        Raises ``ConnectRaceError`` (an ``OSError``) naming every target when none
        connects."""
        for target in targets:
            if self._connection_for(transport, (target.address, target.port), None):
                return target, None
        local = {b.family: b.spec.address for b in self._listeners if b.transport is transport}
        usable = [t for t in targets if family_of(t.address) in local]
        result = await eyeballs_tcp.connect_race(
            usable or targets,
            attempt_delay=attempt_delay,
            connect=eyeballs_tcp.tcp_connector(local=local, timeout=self.limits.connect_timeout),
        )
        winner = result.target
        conn = StreamConnection(
            self, transport, next(self._ids), remote=(winner.address, winner.port)
        )
        self._register(conn)
        await self._attach(conn, result.sock, server_name)
        if conn.is_closing():
            raise OSError(f"{transport.value} connection to {conn.remote} failed")
        return winner, result.race

    async def _dial(self, conn: Connection, local: IPAddress, server_name: str | None) -> None:
        assert conn.remote is not None
        loop = asyncio.get_running_loop()
        address, port = conn.remote
        sock = sockets.client_socket(family_of(address), local)
        try:
            async with asyncio.timeout(self.limits.connect_timeout):
                await loop.sock_connect(sock, to_sockaddr(address, port))
        except (OSError, TimeoutError) as exc:
            sock.close()
            self.log.info("%s connection to %s failed: %s", conn.kind.value, conn.remote, exc)
            conn.failed()
            if self._on_send_error is not None:
                self._call(self._on_send_error, conn.kind, conn.remote, exc)
            return
        except BaseException:
            sock.close()
            conn.failed()
            raise
        await self._attach(conn, sock, server_name)

    async def _attach(self, conn: Connection, sock: socket.socket, server_name: str | None) -> None:
        """Run ``conn`` (TLS on top if needed) on an already connected socket."""
        assert conn.remote is not None
        loop = asyncio.get_running_loop()
        address = conn.remote[0]
        try:
            secure = conn.kind.secure
            if secure and self._client_tls is None:
                self._client_tls = client_context()
            await loop.create_connection(
                lambda: conn,
                sock=sock,
                ssl=self._client_tls if secure else None,
                server_hostname=(server_name or str(address)) if secure else None,
                ssl_handshake_timeout=self.limits.handshake_timeout if secure else None,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            sock.close()
            self.log.info("%s connection to %s failed: %s", conn.kind.value, conn.remote, exc)
            conn.failed()
            if self._on_send_error is not None:
                self._call(self._on_send_error, conn.kind, conn.remote, exc)
        except BaseException:
            sock.close()
            conn.failed()
            raise

    def _fail(self, transport: Transport, remote: SockAddr, why: str) -> bool:
        self.stats.send_errors += 1
        self.log.info("cannot send %s to %s: %s", transport.value, remote, why)
        if self._on_send_error is not None:
            self._call(self._on_send_error, transport, remote, OSError(why))
        return False

    # ConnectionOwner

    def deliver(self, msg: Message, flow: Flow) -> None:
        self.stats.received += 1
        self._call(self._on_message, msg, flow)

    def bad_message(self, data: bytes, error: RemoteProtocolError, flow: Flow) -> None:
        self.stats.bad_datagrams += 1
        self._call(self._on_bad_datagram, data, error, flow)

    def attach(self, conn: Connection) -> bool:
        if conn.outbound:
            if conn.id not in self._conns:
                return False  # stopped or failed meanwhile
            self.stats.connections_connected += 1
        else:
            if len(self._conns) >= self.limits.max_connections:
                self.stats.connections_rejected += 1
                return False
            self._register(conn)
            self.stats.connections_accepted += 1
        self.stats.connections_open += 1
        return True

    def detach(self, conn: Connection) -> None:
        if self._conns.pop(conn.id, None) is None:
            return
        assert conn.remote is not None
        key = (conn.kind, conn.remote)
        same = self._by_remote.get(key)
        if same is not None:
            same.pop(conn.id, None)
            if not same:
                del self._by_remote[key]
        if conn.established:
            self.stats.connections_open -= 1
            self.stats.connections_closed += 1

    def _register(self, conn: Connection) -> None:
        assert conn.remote is not None
        self._conns[conn.id] = conn
        self._by_remote.setdefault((conn.kind, conn.remote), {})[conn.id] = conn

    def _call(self, callback: Callable[..., None], *args: object) -> None:
        try:
            callback(*args)
        except Exception:
            self.log.exception("SIP transport callback %s failed", callback)

    async def _sweep(self) -> None:
        idle = self.limits.idle_timeout
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(max(idle / 4, 0.05), 10.0))
            deadline = loop.time() - idle
            for conn in list(self._conns.values()):
                if conn.established and not conn.is_closing() and conn.last_activity < deadline:
                    self.stats.connections_idle_closed += 1
                    self.log.debug("closing idle %s", conn)
                    conn.close()


def _describe(listener: BoundListener) -> str:
    return str(dataclasses.replace(listener.spec, port=listener.port))
