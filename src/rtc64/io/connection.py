# Rules (RFC 3261 §18.3, RFC 5626 §4.4.1, RFC 7118 §5): a connection delivers whole SIP
# messages to its owner and writes whole messages it is given. A framing violation closes
# only that connection (counted); peer input never raises out of a protocol callback.
# Buffered bytes are capped per connection: data queued while an outbound connection is
# being opened, plus the socket's unsent write buffer; passing the cap closes the connection.
# Each queued message keeps the caller's handle (its transaction): when the connection
# fails before it is ready (refused, TLS handshake or peer identity failed, closed), the
# owner is told which handles were dropped and why (``send_failed``).
"""Reliable SIP connections: the common asyncio protocol and the TCP/TLS (stream) one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from rtc64.errors import RemoteProtocolError
from rtc64.io.stats import TransportStats
from rtc64.net.address import format_hostport, from_sockaddr
from rtc64.net.endpoint import Flow, SockAddr, Transport
from rtc64.sip.framing import CLOSED, NEED_DATA, KeepAlive, StreamFramer
from rtc64.sip.message import Message

PONG = b"\r\n"


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits of the transport layer."""

    idle_timeout: float = 300.0
    """Seconds without traffic after which a connection is closed (RFC 5626 keep-alives
    from clients arrive every 95-120 s, so they keep a registered flow open)."""
    max_connections: int = 10_000
    """Open and opening connections, all transports together."""
    max_buffered: int = 1 << 20
    """Bytes queued or unsent per connection."""
    max_message: int = 65_535
    """Largest SIP message accepted on a stream or WebSocket."""
    connect_timeout: float = 10.0
    handshake_timeout: float = 10.0
    """TLS handshake limit, inbound and outbound."""
    udp_rcvbuf: int = 512 * 1024
    """SO_RCVBUF of SIP UDP sockets (``sip.udp_receive_buffer``): ~800 small datagrams
    (the kernel doubles it; a loopback datagram costs 1,280 bytes of it), well under
    T1 of work even for pure Python, so an overload is shed rather than retransmitted."""
    udp_ipv6_min_mtu: bool = True
    """IPv6 UDP listeners fragment large datagrams at 1280 bytes (``sockets``)."""
    udp_ipv4_no_df: bool = False
    """IPv4 UDP listeners send without DF."""


class ConnectionOwner(Protocol):
    """What a connection needs from the layer that owns it."""

    stats: TransportStats
    limits: Limits
    log: logging.Logger

    def deliver(self, msg: Message, flow: Flow) -> None: ...

    def bad_message(self, data: bytes, error: RemoteProtocolError, flow: Flow) -> None: ...

    def attach(self, conn: Connection) -> bool: ...

    def detach(self, conn: Connection) -> None: ...

    def send_failed(self, conn: Connection, handles: list[object], why: str) -> None: ...


