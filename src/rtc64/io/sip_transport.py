# Rules (RFC 3261 §18, RFC 5626 §3-5, RFC 7118): every ListenSpec is its own socket of one
# family (IPv6 sockets are V6ONLY). Received messages go to ``on_message(msg, flow)``;
# unparsable datagrams and WebSocket messages to ``on_bad_datagram(data, error, flow)``
# (also a stream message framed correctly but malformed inside, with ``data`` empty).
# Sending (§18.1.1, §18.2.2): UDP leaves from the flow's listener, else from the first UDP
# listener of the destination's family; TCP/TLS/WS/WSS reuse the flow's connection, else
# any open connection of that transport to the destination; else TCP/TLS connect from the
# listener address of that transport and family, queueing data until the connection is up
# (not when the caller's flow named a connection that has since closed: RFC 5626 §5.3).
# WebSocket is inbound only. Every failure to send (no listener, refused connect, TLS
# handshake, a server certificate not naming the target's SIP domain, a connection closed
# with queued data) is reported to ``on_send_error`` with the caller's handle (its
# transaction, RFC 3261 §17.1.4), always from a later loop iteration, never from inside
# ``send``. A TLS send for a SIP domain reuses only a connection opened and checked for
# that domain (RFC 5923 §6); one addressed by IP reuses any to that address; then a
# connection a verified peer aliased for that name and port (``tls_aliases.py``: requests
# with ``;alias`` in their top Via are offered to it). Connections idle
# for ``limits.idle_timeout`` are closed; the number of connections and the bytes buffered
# per connection are capped. A failing callback is logged and never stops a listener.
# Keep-alives (RFC 5626 §4.4.1, ``keepalive``) leave UDP from the named listener and go
# over streams only on a connection already open (never a new one); STUN on the UDP
# listeners goes to ``on_stun``; ``on_raw_response`` may take a UDP response before it is
# parsed, ``on_raw_request`` any other UDP datagram.
# SIP workers: the sockets may come bound from an ``opener`` (SO_REUSEPORT groups kept by
# the supervisor) and connection ids start at ``first_connection_id`` (unique per worker);
# connections opening and closing (``on_connection``) and RFC 5923 aliases recorded
# (``watch_aliases``) are reported for the worker link to announce;
# UDP leaves from a ``receive_only`` listener (a worker's private port) only when the
# caller says ``own_port`` (a request to a target with no pinhole to keep: a trunk, a
# DNS or static route): its responses then come back to this very worker. Everything
# else (responses, requests to registered contacts and recorded flows, keep-alives)
# leaves from the shared port, the one NATs and firewalls have a pinhole for.
"""The SIP transport layer: listeners, connections and sending for all SIP transports."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import socket
import ssl
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol, TypeVar

from rtc64.errors import ConfigError, RemoteProtocolError
from rtc64.io import eyeballs_tcp, sockets
from rtc64.io.connection import Connection, Limits, StreamConnection
from rtc64.io.sip_dial import attach, dial, reusable_for, tls_name
from rtc64.io.stats import TransportStats
from rtc64.io.tls import TlsClientPolicy
from rtc64.io.tls_aliases import AliasKey, AliasTable
from rtc64.io.udp import RawRequestHandler, RawResponseHandler, StunHandler, UdpListener
from rtc64.io.websocket import WebSocketConnection
from rtc64.net.address import Family, IPAddress, family_of, format_hostport
from rtc64.net.endpoint import BoundListener, Flow, ListenSpec, SockAddr, Transport
from rtc64.net.eyeballs import Race
from rtc64.sip.message import Message, Request
from rtc64.sip.serializer import serialize

StreamTargetT = TypeVar("StreamTargetT", bound=eyeballs_tcp.StreamTarget)
OnMessage = Callable[[Message, Flow], None]
OnBadDatagram = Callable[[bytes, RemoteProtocolError, Flow], None]


class Tap(Protocol):
    """Sees a copy of every SIP message received and sent (HEP capture, tracing); it
    must not block and must not raise."""

    def received(self, data: bytes, flow: Flow, now: float) -> None: ...
    def sent(self, data: bytes, flow: Flow, now: float) -> None: ...


@dataclass(frozen=True, slots=True)
class SendFailure:
    """A message that could not be sent: where to, why, and the sender's handle."""

    transport: Transport
    remote: SockAddr
    reason: str
    handle: object = None

    def __str__(self) -> str:
        return f"{self.transport.value} to {format_hostport(*self.remote)}: {self.reason}"