class Connection(asyncio.Protocol):
    """One reliable connection. Subclasses turn received bytes into messages
    (``_received``) and messages into bytes (``_encode``)."""

    def __init__(
        self,
        owner: ConnectionOwner,
        transport: Transport,
        conn_id: int,
        *,
        remote: SockAddr | None = None,
    ) -> None:
        self.owner = owner
        self.kind = transport
        self.id = conn_id
        self.outbound = remote is not None
        self.remote = remote
        self.local: SockAddr | None = None
        self.flow: Flow | None = None
        self.established = False
        self.closed = False
        self.ready = False
        """True once messages may be written (after a WebSocket handshake)."""
        self.last_activity = asyncio.get_running_loop().time()
        self.tls_name: str | None = None
        """Outbound TLS: the name the server was checked against (or would have been,
        when verification is off for it); reused only for that name."""
        self.peer_check: Callable[[Any], str | None] | None = None
        """Outbound TLS: checks the peer certificate before anything is written; returns
        why it is refused, or None."""
        self.failure: str | None = None
        """Why the connection failed before it was ready (reported with dropped data)."""
        self.peer_cert: dict[str, Any] | None = None
        """Inbound TLS: the client certificate, only when the handshake verified it
        against the configured client CAs (what RFC 5923 aliases are checked against)."""
        self.aliases: list[tuple[str, int]] = []
        """RFC 5923 aliases (authenticated name, port) this connection serves."""
        self._transport: asyncio.Transport | None = None
        self._pending: list[tuple[bytes, object]] = []
        self._pending_size = 0

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        if self.closed:  # closed (or overflowed) while being opened
            transport.abort()
            return
        self.last_activity = asyncio.get_running_loop().time()
        try:
            self.remote = from_sockaddr(transport.get_extra_info("peername"))
            self.local = from_sockaddr(transport.get_extra_info("sockname"))
        except (TypeError, ValueError):
            transport.abort()
            return
        self.flow = Flow(self.kind, self.local, self.remote, self.id)
        if self.kind.secure and not self.outbound:
            self.peer_cert = transport.get_extra_info("peercert") or None
        if self.peer_check is not None:
            refused = self.peer_check(transport.get_extra_info("peercert"))
            if refused is not None:
                self.failure = refused
                transport.abort()
                return
        if not self.owner.attach(self):
            transport.abort()
            return
        self.established = True
        self._opened()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_activity = asyncio.get_running_loop().time()
        try:
            self._received(data)
        except RemoteProtocolError as exc:
            self.owner.stats.framing_errors += 1
            self.owner.log.info("closing %s: %s", self, exc)
            self._violation()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.owner.detach(self)
        self._dropped_pending()

    # used by the layer

    def send_message(self, data: bytes, handle: object = None) -> bool:
        """Write one SIP message, or queue it (with the caller's ``handle``, reported if it
        is dropped) until the connection is ready."""
        if self.closed:
            return False
        if not self.ready:
            if self._pending_size + len(data) > self.owner.limits.max_buffered:
                self._overflow()
                return False
            self._pending.append((data, handle))
            self._pending_size += len(data)
            return True
        return self._write_message(data)

    def is_closing(self) -> bool:
        """Closed, or closing: no longer usable for sending."""
        return self.closed or (self._transport is not None and self._transport.is_closing())

    def close(self) -> None:
        """Close gracefully (unsent data is flushed first)."""
        if self._transport is None:
            self.closed = True
            return
        self._transport.close()

    def abort(self) -> None:
        """Close at once, dropping unsent data."""
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    def failed(self, why: str) -> None:
        """An outbound connection could not be opened: report what was queued, forget it."""
        self.failure = why
        self.closed = True
        self.owner.detach(self)
        self._dropped_pending()

    # for subclasses

    def _opened(self) -> None:
        """The transport is up: streams are ready now, WebSocket waits for the handshake."""
        self._set_ready()

    def _set_ready(self) -> None:
        self.ready = True
        pending, self._pending, self._pending_size = self._pending, [], 0
        for i, (data, _) in enumerate(pending):
            if not self._write_message(data):
                self.owner.stats.send_errors += len(pending) - i - 1
                handles = [h for _, h in pending[i:]]
                self.owner.send_failed(self, handles, f"{self} closed")
                break

    def _received(self, data: bytes) -> None:
        raise NotImplementedError

    def _encode(self, data: bytes) -> bytes:
        return data

    def _violation(self) -> None:
        self.close()

    def ping(self) -> bool:
        """A keep-alive toward the peer (RFC 5626 §4.4.1 CRLF CRLF; WebSocket: a Ping
        frame), only once the connection is ready; False if it could not be written."""
        if not self.ready:
            return False
        raw = self._ping()
        return bool(raw) and self._write(raw)

    def _ping(self) -> bytes:
        return b"\r\n\r\n"

    def _write_message(self, data: bytes) -> bool:
        if self._write(self._encode(data)):
            self.owner.stats.sent += 1
            return True
        return False

    def _write(self, raw: bytes) -> bool:
        transport = self._transport
        if transport is None or self.closed or transport.is_closing():
            self.owner.stats.send_errors += 1
            return False
        if transport.get_write_buffer_size() + len(raw) > self.owner.limits.max_buffered:
            self._overflow()
            return False
        transport.write(raw)
        self.last_activity = asyncio.get_running_loop().time()
        return True

    def _overflow(self) -> None:
        self.owner.stats.overflows += 1
        self.owner.stats.send_errors += 1
        limit = self.owner.limits.max_buffered
        self.owner.log.warning("closing %s: more than %d bytes buffered", self, limit)
        self.abort()

    def _dropped_pending(self) -> None:
        if self._pending:
            pending, self._pending, self._pending_size = self._pending, [], 0
            self.owner.stats.send_errors += len(pending)
            why = self.failure or f"{self} closed before it was ready"
            self.owner.send_failed(self, [h for _, h in pending], why)

    def __str__(self) -> str:
        if self.flow is not None:
            return str(self.flow)
        remote = "?" if self.remote is None else format_hostport(*self.remote)
        return f"{self.kind.value}#{self.id} to {remote}"


class StreamConnection(Connection):
    """SIP over TCP or TLS: ``StreamFramer`` splits messages (RFC 3261 §18.3); a CRLFCRLF
    ping is answered with a CRLF pong (RFC 5626 §4.4.1). A message framed correctly but
    malformed inside goes to the bad-message hook and the stream carries on; a broken
    framer closes the connection."""

    def __init__(
        self,
        owner: ConnectionOwner,
        transport: Transport,
        conn_id: int,
        *,
        remote: SockAddr | None = None,
    ) -> None:
        super().__init__(owner, transport, conn_id, remote=remote)
        self._framer = StreamFramer(owner.limits.max_message)

    def _received(self, data: bytes) -> None:
        assert self.flow is not None
        framer = self._framer
        framer.receive_data(data)
        while not self.is_closing():
            try:
                event = framer.next_event()
            except RemoteProtocolError as exc:
                if framer.broken:
                    raise
                # The framer has consumed the message; its bytes are not available here.
                self.owner.bad_message(b"", exc, self.flow)
                continue
            if event is NEED_DATA or event is CLOSED:
                return
            if event is KeepAlive.PING:
                self.owner.stats.keepalives += 1
                self._write(PONG)
            elif event is KeepAlive.PONG:
                self.owner.stats.keepalives += 1
            else:
                assert not isinstance(event, KeepAlive)
                self.owner.deliver(event, self.flow)