OnSendError = Callable[[SendFailure], None]
Opener = Callable[[ListenSpec], socket.socket]
OnConnection = Callable[[Transport, SockAddr, int, bool], None]
"""Told when a connection opens (True) or closes (False): transport, remote, id."""
"""Hands over an already bound (stream: listening) socket for a spec: SIP workers get
their SO_REUSEPORT sockets from the supervisor, which keeps them across restarts."""


class SipTransportLayer:
    """Opens the SIP listeners, delivers what they receive and sends for the gateway."""

    def __init__(
        self,
        specs: Sequence[ListenSpec],
        on_message: OnMessage,
        on_bad_datagram: OnBadDatagram,
        *,
        server_tls: ssl.SSLContext | None = None,
        client_tls: TlsClientPolicy | ssl.SSLContext | None = None,
        limits: Limits | None = None,
        on_send_error: OnSendError | None = None,
        on_stun: StunHandler | None = None,
        on_raw_response: RawResponseHandler | None = None,
        on_raw_request: RawRequestHandler | None = None,
        log: logging.Logger | None = None,
        opener: Opener | None = None,
        first_connection_id: int = 1,
        on_connection: OnConnection | None = None,
        receive_only: Collection[ListenSpec] = (),
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
        self._on_stun = on_stun
        self._on_raw_response = on_raw_response
        self._on_raw_request = on_raw_request
        self._server_tls = server_tls
        if isinstance(client_tls, ssl.SSLContext):
            client_tls = TlsClientPolicy(context=client_tls)
        self._client_tls = client_tls
        self._opener = opener
        self._on_connection = on_connection
        self._receive_only = frozenset(receive_only)
        self._ids = itertools.count(first_connection_id)
        self._listeners: list[BoundListener] = []
        self._udp: list[tuple[BoundListener, UdpListener]] = []
        self._udp_named: dict[str, UdpListener] = {}
        self._servers: list[asyncio.Server] = []
        self._server_of: dict[ListenSpec, asyncio.Server] = {}
        self._conns: dict[int, Connection] = {}
        self._by_remote: dict[tuple[Transport, SockAddr], dict[int, Connection]] = {}
        self._aliases = AliasTable(self.stats, self.log)
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self.taps: list[Tap] = []

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
            if self._opener is not None:
                sock = self._opener(spec)
            elif spec.transport is Transport.UDP:
                sock = sockets.udp_socket(
                    spec.address,
                    spec.port,
                    self.limits.udp_rcvbuf,
                    ipv6_min_mtu=self.limits.udp_ipv6_min_mtu,
                    ipv4_no_df=self.limits.udp_ipv4_no_df,
                )
            else:
                sock = sockets.listen_socket(spec.address, spec.port)
        except OSError as exc:
            raise ConfigError("sip.listen", str(spec), f"an address to bind ({exc})") from exc
        bound = BoundListener(spec, sock.getsockname()[1])
        kind = spec.transport
        try:
            if kind is Transport.UDP:
                udp = UdpListener(
                    self, sock, self._on_stun, self._on_raw_response, self._on_raw_request
                )
                await loop.create_datagram_endpoint(lambda: udp, sock=sock)
                self._udp.append((bound, udp))
                if spec not in self._receive_only:  # a worker's private port: never a source
                    self._udp_named[bound.name()] = udp
            else:
                server = await loop.create_server(
                    self._factory(kind),
                    sock=sock,
                    ssl=self._server_tls if kind.secure else None,
                    ssl_handshake_timeout=self.limits.handshake_timeout if kind.secure else None,
                )
                self._servers.append(server)
                self._server_of[spec] = server
        except BaseException:
            sock.close()
            raise
        self._listeners.append(bound)

    async def relisten(
        self, specs: Sequence[ListenSpec], receive_only: Collection[ListenSpec] = ()
    ) -> tuple[list[ListenSpec], list[ListenSpec]]:
        """Open the listeners of ``specs`` not open yet and close those no longer in it
        (a reload); connections accepted earlier stay open. Returns (opened, closed). If
        one cannot be bound, those opened here are closed again and ``ConfigError`` says
        which: the listeners stay as they were. ``receive_only``: new ones never used as
        a UDP source (a SIP worker's private ports)."""
        self._receive_only = self._receive_only | frozenset(receive_only)
        wanted = list(dict.fromkeys(specs))
        current = [b.spec for b in self._listeners]
        added = [s for s in wanted if s not in current]
        removed = [s for s in current if s not in wanted]
        if self._server_tls is None and any(s.transport.secure for s in added):
            shown = ", ".join(str(s) for s in added if s.transport.secure)
            raise ConfigError("sip.listen", shown, "no new TLS/WSS listener without a restart")
        opened: list[ListenSpec] = []
        try:
            for spec in added:
                await self._open(spec)
                opened.append(spec)
        except BaseException:
            for spec in opened:
                self._close_listener(spec)
            raise
        for spec in removed:
            self._close_listener(spec)
        self.specs = tuple(wanted)
        return added, removed

    def _close_listener(self, spec: ListenSpec) -> None:
        self._listeners = [b for b in self._listeners if b.spec != spec]
        for bound, udp in [pair for pair in self._udp if pair[0].spec == spec]:
            udp.close()
            self._udp.remove((bound, udp))
        server = self._server_of.pop(spec, None)
        if server is not None:
            server.close()
            self._servers.remove(server)

    def _factory(self, kind: Transport) -> Callable[[], Connection]:
        if kind in (Transport.WS, Transport.WSS):
            return lambda: WebSocketConnection(self, kind, next(self._ids))
        return lambda: StreamConnection(self, kind, next(self._ids))

    async def stop(self) -> None:
        """Close listeners and connections; pending connects are cancelled."""
        self._on_send_error = None  # what fails while closing is nobody's news
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
        self._server_of.clear()
        self._udp.clear()
        self._udp_named.clear()
        self._listeners.clear()

    # introspection

    @property
    def server_tls(self) -> ssl.SSLContext | None:
        """The TLS/WSS listeners' context (a reload loads new certificates into it)."""
        return self._server_tls

    @property
    def listeners(self) -> tuple[BoundListener, ...]:
        """The open listeners with their bound ports."""
        return tuple(self._listeners)

    def connection(self, conn_id: int) -> Connection | None:
        """The open (or opening) connection with that id."""
        return self._conns.get(conn_id)

    def has_connection(
        self,
        transport: Transport,
        address: IPAddress,
        port: int,
        server_name: str | None = None,
    ) -> bool:
        """Whether ``send`` has an open connection of ``transport`` to ``(address, port)``
        (a flow token's connection, RFC 5626 §5.3; ``server_name``: one it may reuse for
        that SIP domain, an RFC 5923 alias included); UDP needs none."""
        if not transport.reliable:
            return True
        remote = (address, port)
        return self._connection_for(transport, remote, None, server_name, count=False) is not None

    def connections(self) -> list[tuple[Transport, SockAddr, int, str | None]]:
        """Every established connection: transport, remote, id, and for one we opened
        over TLS the name its server was checked for (SIP workers announce them)."""
        return [
            (c.kind, c.remote, c.id, c.tls_name if c.outbound else None)
            for c in self._conns.values()
            if c.established and not c.is_closing() and c.remote is not None
        ]

    def watch_aliases(self, callback: Callable[[AliasKey, int], None] | None) -> None:
        """``callback(key, connection id)`` for each RFC 5923 alias recorded."""
        self._aliases.on_recorded = callback

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
        handle: object = None,
        own_port: bool = False,
    ) -> bool:
        """Send one SIP message; True if written or queued on a connection being opened.

        ``flow`` (where the request came from) makes the reply leave the same way; if its
        connection has closed, another open one to the same remote is used, else the send
        fails (no new connection: send again without ``flow`` to the Via address for that).
        ``server_name`` is the SIP domain a TLS server must prove (RFC 5922; default: the
        address itself). Any failure, now or once a new connection fails, is reported to
        ``on_send_error`` with ``handle``. ``own_port``: UDP without a flow leaves from
        this process's receive-only listener of that family when it has one (a SIP
        worker's private port, named in its Via), else as usual.
        """
        remote = (address, port)
        if flow is not None and flow.transport is not transport:
            flow = None
        if transport is Transport.UDP:
            udp = self._udp_for(family_of(address), flow, own_port)
            if udp is None:
                return self._fail(transport, remote, "no UDP listener of that family", handle)
            if udp.send(data, remote):
                if self.taps:
                    self._tap_sent(data, Flow(transport, udp.local, remote))
                return True
            return self.report_failure(transport, remote, "the UDP socket refused it", handle)
        conn = self._connection_for(transport, remote, flow, server_name)
        if conn is None:
            if flow is not None and flow.connection_id is not None:
                # RFC 5626 §5.3: a dead flow is not replaced by a new connection here;
                # the caller may send again without it (RFC 3261 §18.2.2 Via fallback).
                why = f"connection #{flow.connection_id} closed"
                return self._fail(transport, remote, why, handle)
            if transport in (Transport.WS, Transport.WSS):
                why = "no WebSocket connection to that peer"
                return self._fail(transport, remote, why, handle)
            conn = self._connect(transport, remote, server_name, handle)
            if conn is None:
                return False
        if conn.send_message(data, handle):
            if self.taps:
                local = conn.local or (_ANY[family_of(address)], 0)
                self._tap_sent(data, Flow(transport, local, remote, conn.id))
            return True
        return self.report_failure(transport, remote, f"{conn} closed or over its buffer", handle)

    def keepalive(
        self, transport: Transport, listener: str, remote: SockAddr, payload: bytes
    ) -> bool:
        """A keep-alive to ``remote``: UDP ``payload`` from the listener named ``listener``
        (``BoundListener.name``; else the first of that family); on streams a CRLF CRLF
        ping (WebSocket: a Ping frame) over an open connection only. False if not sent."""
        if transport is Transport.UDP:
            family = family_of(remote[0])
            udp = self._udp_named.get(listener)
            if udp is None or family_of(udp.local[0]) is not family:
                udp = self._udp_for(family, None)
            sent = udp is not None and udp.send(payload, remote, count=False)
        else:
            conn = self._connection_for(transport, remote, None)
            sent = conn is not None and conn.ping()
        if sent:
            self.stats.keepalives_sent += 1
        return sent

    def _udp_for(self, family: Family, flow: Flow | None, own: bool = False) -> UdpListener | None:
        if flow is not None:
            for bound, udp in self._udp:
                if bound.local == flow.local:
                    return udp
        fallback = None
        for bound, udp in self._udp:
            if bound.family is family:
                if (bound.spec in self._receive_only) is own:
                    return udp
                fallback = fallback or udp
        return fallback

    def _connection_for(
        self,
        transport: Transport,
        remote: SockAddr,
        flow: Flow | None,
        server_name: str | None = None,
        *,
        count: bool = True,
    ) -> Connection | None:
        if flow is not None and flow.connection_id is not None:
            conn = self._conns.get(flow.connection_id)
            if conn is not None and not conn.is_closing():
                return conn
        candidates = self._by_remote.get((transport, remote))
        if candidates:
            name = tls_name(remote, server_name) if transport is Transport.TLS else None
            for conn in reversed(candidates.values()):
                if conn.is_closing():
                    continue
                if name is not None and not reusable_for(conn, name, server_name):
                    continue
                return conn
        if transport is Transport.TLS and self._aliases:
            alias = self._aliases.find(tls_name(remote, server_name), remote[1])
            conn = self._conns.get(alias) if alias is not None else None
            if conn is not None and not conn.is_closing():
                if count:
                    self.stats.alias_reuses += 1
                return conn
        return None

    def _tls_policy(self) -> TlsClientPolicy:
        """How outbound TLS checks servers (a default policy when none was given)."""
        if self._client_tls is None:
            self._client_tls = TlsClientPolicy()
        return self._client_tls

    def aliases(self) -> dict[AliasKey, int]:
        """The RFC 5923 alias table: (authenticated name, port) -> connection id."""
        return self._aliases.snapshot()

    def _connect(
        self, transport: Transport, remote: SockAddr, server_name: str | None, handle: object
    ) -> Connection | None:
        family = family_of(remote[0])
        local = next(
            (b for b in self._listeners if b.transport is transport and b.family is family), None
        )
        if local is None:
            why = f"no {transport.value} listener of that family"
            self._fail(transport, remote, why, handle)
            return None
        if len(self._conns) >= self.limits.max_connections:
            self._fail(transport, remote, "connection limit reached", handle)
            return None
        conn = StreamConnection(self, transport, next(self._ids), remote=remote)
        if transport.secure:
            conn.tls_name = tls_name(remote, server_name)
        self._register(conn)
        task = asyncio.create_task(
            dial(conn, local.spec.address, server_name, self._tls_policy(), self.limits)
        )
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
            if self._connection_for(transport, (target.address, target.port), None, server_name):
                return target, None
        local = {b.family: b.spec.address for b in self._listeners if b.transport is transport}
        usable = [t for t in targets if family_of(t.address) in local]
        result = await eyeballs_tcp.connect_race(
            usable or targets,
            attempt_delay=attempt_delay,
            connect=eyeballs_tcp.tcp_connector(local=local, timeout=self.limits.connect_timeout),
        )
        winner = result.target
        remote = (winner.address, winner.port)
        conn = StreamConnection(self, transport, next(self._ids), remote=remote)
        if transport.secure:
            conn.tls_name = tls_name(remote, server_name)
        self._register(conn)
        await attach(conn, result.sock, server_name, self._tls_policy(), self.limits)
        if conn.is_closing():
            raise OSError(conn.failure or f"{transport.value} connection to {conn} failed")
        return winner, result.race

    def _fail(self, transport: Transport, remote: SockAddr, why: str, handle: object) -> bool:
        self.stats.send_errors += 1
        return self.report_failure(transport, remote, why, handle)

    def report_failure(
        self, transport: Transport, remote: SockAddr, why: str, handle: object
    ) -> bool:
        """Log a failed send and tell ``on_send_error`` on the next loop iteration (also
        for a send the worker link could not hand to another worker); returns False."""
        failure = SendFailure(transport, remote, why, handle)
        self.log.info("cannot send %s", failure)
        if self._on_send_error is not None:
            loop = asyncio.get_running_loop()
            loop.call_soon(self._call, self._on_send_error, failure)
        return False

    def send_failed(self, conn: Connection, handles: list[object], why: str) -> None:
        """``conn`` dropped queued messages (ConnectionOwner): report each one."""
        assert conn.remote is not None
        self.log.info("%s: %d queued message(s) dropped", why, len(handles))
        if self._on_send_error is None:
            return
        loop = asyncio.get_running_loop()
        for handle in handles:
            failure = SendFailure(conn.kind, conn.remote, why, handle)
            loop.call_soon(self._call, self._on_send_error, failure)

    # ConnectionOwner

    def _tap_sent(self, data: bytes, flow: Flow) -> None:
        now = time.time()
        for tap in self.taps:
            tap.sent(data, flow, now)

    def tap_received(self, data: bytes, flow: Flow) -> None:
        """A datagram a raw handler took (never parsed here) is shown to the taps."""
        if self.taps:
            now = time.time()
            for tap in self.taps:
                tap.received(data, flow, now)

    def deliver(self, msg: Message, flow: Flow, *, counted: bool = False) -> None:
        """``msg`` arrived on ``flow`` (``counted``: already counted as received, by the
        worker whose socket took it)."""
        if not counted:
            self.stats.received += 1
        if flow.transport is Transport.TLS and isinstance(msg, Request):
            conn = self._conns.get(flow.connection_id or 0)
            if conn is not None:
                self._aliases.offer(msg, conn)
        if self.taps:
            data, now = serialize(msg), time.time()
            for tap in self.taps:
                tap.received(data, flow, now)
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
        if self._on_connection is not None:
            assert conn.remote is not None
            self._call(self._on_connection, conn.kind, conn.remote, conn.id, True)
        return True

    def detach(self, conn: Connection) -> None:
        if self._conns.pop(conn.id, None) is None:
            return
        self._aliases.forget(conn)
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
            if self._on_connection is not None:
                self._call(self._on_connection, conn.kind, conn.remote, conn.id, False)

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


_ANY: dict[Family, IPAddress] = {Family.INET: IPv4Address(0), Family.INET6: IPv6Address(0)}


def _describe(listener: BoundListener) -> str:
    return str(dataclasses.replace(listener.spec, port=listener.port))
